"""Gather run records: results.json files under a directory, or the runs of a W&B project.

Both sources give the same record dicts (record.py). A local record that says `running` while its process is
gone (runs/heartbeat.py) is read as `lost`. A results.json that cannot be read is skipped and reported, so one
damaged file never stops the tables.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..runs.heartbeat import is_lost
from ..runs.record import RESULTS_FILE, read_record
from ..runs.record_schema import check_record

log = logging.getLogger(__name__)

# W&B run states for runs whose recorder never wrote a status into the summary (killed hard).
WANDB_STATES = {"finished": "finished", "running": "running", "pending": "running", "crashed": "lost",
                "failed": "failed", "killed": "interrupted", "preempted": "interrupted",
                "preempting": "interrupted"}  # fmt: skip


@dataclass
class Collected:
    records: list[dict] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, why)


def collect_local(runs_dir: str | Path) -> Collected:
    """Every results.json below `runs_dir` (recursively), each with its path under "source"."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise ValueError(f"runs_dir {str(runs_dir)!r} is not a directory (expected the log dir with run folders)")
    found = Collected()
    for path in sorted(runs_dir.rglob(RESULTS_FILE)):
        try:
            record = {**read_record(path), "source": str(path)}
        except (OSError, ValueError) as error:
            found.unreadable.append((str(path), str(error).removeprefix(f"{path}: ").splitlines()[0][:200]))
            log.warning("skipped %s: %s", path, error)
            continue
        if is_lost(record, path.parent):
            record = {**record, "status": "lost", "recorded_status": "running"}
        found.records.append(record)
    return found


def collect_wandb(project: str, entity: str | None = None, api: Any = None) -> Collected:
    """The runs of the W&B project `entity/project` as records (needs network and a W&B login)."""
    if not project:
        raise ValueError("source=wandb needs project=<name> (and entity=<team> unless it is your default)")
    if api is None:
        import wandb

        api = wandb.Api()
    path = f"{entity}/{project}" if entity else project
    found = Collected()
    for run in api.runs(path):
        try:
            record = record_from_wandb(run.id, run.url, run.state, run.config, run.summary_metrics)
        except ValueError as error:
            found.unreadable.append((f"W&B run {run.id}", str(error)))
            continue
        if record is None:
            log.warning("W&B run %s has no `paper` entry in its config; not a table run, skipped", run.id)
            continue
        found.records.append(record)
    return found


def record_from_wandb(run_id: str, url: str | None, state: str, config: Mapping, summary: Mapping) -> dict | None:
    """A record from one W&B run's config and summary; None for runs without a paper cell."""
    paper = config.get("paper")
    if not isinstance(paper, Mapping):
        return None
    status = summary.get("status") or WANDB_STATES.get(state)
    if status == "running" and state == "crashed":
        status = "lost"  # W&B saw the heartbeat stop
    if status not in ("running", "finished", "failed", "interrupted", "lost"):
        raise ValueError(f"W&B run {run_id}: state {state!r} is none of {sorted(WANDB_STATES)}")
    numbers = {k: v for k, v in summary.items() if isinstance(v, (int, float, str)) and "/" in k}
    cell = config.get("cell")
    record = {
        "schema": 2 if isinstance(cell, Mapping) else 1,
        "experiment": config.get("experiment"),
        "paper": {key: paper.get(key) for key in ("table", "dataset", "row", "column")},
        "cell": dict(cell) if isinstance(cell, Mapping) else None,
        "attention": config.get("attention"),
        "seed": config.get("seed"),
        "status": status,
        "metrics": {k: v for k, v in numbers.items() if not k.startswith("best/")},
        "best": {k.removeprefix("best/"): v for k, v in numbers.items() if k.startswith("best/")},
        "ended_at": summary.get("ended_at"),
        "wandb": {"id": run_id, "url": url},
    }
    return {**check_record(record, f"W&B run {run_id}"), "source": f"W&B run {run_id}"}


def metric_value(record: Mapping, metric: str) -> tuple[float | None, str | None]:
    """The run's final `metric`: test/<metric>, else the last val/<metric>; with which one it was."""
    for split in ("test", "val"):
        value = (record.get("metrics") or {}).get(f"{split}/{metric}")
        if value is not None:
            value = float(value)  # "nan"/"inf" strings included
            return (None, None) if math.isnan(value) else (value, split)
    return None, None
