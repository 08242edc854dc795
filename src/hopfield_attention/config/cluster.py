"""Running under SLURM: the resources a sweep requests and who owns the time-limit signal.

Signal ownership (one owner, documented in the README): Lightning. Its SLURMEnvironment (detected
automatically inside a SLURM job; auto_requeue=True, requeue_signal=SIGUSR1 by default) catches SIGUSR1,
writes <run dir>/hpc_ckpt_<n>.ckpt and calls `scontrol requeue`. SLURM sends that signal
`signal_delay_s` before the time limit because the launcher asks for `--signal=USR1@<delay>`
(configs/hydra/launcher/slurm.yaml); submitit's own USR2 checkpointing is never triggered and its
`max_num_timeout` stays 0, so submitit never requeues. The requeued job runs the same pickled Hydra job
again, in the same run directory, where runs/resume.py continues from the newest checkpoint.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from omegaconf import OmegaConf

# The signal SLURM sends before the time limit and Lightning's SLURMEnvironment listens on.
REQUEUE_SIGNAL = "USR1"
GPU_ACCELERATORS = ("gpu", "cuda", "auto")


@dataclasses.dataclass(frozen=True)
class SlurmSettings:
    """The per-user `slurm:` block (configs/local/default.yaml); every key is optional.

    Resources per task that Lightning does not decide (CPUs for data loading, memory, wall time) and
    where jobs go (partition, account, qos). Nodes, tasks and GPUs follow `trainer` instead.
    """

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    exclude: str | None = None
    comment: str | None = None
    timeout_min: int = 60
    # null: data.num_workers + 1 (one CPU per data-loading worker plus the training process)
    cpus_per_task: int | None = None
    mem_gb: int | None = None
    # Jobs of one array that may run at once.
    array_parallelism: int = 256
    # Seconds before the time limit at which SLURM sends SIGUSR1 (checkpoint + requeue).
    signal_delay_s: int = 120
    # Shell lines run in the job before srun (module load ..., source .venv/bin/activate).
    setup: tuple[str, ...] | None = None
    # Any other sbatch option, e.g. {"mail-user": "me@uni.edu", "mail-type": "END", "gres": "gpu:a100:4"}.
    additional_parameters: dict[str, Any] = dataclasses.field(default_factory=dict)


def slurm_settings(block: Any) -> SlurmSettings:
    """Validate the `slurm:` block (None when there is none): unknown keys are typos, never ignored."""
    if block is None:
        return SlurmSettings()
    values = OmegaConf.to_container(block, resolve=True) if OmegaConf.is_config(block) else block
    if not isinstance(values, dict):
        raise TypeError(f"slurm: must be a mapping of launcher settings, got {type(values).__name__}")
    allowed = {field.name for field in dataclasses.fields(SlurmSettings)}
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in slurm: (configs/local/*.yaml); allowed: {sorted(allowed)}")
    extra = values.get("additional_parameters") or {}
    if "signal" in extra:
        raise ValueError(
            f"slurm.additional_parameters.signal={extra['signal']!r}: the requeue signal is owned by Lightning "
            f"({REQUEUE_SIGNAL}); set slurm.signal_delay_s to change when it comes"
        )
    if values.get("setup") is not None:
        values["setup"] = tuple(values["setup"])
    return SlurmSettings(**values)


def tasks_per_node(devices: Any) -> int:
    """One SLURM task per device, as Lightning requires: `trainer.devices` must be a count."""
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise ValueError(
            f"trainer.devices must be a positive int under hydra/launcher=slurm (one SLURM task per device), "
            f"got {devices!r}"
        )
    return devices


def gpus_per_node(accelerator: str, devices: Any) -> int | None:
    """GPUs to request per node: one per device for GPU training, none for CPU training."""
    if accelerator == "cpu":
        return None
    if accelerator not in GPU_ACCELERATORS:
        raise ValueError(f"trainer.accelerator must be one of {('cpu',) + GPU_ACCELERATORS}, got {accelerator!r}")
    return tasks_per_node(devices)


def cpus_per_task(block: Any, num_workers: Any) -> int | None:
    """The user's slurm.cpus_per_task, else one CPU per data-loading worker plus the training process."""
    settings = slurm_settings(block)
    if settings.cpus_per_task is not None:
        return settings.cpus_per_task
    if isinstance(num_workers, int) and not isinstance(num_workers, bool) and num_workers >= 0:
        return num_workers + 1
    return None


def sbatch_parameters(block: Any) -> dict[str, Any]:
    """sbatch options beyond submitit's keys: the user's, plus `--signal=USR1@<delay>` for Lightning."""
    settings = slurm_settings(block)
    return {**settings.additional_parameters, "signal": f"{REQUEUE_SIGNAL}@{settings.signal_delay_s}"}
