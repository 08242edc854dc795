"""One owner per run directory: an exclusive lock held while a run lives in it.

`fcntl.flock` on <run dir>/run.lock: the kernel releases it when the holder dies, SIGKILL and full disks
included, so a stale lock never blocks a restart. The file also names its holder (host, pid, start time,
SLURM job), which a second process quotes when it fails. On a cluster file system flock must be supported
(NFSv4 and Lustre with `flock` mounts are).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from pathlib import Path

from ..errors import UserFacingError
from .provenance import utc_now

LOCK_FILE = "run.lock"


class RunDirectoryBusy(UserFacingError):
    """Another process holds the run directory."""


def holder_info() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "since": utc_now(),
            "slurm_job_id": os.environ.get("SLURM_JOB_ID")}  # fmt: skip


class RunLock:
    """`with RunLock(run_dir):` holds the directory or raises RunDirectoryBusy naming the holder."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise RunDirectoryBusy(
                f"run directory {self.path.parent} is in use by {describe(holder)}; wait for it to end, or start "
                "this run in another directory (leave hydra.run.dir unset for a fresh one)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(holder_info()) + "\n").encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def is_locked(run_dir: str | os.PathLike) -> bool:
    """Whether a live process holds the directory's lock (readers ask without taking it)."""
    path = Path(run_dir) / LOCK_FILE
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _read_holder(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return {}


def describe(holder: dict) -> str:
    if not holder:
        return "another process"
    job = f", SLURM job {holder['slurm_job_id']}" if holder.get("slurm_job_id") else ""
    return f"pid {holder.get('pid')} on {holder.get('host')} (since {holder.get('since')}{job})"
