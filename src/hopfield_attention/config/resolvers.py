"""OmegaConf resolvers (`ha.*`) that the configs use; registered on import (train.py imports this).

- `${ha.decimal:x}`: a number written as results/paper_numbers.yaml writes table rows (0 -> '0.0',
  0.2 -> '0.2', 1 -> '1.0'), so a swept alpha or alpha' names its paper row: "alpha'=${ha.decimal:...}".
- `${ha.slurm:key}`: a setting of the per-user `slurm:` block (configs/local/), checked, or its default.
- `${ha.sbatch_parameters:}`: extra sbatch options, including the requeue signal Lightning listens on.
- `${ha.cpus_per_task:}`: slurm.cpus_per_task, else data.num_workers + 1.
- `${ha.tasks_per_node:devices}`, `${ha.gpus_per_node:accelerator,devices}`: one SLURM task per device.
- `${ha.wandb_id:run_dir}`: the W&B run id of a run directory (runs/wandb_run.py): the same for every attempt.
- `${ha.batch:per_device}`, `${ha.batch:accumulate}`: data.batch_size and trainer.accumulate_grad_batches that make
  the recipe's `batch.global_size` on this run's devices x nodes (config/global_batch.py).
- `${ha.optimizer_steps:n}`: n optimizer steps as Lightning counts them for val_check_interval (micro-batches).
- `${ha.job_dir:override_dirname}`: a sweep job's directory name from its overrides, so that a sweep started again
  finds its finished jobs (names longer than JOB_DIR_MAX keep a readable head and a hash of the rest).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from . import cluster, global_batch

JOB_DIR_MAX = 120


def run_id(run_dir: str | os.PathLike) -> str:
    """A W&B run id (lowercase letters and digits) that is the same for every attempt in one run directory."""
    return hashlib.sha256(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]


def decimal(value: Any) -> str:
    """'0.0', '0.2', '1.0': the shortest decimal that reads back as the same float, with a point."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"ha.decimal needs a number, got {value!r} ({type(value).__name__})")
    return repr(float(value))


def slurm_setting(key: str, *, _root_: Any) -> Any:
    settings = cluster.slurm_settings(OmegaConf.select(_root_, "slurm", default=None))
    if not hasattr(settings, key):
        raise ValueError(f"ha.slurm: no setting {key!r}; known: {sorted(vars(settings))}")
    value = getattr(settings, key)
    return list(value) if isinstance(value, tuple) else value


def cpus_per_task(*, _root_: Any) -> int | None:
    block = OmegaConf.select(_root_, "slurm", default=None)
    return cluster.cpus_per_task(block, OmegaConf.select(_root_, "data.num_workers", default=None))


def sbatch_parameters(*, _root_: Any) -> dict[str, Any]:
    return cluster.sbatch_parameters(OmegaConf.select(_root_, "slurm", default=None))


def batch(what: str, *, _root_: Any) -> int:
    """data.batch_size (`per_device`) or trainer.accumulate_grad_batches (`accumulate`) of the `batch:` block."""
    if what == "per_device":
        return global_batch.per_device_batch(_root_)
    if what == "accumulate":
        return global_batch.accumulate_batches(_root_)
    raise ValueError(f"ha.batch: {what!r} is not one of 'per_device', 'accumulate'")


def optimizer_steps(steps: Any, *, _root_: Any) -> Any:
    """`steps` optimizer steps in micro-batches (Lightning's unit for an integer val_check_interval). A value that
    is no count of steps (e.g. trainer.max_steps=0) stays as it is, for the check of the key it came from."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        return steps
    accumulate = OmegaConf.select(_root_, "trainer.accumulate_grad_batches")
    return steps * global_batch.positive_int(accumulate, "trainer.accumulate_grad_batches")


def job_dir(override_dirname: Any) -> str:
    """'attention.alpha_prime=0.2,seed=1' as a safe directory name: '/' and other odd characters become '_'."""
    name = re.sub(r"[^A-Za-z0-9._=,+-]", "_", str(override_dirname)) or "default"
    if len(name) <= JOB_DIR_MAX:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[: JOB_DIR_MAX - 11]}-{digest}"


RESOLVERS = {
    "ha.decimal": decimal,
    "ha.slurm": slurm_setting,
    "ha.sbatch_parameters": sbatch_parameters,
    "ha.cpus_per_task": cpus_per_task,
    "ha.tasks_per_node": cluster.tasks_per_node,
    "ha.gpus_per_node": cluster.gpus_per_node,
    "ha.wandb_id": run_id,
    "ha.job_dir": job_dir,
    "ha.batch": batch,
    "ha.optimizer_steps": optimizer_steps,
}


def register_resolvers() -> None:
    """Idempotent: a second import (or a job process unpickling the task) registers nothing twice."""
    for name, function in RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            # Not cached: the `slurm:` block and trainer differ between the configs of one process.
            OmegaConf.register_new_resolver(name, function, use_cache=False)


register_resolvers()
