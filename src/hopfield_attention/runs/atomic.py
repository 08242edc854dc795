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

from ..errors import DiskFull

# Below this many free bytes a failed write is reported as a full disk.
FULL_DISK_BYTES = 1 << 20


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """`with atomic_file(path) as handle:` write to `handle`; on success the file replaces `path`."""
    path = Path(path)
    with reporting_full_disk(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would hide records from other users of a cluster
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        # judged before the partial file goes: removing it frees the space that was missing
        full = isinstance(error, Exception) and (_says_no_space(error) or disk_is_full(path.parent))
        Path(tmp).unlink(missing_ok=True)
        if full:
            raise DiskFull(path) from error
        raise


@contextlib.contextmanager
def reporting_full_disk(path: str | os.PathLike) -> Iterator[None]:
    """Any error of the writes inside, on a full disk, becomes DiskFull naming `path`: whether the writer said
    ENOSPC or something of its own (a library's message without errno). For writers that leave no partial file
    behind to remove first (atomic_file judges before it removes its own)."""
    try:
        yield
    except DiskFull:
        raise
    except Exception as error:
        if _says_no_space(error) or disk_is_full(Path(path).parent):
            raise DiskFull(path) from error
        raise


def _says_no_space(error: BaseException | None) -> bool:
    while error is not None:
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        error = error.__cause__ or error.__context__
    return False


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
