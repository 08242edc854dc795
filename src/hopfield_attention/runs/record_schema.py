"""The one schema of results.json, checked wherever a record is read (status, tables, resume, paper_small).

A record is a JSON object; `status` and `paper` are required, every other key of record.RECORD_KEYS is optional
(older records and W&B records lack some) but, when present, must have its type. Metric values are numbers, or
the strings "nan", "inf", "-inf" that record.json_safe writes for non-finite floats. Keys this schema does not
know are kept as they are (a newer version may add some). A record that breaks the schema raises BadRecord naming
the file and the field, so a reader skips and lists it instead of failing on it later.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

SCHEMA_VERSIONS = (1, 2)
STATUSES = ("running", "finished", "failed", "interrupted")
NON_FINITE = ("nan", "inf", "-inf")


class BadRecord(ValueError):
    """A results.json that is no valid record: names the file and the field."""


def _optional(kind: type | tuple[type, ...], what: str) -> tuple[Callable[[Any], bool], str]:
    return (lambda value: value is None or (isinstance(value, kind) and not isinstance(value, bool))), f"{what} or null"


def _number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) or value in NON_FINITE


OBJECT = _optional(dict, "an object")
TEXT = _optional(str, "a string")
INTEGER = _optional(int, "an integer")
FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "schema": (lambda v: v in SCHEMA_VERSIONS, f"one of {list(SCHEMA_VERSIONS)}"),
    "experiment": TEXT, "paper": (lambda v: isinstance(v, dict), "an object"), "cell": OBJECT,
    "attention": OBJECT, "model": OBJECT, "data": OBJECT, "task": TEXT, "seed": INTEGER,
    "status": (lambda v: v in STATUSES + ("lost",), f"one of {list(STATUSES)}"), "attempts": INTEGER,
    "error": OBJECT, "metrics": OBJECT, "best": OBJECT, "checkpoint": OBJECT, "epoch": INTEGER,
    "global_step": INTEGER, "git": OBJECT, "hardware": OBJECT, "process": OBJECT, "started_at": TEXT,
    "ended_at": TEXT, "wall_time_s": (lambda v: v is None or _number(v), "a number or null"), "wandb": OBJECT,
    "output_dir": TEXT, "resumed": OBJECT,
}  # fmt: skip
REQUIRED = ("status", "paper")
PAPER_FIELDS = ("table", "dataset", "row", "column")


def check_record(data: Any, source: str) -> dict:
    """`data` if it is a valid record, else BadRecord("<source>: field `<key>` must be ..., got ...")."""
    if not isinstance(data, dict):
        raise BadRecord(f"{source}: not a run record (a JSON object), got {type(data).__name__}")
    for key in REQUIRED:
        if key not in data:
            raise BadRecord(f"{source}: not a run record (field `{key}` missing)")
    for key, (valid, what) in FIELDS.items():
        if key in data and not valid(data[key]):
            _bad(source, key, what, data[key])
    for key in PAPER_FIELDS:
        value = data["paper"].get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (str, int, float))):
            _bad(source, f"paper.{key}", "a string or null", value)
    for section in ("metrics", "best"):
        for name, value in (data.get(section) or {}).items():
            if not _number(value):
                _bad(source, f"{section}.{name}", 'a number (or "nan", "inf", "-inf")', value)
    for section, key in (("cell", "definition"), ("checkpoint", "best_model_path")):
        value = (data.get(section) or {}).get(key)
        if value is not None and not isinstance(value, dict if key == "definition" else str):
            _bad(source, f"{section}.{key}", "an object" if key == "definition" else "a string", value)
    if isinstance(data.get("error"), Mapping) and not isinstance(data["error"].get("message", ""), (str, type(None))):
        _bad(source, "error.message", "a string", data["error"]["message"])
    return data


def _bad(source: str, key: str, what: str, value: Any) -> None:
    shown = repr(value)
    raise BadRecord(f"{source}: field `{key}` must be {what}, got {shown[:60] + '...' if len(shown) > 60 else shown}")
