"""Which checkpoint of a run directory a resume continues from: the newest intact one, by the step inside it.

Candidates: hpc_ckpt_<n>.ckpt (SLURM's time-limit checkpoint), checkpoints/last.ckpt (and the last-v<n>.ckpt
copies older versions of this project left beside it) and checkpoints/best-*.ckpt. Each is ranked by the
`global_step` recorded inside it, not by its name or its modification time (a stale last.ckpt may be newer on
disk than the state it holds). From the highest step down, the first one whose archive checks out whole (every
member's CRC, so a truncated or bit-damaged file is never loaded) and that holds a full training state wins; the
others that could not be used are listed with why, so the caller can warn and record them.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

PATTERNS = ("hpc_ckpt_*.ckpt", "checkpoints/last*.ckpt", "checkpoints/best*.ckpt")
# What Lightning needs to continue training, beyond the weights (a weights-only file cannot resume).
TRAINING_STATE = ("state_dict", "optimizer_states", "loops", "global_step")


@dataclass(frozen=True)
class Newest:
    path: Path | None
    step: int | None
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why), for a warning and the record


def candidates(run_dir: str | Path) -> list[Path]:
    run_dir = Path(run_dir)
    return sorted({path for pattern in PATTERNS for path in run_dir.glob(pattern) if path.is_file()})


def recorded_step(path: Path) -> int:
    """The global step a checkpoint was taken at, read from its pickle alone (tensors stay on disk);
    ValueError saying why it cannot be used to resume."""
    if path.stat().st_size == 0:
        raise ValueError("empty (0 bytes)")
    if not zipfile.is_zipfile(path):
        raise ValueError("truncated or not a torch archive (no zip directory at its end)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # noqa: BLE001 - every reason is reported the same way
        raise ValueError(
            f"unreadable ({(str(error).strip().splitlines() or [type(error).__name__])[0][:160]})"
        ) from None
    missing = [key for key in TRAINING_STATE if not isinstance(checkpoint, dict) or key not in checkpoint]
    if missing:
        raise ValueError(f"holds no training state to continue ({', '.join(missing)} missing)")
    return int(checkpoint["global_step"])


def damaged_member(path: Path) -> str | None:
    """The first archive member whose CRC does not match (a file damaged inside), None when all check out."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip()
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        return str(error) or type(error).__name__


def newest_intact(run_dir: str | Path) -> Newest:
    skipped: list[tuple[str, str]] = []
    ranked: list[tuple[int, int, Path]] = []
    for path in candidates(run_dir):
        try:
            ranked.append((recorded_step(path), _preference(path), path))
        except (OSError, ValueError) as error:
            skipped.append((str(path), str(error)))
    for step, _, path in sorted(ranked, reverse=True):
        bad = damaged_member(path)
        if bad is None:
            return Newest(path, step, skipped)
        skipped.append((str(path), f"damaged (member {bad} fails its CRC check)"))
    return Newest(None, None, skipped)


def _preference(path: Path) -> int:
    """At equal steps: a time-limit or last checkpoint (taken where the run stopped) before a best one."""
    return 0 if path.name.startswith("best") else 1
