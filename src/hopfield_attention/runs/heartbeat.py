"""Is a run that says "running" still alive? Its process, or else its heartbeat, tells.

While a run lives, a daemon thread touches <run dir>/heartbeat every HEARTBEAT_S seconds (data preparation,
validation and test included). A reader on the run's own host asks the process itself (its pid); elsewhere
(a login node reading a compute node's run) a heartbeat older than LOST_AFTER_S means the run is gone: killed
with SIGKILL, out of memory, its node lost. Such a record is shown as `lost`; the file still says `running`.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

HEARTBEAT_FILE = "heartbeat"
HEARTBEAT_S = 60.0
LOST_AFTER_S = 15 * 60.0


class Heartbeat:
    """`with Heartbeat(run_dir):` keeps <run dir>/heartbeat fresh from a daemon thread."""

    def __init__(self, run_dir: str | os.PathLike, every_s: float = HEARTBEAT_S):
        self.path = Path(run_dir) / HEARTBEAT_FILE
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="hopfield-attention-heartbeat", daemon=True)

    def _beat(self) -> None:
        while True:
            try:
                self.path.touch()
            except OSError:
                pass  # a full disk must not kill the run from this thread; the reader then says `lost` late
            if self._stop.wait(self.every_s):
                return

    def __enter__(self) -> Heartbeat:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)


def process_identity() -> dict:
    """This process as a record names it: host, pid and its start time (so a reused pid is not mistaken)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "start_ticks": _start_ticks(os.getpid())}


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux /proc), None where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[19])  # field 22 of stat(5); fields[0] is field 3


def process_alive(pid: int, start_ticks: int | None = None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process exists
    return start_ticks is None or _start_ticks(pid) in (None, start_ticks)


def is_lost(record: dict, run_dir: str | os.PathLike | None, now: float | None = None) -> bool:
    """Whether a record that says `running` belongs to a process that no longer exists."""
    if record.get("status") != "running":
        return False
    process = record.get("process") or {}
    if process.get("host") == socket.gethostname() and isinstance(process.get("pid"), int):
        return not process_alive(process["pid"], process.get("start_ticks"))
    if run_dir is None:
        return False  # no heartbeat to read (a W&B record: W&B's own run state says crashed)
    heartbeat = Path(run_dir) / HEARTBEAT_FILE
    if not heartbeat.exists():
        return False
    return (time.time() if now is None else now) - heartbeat.stat().st_mtime > LOST_AFTER_S
