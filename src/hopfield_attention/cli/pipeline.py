"""What the pipelines over the ordinary entry points share (paper_small, readings): one command in a child
process with its output shown and its duration kept, the local sweep's options, and the machine that ran them."""

from __future__ import annotations

import fnmatch
import os
import platform
import re
import subprocess
import sys
import time

import torch
from omegaconf import OmegaConf

from ..config.locations import CONFIG_DIR
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


def sweep_experiments(sweep: str) -> list[str]:
    """The experiment files a sweep config (configs/sweep/<sweep>.yaml) runs: its `experiment` parameter, a comma
    list or Hydra's glob(<pattern>) over configs/experiment/."""
    params = OmegaConf.load(CONFIG_DIR / "sweep" / f"{sweep}.yaml").hydra.sweeper.params
    value = str(params.experiment)
    files = sorted(path.stem for path in (CONFIG_DIR / "experiment").glob("*.yaml"))
    pattern = re.fullmatch(r"glob\((.+)\)", value)
    if pattern is None:
        return [name.strip() for name in value.split(",")]
    if "," in pattern.group(1) or "=" in pattern.group(1):
        raise ValueError(f"sweep {sweep}: experiment={value}: only glob(<pattern>) and comma lists are read here")
    return [name for name in files if fnmatch.fnmatchcase(name, pattern.group(1))]


def passed_paths(cfg) -> list[str]:
    """The paths.* of a pipeline, for every command it starts: their data, caches and logs (its own log_dir) go
    where the pipeline's do."""
    paths = {key: cfg.paths[key] for key in ("work_dir", "data_dir", "cache_dir")}
    return [f"paths.{key}={value}" for key, value in paths.items()] + [f"paths.log_dir={cfg.log_dir}"]


def local_sweep(jobs: int, seeds: list[int]) -> list[str]:
    """The overrides of a sweep on this machine: `jobs` at a time (joblib), the cores shared out among them."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    return ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={jobs}", f"threads={threads}",
            f"seed={','.join(map(str, seeds))}"]  # fmt: skip


def machine() -> dict:
    return {"host": platform.node(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__}  # fmt: skip
