"""Files written atomically: a temporary file in the same directory, flushed to disk, then renamed over
the target. A reader, or a crash, or a full disk, sees the previous file or the new one, never half of one,
and a failed write leaves no temporary behind."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

# Below this many free bytes a failed write is reported as a full disk.
FULL_DISK_BYTES = 1 << 20


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """`with atomic_file(path) as handle:` write to `handle`; on success the file replaces `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would hide records from other users of a cluster
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(error, Exception) and disk_is_full(path.parent):
            raise OSError(errno.ENOSPC, f"no space left on the device while writing {path}") from error
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def disk_is_full(directory: str | os.PathLike) -> bool:
    try:
        stats = os.statvfs(directory)
    except OSError:
        return False
    return stats.f_bavail * stats.f_frsize < FULL_DISK_BYTES


def write_json(path: str | os.PathLike, data: Any, *, default: Callable | None = None) -> None:
    with atomic_file(path) as handle:
        handle.write(json.dumps(data, indent=2, allow_nan=False, default=default) + "\n")
