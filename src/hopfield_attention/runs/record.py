"""results.json: one record per run, the fact sheet the tables are built from.

Written atomically (runs/atomic.py) at start, after each validation, at the end, and when the run fails or
is interrupted; `recorder.py` keeps it up to date during training. Status: `running`, `finished`, `failed`,
`interrupted`; readers add `lost` for a `running` record whose process is gone (runs/heartbeat.py).

Schema 2 (see RECORD_KEYS): besides the run's label (`paper`), config sections and metrics, `cell` holds the
facts that define the table cell (runs/definition.py): `definition`, the `deviations` from the experiment
file (None when no experiment file defines the run), the `qualifiers` chosen (e.g. budget) and `debug` flags.
"""

from __future__ import annotations

import json
import math
import os
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..config.locations import SOURCE_CHECKOUT
from ..errors import Interrupted, short_message  # the message the command line shows
from .atomic import write_json
from .heartbeat import process_identity
from .provenance import git_state, hardware, utc_now
from .record_schema import check_record

RESULTS_FILE = "results.json"
SCHEMA_VERSION = 2
RECORD_KEYS = (
    "schema", "experiment", "paper", "cell", "attention", "model", "data", "task", "seed", "status", "attempts",
    "error", "metrics", "best", "checkpoint", "epoch", "global_step", "git", "hardware", "process", "started_at",
    "ended_at", "wall_time_s", "wandb", "output_dir", "resumed",
)  # fmt: skip


def results_path(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / RESULTS_FILE


def read_record(path: str | os.PathLike) -> dict:
    """The record in `path`, checked against the schema (record_schema.py): ValueError naming the file and the
    field otherwise (BadRecord, or the JSON error)."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError
        raise ValueError(f"{path}: not JSON ({str(error).splitlines()[0][:120]})") from None
    return check_record(data, str(path))


def write_record(path: str | os.PathLike, record: Mapping) -> None:
    write_json(path, json_safe(record))


def new_record(cfg: DictConfig, cell: Mapping[str, Any]) -> dict:
    """The record of a run about to start, from its resolved config and its cell facts."""
    paper = section(cfg, "paper") or {}
    return {
        "schema": SCHEMA_VERSION,
        "experiment": section(cfg, "experiment"),
        "paper": {key: paper.get(key) for key in ("table", "dataset", "row", "column")},
        "cell": dict(cell),
        "attention": section(cfg, "attention"),
        "model": section(cfg, "model"),
        "data": section(cfg, "data"),
        "task": section(cfg, "task"),
        "seed": section(cfg, "seed"),
        "status": "running",
        "attempts": 1,  # > 1: resumed in the same run dir after an interruption
        "error": None,
        "metrics": {},
        "best": {},
        "checkpoint": None,
        "epoch": None,
        "global_step": None,
        "git": git_state(SOURCE_CHECKOUT),
        "hardware": hardware(),
        "process": process_identity(),
        "started_at": utc_now(),
        "ended_at": None,
        "wall_time_s": None,
        "wandb": None,
        "output_dir": str(Path(cfg.paths.output_dir).resolve()),
        "resumed": None,  # {"ckpt_path", "step", "skipped": [[path, why]]}: the checkpoint this attempt continued
    }


def continue_record(record: dict, previous: Mapping | None) -> dict:
    """A restarted run in its old directory continues the old record: attempts counted, best values kept."""
    if previous:
        record["attempts"] = int(previous.get("attempts") or 1) + 1
        record["best"] = {**(previous.get("best") or {}), **record["best"]}
        record["metrics"] = {**(previous.get("metrics") or {}), **record["metrics"]}
    return record


def mark_ended(record: dict, error: BaseException, wall_time_s: float | None = None) -> None:
    """Status `interrupted` for signals and Ctrl-C, else `failed`; the message and traceback kept."""

    interrupted = isinstance(error, (KeyboardInterrupt, Interrupted)) or type(error).__name__ == "SIGTERMException"
    record["status"] = "interrupted" if interrupted else "failed"
    record["error"] = {
        "type": type(error).__name__,
        "message": short_message(error),
        "traceback": "".join(traceback.format_exception(type(error), error, error.__traceback__))[-8000:],
    }
    record["ended_at"] = utc_now()
    if wall_time_s is not None:
        record["wall_time_s"] = wall_time_s


def write_without_masking(path: str | os.PathLike, record: Mapping) -> bool:
    """Write a record while another error is on its way out: a failure here (a full disk) is reported on
    stderr and swallowed, so the user sees the original error. Returns whether the record was written."""
    try:
        write_record(path, record)
        return True
    except Exception as error:  # noqa: BLE001 - the original error matters more than this one
        print(f"warning: could not update {path}: {error}", file=sys.stderr)
        return False


def section(cfg: DictConfig, key: str) -> Any:
    value = OmegaConf.select(cfg, key)
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig) else value


def json_safe(value: Any) -> Any:
    """Strict JSON: non-finite floats become the strings "nan", "inf", "-inf" (float() reads them back)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
