"""Helpers for the tests that run jobs on the local SLURM cluster (slurm/local-cluster.sh).

The jobs are real `python -m hopfield_attention.train -m hydra/launcher=slurm ...` sweeps on a tiny ViT
and the CIFAR-100 fixture of data_fixtures.py. Two Lightning callbacks observe the jobs from inside
(this directory is put on the jobs' PYTHONPATH): `StepRecorder` writes, per rank and per SLURM restart,
the step a run started at, the checkpoint it resumed from and the step it ended at; `seconds_per_step`
paces training so that a test can signal a job while it is still running.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest

TESTS_DIR = Path(__file__).resolve().parent
REPOSITORY_DIR = TESTS_DIR.parent
CLUSTER_SCRIPT = REPOSITORY_DIR / "slurm" / "local-cluster.sh"


class StepRecorder(L.Callback):
    """<directory>/rank<r>-restart<n>.json: start step, resumed checkpoint, end step, world size."""

    def __init__(self, directory: str, seconds_per_step: float = 0.0) -> None:
        self.directory = Path(directory)
        self.seconds_per_step = seconds_per_step
        self.record: dict = {}

    def _write(self, trainer: L.Trainer) -> None:
        restart = os.environ.get("SLURM_RESTART_COUNT", "0")
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"rank{trainer.global_rank}-restart{restart}.json"
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(self.record))
        partial.replace(path)  # atomic: the test polls these files while the job writes them

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.record = {
            "start_step": trainer.global_step,
            "resumed_from": trainer.ckpt_path,
            "world_size": trainer.world_size,
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            "step": trainer.global_step,
        }
        self._write(trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.record["step"] = trainer.global_step
        self._write(trainer)
        time.sleep(self.seconds_per_step)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.record["end_step"] = trainer.global_step
        self._write(trainer)


def cluster_or_skip() -> None:
    """Skip (with the reason) unless a SLURM controller answers and its node can take jobs."""
    reason = _cluster_unavailable()
    if reason:
        pytest.skip(reason)


@functools.cache  # one probe per session: an absent controller takes sinfo ~10 s to give up on
def _cluster_unavailable() -> str | None:
    if shutil.which("sinfo") is None:
        return "no SLURM client (sinfo): start the local cluster with `slurm/local-cluster.sh start` (root)"
    try:
        states = subprocess.run(
            ["sinfo", "--noheader", "--Node", "--format=%T"], capture_output=True, text=True, timeout=30
        )
    except subprocess.TimeoutExpired:
        return "sinfo did not answer in 30 s: is slurmctld running? (`slurm/local-cluster.sh status`)"
    usable = {"idle", "mixed", "allocated", "completing"}
    if states.returncode != 0 or not usable & set(states.stdout.split()):
        reason = (states.stderr or states.stdout).strip() or "no node"
        return f"local SLURM cluster not up ({reason}): run `slurm/local-cluster.sh start` (root)"
    return None


def job_environment(extra_pythonpath: Path = TESTS_DIR) -> dict[str, str]:
    """The submitting process's environment, which sbatch hands to the jobs: offline, tests importable."""
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", WANDB_MODE="offline", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(extra_pythonpath), env.get("PYTHONPATH")]))
    return env


def tiny_vit_overrides(data: dict, log_dir: Path, max_steps: int) -> list[str]:
    """A 2 x 32 ViT on the CIFAR-100 fixture, CPU, fp32, a few steps, logs under `log_dir`."""
    return [
        "model=vit_tiny_test",
        "trainer=cpu",
        f"trainer.max_steps={max_steps}",
        "trainer.max_epochs=-1",
        "+trainer.limit_val_batches=1",
        "+trainer.limit_test_batches=1",
        "trainer.num_sanity_val_steps=0",
        "trainer.log_every_n_steps=1",
        "callbacks.progress_bar=null",
        *[f"data.{key}={value}" for key, value in data.items()],
        f"paths.log_dir={log_dir}",
        f"paths.cache_dir={log_dir}/cache",
    ]


def train_command(*overrides: str, hydra_options: tuple[str, ...] = ()) -> list[str]:
    """`python -m hopfield_attention.train -m [--config-dir ...] hydra/launcher=slurm <overrides>`."""
    module = [sys.executable, "-m", "hopfield_attention.train", "-m", *hydra_options]
    return [*module, "hydra/launcher=slurm", *overrides]


def run_sweep(
    overrides: list[str], cwd: Path, timeout: float, hydra_options: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    """Submit and wait: hydra-submitit-launcher blocks until every job of the sweep has ended."""
    command = train_command(*overrides, hydra_options=hydra_options)
    return subprocess.run(command, cwd=cwd, env=job_environment(), capture_output=True, text=True, timeout=timeout)


def sweep_dirs(log_dir: Path, name: str) -> list[Path]:
    """The job directories <log_dir>/multiruns/<name>/<time>/<job num>, in job order."""
    (sweep,) = (log_dir / "multiruns" / name).iterdir()
    return sorted((path for path in sweep.iterdir() if path.name.isdigit()), key=lambda path: int(path.name))


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def wait_for(condition, timeout: float, interval: float = 0.2, what: str = "condition"):
    """Poll `condition()` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
