"""From runs to the paper's tables and figures: per-run records, cell definitions, collection, tables, figures."""

from ..runs.record import RESULTS_FILE, read_record, write_record
from ..runs.recorder import RunRecorder

__all__ = ["RESULTS_FILE", "RunRecorder", "read_record", "write_record"]
