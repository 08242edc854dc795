"""From runs to the paper's tables and figures: per-run records, collection, tables, figures."""

from .record import RunRecorder, read_record, write_failure_record, write_record

__all__ = ["RunRecorder", "read_record", "write_failure_record", "write_record"]
