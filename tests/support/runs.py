"""Tiny real training runs through the command line, for the tests of run directories, signals and records.

A 2-layer GPT-2 on the Shakespeare fixture (tests/support/data.py), a few steps of 4 x 32 tokens: each command
takes seconds, most of it imports. `Pace` (tests/support/pacing.py) slows a run down so that a test can act mid-run.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from .commands import OFFLINE
from .data import write_shakespeare_fixture

TESTS_DIR = Path(__file__).resolve().parents[1]  # on a child run's PYTHONPATH: support.* importable
REPOSITORY_DIR = TESTS_DIR.parent  # the checkout under test


def tiny_lm(data_dir: Path, run_dir: Path | None, *extra: str, steps: int = 8) -> list[str]:
    """Overrides of a tiny quickstart-shaped run in `run_dir` (validation and last.ckpt every 2 steps)."""
    data = write_shakespeare_fixture(data_dir)  # deterministic: the same files and settings every time
    where = [f"hydra.run.dir={run_dir}"] if run_dir is not None else []
    return [
        "experiment=quickstart_mha", "model=gpt2_tiny", *[f"data.{key}={value}" for key, value in data.items()],
        "batch.global_size=null",
        f"trainer.max_steps={steps}", "trainer.val_check_interval=2", "trainer.limit_val_batches=2",
        "trainer.log_every_n_steps=1", "logger.csv.flush_logs_every_n_steps=1", "callbacks.progress_bar=null",
        "+trainer.enable_progress_bar=false", "+trainer.enable_model_summary=false", "model.dropout=0.1",
        *where, *extra,
    ]  # fmt: skip


def paced(seconds: float) -> list[str]:
    return ["+callbacks.pace._target_=support.pacing.Pace", f"+callbacks.pace.seconds={seconds}"]


def environment(**extra: str) -> dict:
    env = {**os.environ, **OFFLINE, "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")])}
    for key in ("HYDRA_FULL_ERROR", "HOPFIELD_ATTENTION_SHORT_ERRORS"):
        env.pop(key, None)
    return {**env, **extra}


def train(*overrides: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hopfield_attention.train", *overrides], cwd=REPOSITORY_DIR,
                          env=environment(), capture_output=True, text=True, timeout=timeout)  # fmt: skip


def start_training(*overrides: str, log: Path) -> subprocess.Popen:
    handle = open(log, "w")
    return subprocess.Popen([sys.executable, "-m", "hopfield_attention.train", *overrides], cwd=REPOSITORY_DIR,
                            env=environment(), stdout=handle, stderr=subprocess.STDOUT)  # fmt: skip


def logged_steps(run_dir: Path, key: str = "train/loss") -> list[tuple[int, float]]:
    """(step, value) of every CSV row with `key`, in file order."""
    path = run_dir / "csv" / "metrics.csv"
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return [(int(row["step"]), float(row[key])) for row in csv.DictReader(handle) if row.get(key)]


def wait_until(condition, timeout: float = 240, what: str = "a condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def last_checkpoints(log_dir: Path) -> dict[Path, int]:
    """Every run's last.ckpt under log_dir with its modification time: unchanged when nothing trained again."""
    return {path: path.stat().st_mtime_ns for path in Path(log_dir).rglob("last.ckpt")}
