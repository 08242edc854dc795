"""Helpers for the tests that run jobs on the local SLURM cluster (slurm/local-cluster.sh).

The jobs are real `python -m hopfield_attention.train -m hydra/launcher=slurm ...` sweeps on a tiny ViT
and the CIFAR-100 fixture of support/data.py. A Lightning callback observes the jobs from inside (this
directory is put on the jobs' PYTHONPATH): `StepRecorder` writes, per rank and per SLURM restart, the
step a run started at, the checkpoint it resumed from, the step it ended at, and where the rank ran
(hostname, address, network namespace); its `seconds_per_step` paces training so that a test can signal
a job while it is still running.

Without a cluster the tests skip with the reason; with HOPFIELD_ATTENTION_REQUIRE_SLURM=1 (set by
.ci/run, which starts the cluster) they fail instead, so that a broken cluster cannot pass CI as skips.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch

TESTS_DIR = Path(__file__).resolve().parents[1]  # on a child run's PYTHONPATH: support.* importable
REPOSITORY_DIR = TESTS_DIR.parent
CLUSTER_SCRIPT = REPOSITORY_DIR / "slurm" / "local-cluster.sh"
REQUIRE_CLUSTER_VARIABLE = "HOPFIELD_ATTENTION_REQUIRE_SLURM"
USABLE_NODE_STATES = {"idle", "mixed", "allocated", "completing"}


def where_this_runs() -> dict:
    """The node a process runs on as the process itself sees it: hostname, its address, network namespace."""
    hostname = socket.gethostname()
    return {
        "hostname": hostname,
        "address": socket.gethostbyname(hostname),
        "network_namespace": os.readlink("/proc/self/ns/net"),
        "slurm_node": os.environ.get("SLURMD_NODENAME"),
    }


class StepRecorder(L.Callback):
    """<directory>/rank<r>-restart<n>.json: start step, resumed checkpoint, end step, world size, node."""

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
            "backend": torch.distributed.get_backend() if torch.distributed.is_initialized() else None,
            "master_addr": os.environ.get("MASTER_ADDR"),
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            **where_this_runs(),
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


def cluster_or_skip(nodes: int = 1) -> None:
    """Skip (with the reason) unless a SLURM controller answers and `nodes` of its nodes can take jobs."""
    reason = _cluster_unavailable()
    if reason is None and len(usable_nodes()) < nodes:
        reason = (
            f"the local SLURM cluster has {len(usable_nodes())} usable node(s) and this test needs {nodes}: "
            f"run `slurm/local-cluster.sh start --nodes {nodes}` (root)"
        )
    if reason and os.environ.get(REQUIRE_CLUSTER_VARIABLE) == "1":
        pytest.fail(f"{reason} ({REQUIRE_CLUSTER_VARIABLE}=1)")
    if reason:
        pytest.skip(reason)


@functools.cache  # one probe per session: an absent controller takes sinfo ~10 s to give up on
def _node_states() -> dict[str, str] | str:
    """{node: state} from sinfo, or why there is none."""
    if shutil.which("sinfo") is None:
        return "no SLURM client (sinfo): start the local cluster with `slurm/local-cluster.sh start` (root)"
    try:
        listing = subprocess.run(
            ["sinfo", "--noheader", "--Node", "--format=%N %T"], capture_output=True, text=True, timeout=30
        )
    except subprocess.TimeoutExpired:
        return "sinfo did not answer in 30 s: is slurmctld running? (`slurm/local-cluster.sh status`)"
    if listing.returncode != 0:
        return (listing.stderr or listing.stdout).strip() or f"sinfo exited with {listing.returncode}"
    return dict(line.split() for line in listing.stdout.splitlines() if line.strip())


def _cluster_unavailable() -> str | None:
    states = _node_states()
    if isinstance(states, str):
        problem = states
    elif not usable_nodes():
        problem = f"no node can take jobs: {states}" if states else "no node"
    else:
        return None
    return f"local SLURM cluster not up ({problem}): run `slurm/local-cluster.sh start` (root)"


def cluster_nodes() -> list[str]:
    """Every node of the cluster, usable or not (what a request for more nodes is judged against)."""
    states = _node_states()
    return [] if isinstance(states, str) else sorted(states)


def usable_nodes() -> list[str]:
    """The nodes that could take jobs when the session first asked."""
    states = _node_states()
    return [] if isinstance(states, str) else sorted(n for n, state in states.items() if state in USABLE_NODE_STATES)


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
        "batch.global_size=null",  # 4 images per device, no accumulation to reach the recipe's global batch
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
    """The job directories <log_dir>/multiruns/<name>/<the job's overrides>, in the order of their names."""
    sweep = log_dir / "multiruns" / name
    return sorted(path for path in sweep.iterdir() if path.is_dir() and (path / "results.json").exists())


def assert_resumed_where_it_stopped(first: dict, restarted: dict, run_dir: Path, signalled_step: int) -> None:
    """The requeued attempt continued from the newest checkpoint of the first: Lightning's hpc_ckpt_1.ckpt from the
    time-limit signal, or the last.ckpt our SIGTERM handling saved after it, when the requeue stopped the job
    (runs/signals.py): then at the very step the first attempt stopped at."""
    hpc, last = str(run_dir / "hpc_ckpt_1.ckpt"), str(run_dir / "checkpoints" / "last.ckpt")
    assert restarted["resumed_from"] in (hpc, last), restarted["resumed_from"]
    if restarted["resumed_from"] == hpc:
        assert restarted["start_step"] == signalled_step
    else:
        assert signalled_step <= restarted["start_step"] == first["step"]


def prepare_data(experiment: str, overrides: list[str], where: Path) -> None:
    """`python -m hopfield_attention.prepare` of a distributed run's data, which such a run never prepares itself."""
    from hopfield_attention.prepare import prepare

    from .train import compose_run

    prepare(compose_run(experiment, [o for o in overrides if not o.startswith(("+callbacks", "hydra/"))], where))


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
