"""Checkpoints written atomically, and superseded time-limit checkpoints removed.

Lightning's own writer streams into the target through an fsspec transaction, which on a full disk leaves a
partial file behind and reports the zip writer's error. Here a checkpoint goes to a temporary file that is
renamed over the target only once complete (runs/atomic.py): a full disk keeps the previous last.ckpt and
says so. Once a new `hpc_ckpt_<n>.ckpt` (written at SLURM's time-limit signal) is safely on disk, the older
ones are deleted: the newest is the only one a requeued job resumes from.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from .atomic import atomic_file

HPC_CHECKPOINT = re.compile(r"hpc_ckpt_(\d+)\.ckpt")


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        path = Path(path)
        with atomic_file(path, "wb") as handle:
            torch.save(checkpoint, handle)
        remove_superseded_hpc_checkpoints(path)


def remove_superseded_hpc_checkpoints(written: Path) -> list[Path]:
    match = HPC_CHECKPOINT.fullmatch(written.name)
    if match is None:
        return []
    removed = []
    for other in written.parent.glob("hpc_ckpt_*.ckpt"):
        number = HPC_CHECKPOINT.fullmatch(other.name)
        if number is not None and int(number.group(1)) < int(match.group(1)):
            other.unlink(missing_ok=True)
            removed.append(other)
    return removed


def remove_stale_temporaries(run_dir: str | Path) -> list[Path]:
    """Temporary files of an earlier attempt killed mid-write (SIGKILL leaves no time to clean up); called by the
    run that owns the directory, before it writes anything."""
    run_dir = Path(run_dir)
    stale = [*run_dir.glob(".*.tmp"), *run_dir.glob("checkpoints/.*.tmp"), *run_dir.glob("csv/.*.tmp")]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
