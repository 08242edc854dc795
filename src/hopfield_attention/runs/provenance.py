"""Where and from what code a run ran: git commit, hardware, timestamps. Facts for results.json."""

from __future__ import annotations

import datetime as dt
import os
import platform
import socket
import subprocess

import torch


def utc_now() -> str:
    """The current time as an ISO 8601 string in UTC, to the second."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def git_state(directory: str | os.PathLike | None) -> dict:
    """Commit and dirty flag of the repository holding `directory`; both None outside a git checkout
    (directory None: an installed package), which is a fact about the run, not an error."""
    if directory is None:
        return {"commit": None, "dirty": None}

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(directory), *args], capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    # Tracked files only: untracked outputs (logs/, wandb/) do not make the code dirty.
    changes = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if changes is None else bool(changes)}


def hardware() -> dict:
    """The machine the run used: accelerator names and count, torch version, host, CPU count, SLURM job."""
    cuda = torch.cuda.is_available()
    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "device_count": torch.cuda.device_count() if cuda else 0,
        "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "cpu_count": os.cpu_count(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
    }
