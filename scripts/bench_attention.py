"""Time and peak live memory of attention with a carried state against the backbone's own fused attention.

One run measures every method at every point of a plan (attention_bench/plan.py) and gives ratios to softmax
from that same run: one attention layer at each depth (the stacked width n * D against the dense paths at the
same T: the input of the cost model of "auto"), a stack of attention layers alone, and full training steps
(forward, backward, AdamW) of GPT-2 Small, GPT-2 Medium shaped and ViT-Base shaped models (the cases:
attention_bench/cases.py). Methods: softmax (the stock SDPA path), mha-<implementation> and
realformer-<implementation> for every registered implementation and "auto".

Memory is the peak growth over what was allocated before the step (inputs, model, optimizer state): on CUDA
torch.cuda.max_memory_allocated; on the CPU the peak bytes of tensor storage alive at once, counted by a
dispatch mode in the first run of each step (attention_bench/measure.py), exact for PyTorch tensors. Time: the
best of the timed runs after it, by process CPU time on the CPU (steadier on a shared machine) and wall time
on CUDA. The report ends with the stacked width at which "auto" should go dense (attention_bench/crossover.py).

    python scripts/bench_attention.py                      # the default plan of this device (CPU: about 45 min)
    python scripts/bench_attention.py --quick              # every case and method at toy shapes: about a minute
    python scripts/bench_attention.py --print-plan         # what would run
    python scripts/bench_attention.py --cases gpt2-small --seq-lens 1024 --layers 2
    python scripts/bench_attention.py --crossover results/bench/<host>-<device>.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path

import torch

# The helpers live beside this script (attention_bench/); a test that loads it by path finds them too.
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from attention_bench.cases import (  # noqa: E402
    CASE_SHAPE,
    CASES,
    SHAPES,
    TINY_SHAPES,
    actual_seq_len,
    build_step,
    is_dense,
    methods,
    recording_auto_choices,
)  # fmt: skip
from attention_bench.crossover import crossover, crossover_from_file, format_crossover  # noqa: E402
from attention_bench.measure import CLOCKS, LiveTensorBytes, measure_step, release  # noqa: E402, F401 (re-exported)
from attention_bench.plan import Point, custom_plan, default_plan  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


# --- running -----------------------------------------------------------------------------------------------------


def method_depths(point: Point, method) -> list[int]:
    """The layers n a method is measured at: the dense paths cost the same at every n >= 2 (one T x T state), so
    they run at the first layer and one middle layer; softmax has no state and runs once."""
    if point.case != "layer":
        return [1]
    if method.variant == "softmax":
        return [min(point.depths)]
    if is_dense(method):
        middle = [n for n in point.depths if n >= 2][:1]
        return sorted({min(point.depths), *middle})
    return list(point.depths)


def run_point(point: Point, chosen, shapes, device, dtype, clock, repeats, enough_seconds) -> list[dict]:
    """Every chosen method at one point, each measured alone (its own model, freed before the next)."""
    shape = shapes[CASE_SHAPE[point.case]]
    rows, base = [], None
    for method in (m for m in chosen if point.measures(m.variant)):
        for depth in method_depths(point, method):
            row = {
                "case": point.case, "seq_len": actual_seq_len(point.case, point.seq_len), "layers": point.layers,
                "batch": point.batch, "depth": depth if point.case == "layer" else None,
                "stacked_width": depth * shape.head_dim if point.case == "layer" else None,
                "method": method.name, "variant": method.variant, "implementation": method.implementation,
            }  # fmt: skip
            recording = recording_auto_choices() if method.implementation == "auto" else nullcontext()
            step = None
            try:
                step = build_step(point.case, method, shape, point.seq_len, point.layers, point.batch, device,
                                  dtype, depth)  # fmt: skip
                with recording as choices:
                    if choices is not None:
                        step = _marking(step, choices)
                    measured = measure_step(step, device, clock, repeats, enough_seconds)
                row.update(time_ms=measured.best * 1e3, all_times_ms=[t * 1e3 for t in measured.times],
                           peak_mb=measured.peak_bytes / 2**20)  # fmt: skip
                if choices is not None:
                    row["auto_choices"] = choices.per_layer
            except torch.OutOfMemoryError as error:  # one method out of memory: say so, measure the others
                row.update(time_ms=None, peak_mb=None, error=f"out of memory: {str(error).splitlines()[0]}")
            finally:
                step = None
                release(device)
            if method.variant == "softmax" and row["time_ms"] is not None:
                base = row
            row["time_ratio"] = _ratio(row.get("time_ms"), base and base["time_ms"])
            row["memory_ratio"] = _ratio(row.get("peak_mb"), base and base["peak_mb"])
            rows.append(row)
            print(format_row(row), flush=True)
    return rows


def _marking(step, choices):
    def marked():
        choices.next_step()
        step()

    return marked


def _ratio(value, base):
    return value / base if value is not None and base else None


def run_plan(plan: list[Point], *, method_names, shapes, device: str, dtype: str, clock: str, repeats: int,
             enough_seconds: float, quick: bool = False, argv=None, out: Path | None = None) -> dict:  # fmt: skip
    """Measure every method at every point; the report as it is written to JSON (to `out` after every point too,
    marked incomplete until the last, so a long run stopped early keeps what it measured)."""
    table = methods()
    chosen = [table[name] for name in method_names]
    results, timings = [], []
    started = time.perf_counter()
    settings = dict(device=device, dtype=dtype, clock=clock, repeats=repeats, enough_seconds=enough_seconds,
                    method_names=method_names, shapes=shapes, quick=quick, argv=argv)  # fmt: skip
    for index, point in enumerate(plan, start=1):
        print(f"\n{describe(point, shapes)}\n{HEADER}", flush=True)
        begun = time.perf_counter()
        results += run_point(point, chosen, shapes, torch.device(device), DTYPES[dtype], clock, repeats,
                             enough_seconds)  # fmt: skip
        timings.append({**point.as_dict(), "elapsed_s": time.perf_counter() - begun})
        if out is not None and index < len(plan):
            write_report(out, build_report(results, timings, started, complete=False, **settings))
    return build_report(results, timings, started, complete=True, **settings)


def write_report(out: Path, report: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")


def build_report(results, timings, started, *, complete: bool, device, dtype, clock, repeats, enough_seconds,
                 method_names, shapes, quick, argv) -> dict:  # fmt: skip
    layer_shape = shapes[CASE_SHAPE["layer"]]
    report = {
        "machine": machine(torch.device(device)),
        "settings": {
            "device": device,
            "dtype": dtype,
            "clock": clock,
            "repeats": repeats,
            "enough_seconds": enough_seconds,
            "methods": list(method_names),
            "quick": quick,
            "shapes": {name: asdict(shape) for name, shape in shapes.items()},
            "head_dim": layer_shape.head_dim,
            "heads": layer_shape.heads,  # of the layer and stack cases
            "memory": "CUDA max_memory_allocated" if device.startswith("cuda") else "peak live tensor bytes",
            "argv": argv,
        },  # fmt: skip
        "results": results,
        "points": timings,
        "complete": complete,
        "elapsed_s": time.perf_counter() - started,
    }
    report["crossover"] = crossover(report)
    return report


def machine(device: torch.device) -> dict:
    info = {
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# --- reporting ---------------------------------------------------------------------------------------------------

HEADER = f"{'method':<20} {'layer':>5} {'time ms':>10} {'x softmax':>9} {'peak MB':>9} {'x softmax':>9}  auto"


def describe(point: Point, shapes) -> str:
    shape = shapes[CASE_SHAPE[point.case]]
    t = actual_seq_len(point.case, point.seq_len)
    if point.case == "layer":
        what = f"one layer at depths {list(point.depths)} (stacked width n x {shape.head_dim})"
    else:
        what = f"{point.layers} {'layers' if point.case == 'stack' else 'blocks'} of {shape.width}"
    note = f"  ({point.note})" if point.note else ""
    note += f"  [{', '.join(point.variants)} only]" if point.variants else ""
    return f"== {point.case}  T={t}  {what}, {shape.heads} heads, batch {point.batch}{note}"


def format_row(row: dict) -> str:
    def number(value, width, digits):
        return f"{value:{width}.{digits}f}" if value is not None else f"{'-':>{width}}"

    depth = row["depth"] if row["depth"] is not None else ""
    choices = _summarise(row.get("auto_choices", []))
    error = f"  {row['error']}" if row.get("error") else ""
    return (
        f"{row['method']:<20} {depth:>5} {number(row.get('time_ms'), 10, 1)} {number(row.get('time_ratio'), 9, 2)} "
        f"{number(row.get('peak_mb'), 9, 1)} {number(row.get('memory_ratio'), 9, 2)}  {choices}{error}"
    )


def _summarise(choices: list[str]) -> str:
    """['stacked', 'stacked', 'fused'] -> 'stacked x2, fused x1' (the per-layer choices of auto, in order)."""
    runs: list[list] = []
    for choice in choices:
        if runs and runs[-1][0] == choice:
            runs[-1][1] += 1
        else:
            runs.append([choice, 1])
    return ", ".join(f"{name} x{count}" for name, count in runs)


# --- command line ------------------------------------------------------------------------------------------------


def parse_args(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cuda = torch.cuda.is_available()
    parser.add_argument("--device", default="cuda" if cuda else "cpu")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default=None,
                        help="bf16 runs under autocast; default bfloat16 on CUDA, float32 on the CPU")  # fmt: skip
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--seq-lens", type=int, nargs="+", default=None,
                        help="instead of the plan: the chosen cases at these T (--layers or full depth)")  # fmt: skip
    parser.add_argument("--layers", type=int, default=None, help="blocks of the model and stack cases")
    parser.add_argument("--depths", type=int, nargs="+", default=None, help="layers n of the layer case")
    parser.add_argument("--batch", type=int, default=None, help="replace the plan's batch sizes")
    parser.add_argument("--methods", nargs="+", choices=list(methods()), default=list(methods()),
                        help="default: all; ratios need softmax among them")  # fmt: skip
    parser.add_argument("--clock", choices=tuple(CLOCKS), default=None,
                        help="cpu: process CPU time (the CPU default), wall: elapsed (CUDA, always)")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=None, help="most timed runs (3; CUDA 10; --quick 1)")
    parser.add_argument("--enough-seconds", type=float, default=None,
                        help="stop timing a method once its runs took this long together (CPU 2, CUDA 1)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads); --quick 1")
    parser.add_argument("--quick", action="store_true", help="every case and method at toy shapes, 1 thread: a minute")
    parser.add_argument("--print-plan", action="store_true", help="print the points and exit")
    parser.add_argument("--out", type=Path, default=None, help="JSON path; default results/bench/<host>-<device>.json")
    parser.add_argument("--crossover", type=Path, default=None, metavar="JSON",
                        help="print the crossover width derived from a bench JSON and exit")  # fmt: skip
    args = parser.parse_args(argv)
    args.argv = argv

    on_gpu = args.device.startswith("cuda")
    if on_gpu and not cuda:
        parser.error(f"--device {args.device}: CUDA is not available here")
    if args.clock == "cpu" and on_gpu:
        parser.error("--clock cpu measures the host only: CUDA runs take the wall clock")
    args.clock = args.clock or ("wall" if on_gpu else "cpu")
    args.dtype = args.dtype or ("bfloat16" if on_gpu else "float32")
    args.repeats = args.repeats or (1 if args.quick else 10 if on_gpu else 3)
    args.enough_seconds = args.enough_seconds if args.enough_seconds is not None else (1.0 if on_gpu else 2.0)
    for name in ("seq_lens", "depths"):
        values = getattr(args, name) or []
        if any(v < (2 if name == "seq_lens" else 1) for v in values):
            parser.error(f"--{name.replace('_', '-')} must be at least {2 if name == 'seq_lens' else 1}, got {values}")
    for name in ("layers", "batch", "repeats", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name} must be at least 1, got {value}")
    # Toy ops on 2 threads mostly wait for each other (seconds on a loaded machine): --quick runs on one.
    args.threads = args.threads or (1 if args.quick else None)
    args.shapes = TINY_SHAPES if args.quick else SHAPES
    plan = default_plan(on_gpu, args.quick)
    args.plan = custom_plan(plan, args.cases, args.seq_lens, args.layers, args.batch, args.depths, args.shapes)
    if args.out is None:
        device_name = torch.cuda.get_device_name().replace(" ", "-") if on_gpu else "cpu"
        suffix = "-quick" if args.quick else ""
        args.out = REPO_ROOT / "results" / "bench" / f"{socket.gethostname()}-{device_name}{suffix}.json"
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.crossover is not None:
        print(format_crossover(crossover_from_file(args.crossover)))
        return 0
    if args.print_plan:
        for point in args.plan:
            print(describe(point, args.shapes))
        print(f"{len(args.methods)} methods: {' '.join(args.methods)}")
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    report = run_plan(args.plan, method_names=args.methods, shapes=args.shapes, device=args.device, dtype=args.dtype,
                      clock=args.clock, repeats=args.repeats, enough_seconds=args.enough_seconds, quick=args.quick,
                      argv=args.argv, out=args.out)  # fmt: skip
    write_report(args.out, report)
    print()
    print(format_crossover(report["crossover"]))
    print(f"machine: {report['machine']}")
    print(f"elapsed: {report['elapsed_s']:.0f} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
