"""What the pipelines over the ordinary entry points share (paper_small, readings): one command in a child
process with its output shown and its duration kept, the local sweep's options, and the machine that ran them."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time

import torch

from ..errors import UserFacingError


def run(command: str, *arguments: str) -> dict:
    """`python -m hopfield_attention.<command> <arguments>` in a child process, its output shown as it comes;
    its duration returned."""
    line = [sys.executable, "-m", f"hopfield_attention.{command}", *arguments]
    print(f"\n== python -m hopfield_attention.{command} {' '.join(arguments)}", flush=True)
    start = time.monotonic()
    done = subprocess.run(line)
    seconds = round(time.monotonic() - start, 1)
    if done.returncode != 0:
        raise UserFacingError(f"python -m hopfield_attention.{command} failed (status {done.returncode}) after "
                              f"{seconds:.0f} s; see its output above")  # fmt: skip
    return {"command": f"python -m hopfield_attention.{command} {' '.join(arguments)}", "seconds": seconds}


def local_sweep(jobs: int, seeds: list[int]) -> list[str]:
    """The overrides of a sweep on this machine: `jobs` at a time (joblib), the cores shared out among them."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    return ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={jobs}", f"threads={threads}",
            f"seed={','.join(map(str, seeds))}"]  # fmt: skip


def machine() -> dict:
    return {"host": platform.node(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__}  # fmt: skip
