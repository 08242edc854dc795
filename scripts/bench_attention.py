"""Time and peak memory of attention with a carried state against the backbone's own fused attention.

Cases, each forward + backward:
  layer   one attention layer at GPT-2 Small's head shape (12 heads of 64), causal, given a carried state
          (a middle layer); the loss touches the output and the state handed on.
  gpt2    a full training step (forward, backward, AdamW) of a GPT-2 Small shaped model (768 wide, 12 heads,
          50257 tokens, no dropout; --layers blocks), built by transformers and converted by hopfield_attention.
  vit     the same for a ViT-Base shaped timm model (768 wide, 12 heads, patch 16; --layers blocks), with an
          image of ceil(sqrt(T - 1)) patches a side, so T is the nearest square + 1 at or above the asked one.
Methods: softmax (the backbone's own SDPA path), mha-<implementation> for each registered implementation,
realformer-<implementation>. Ratios are to softmax of the same case, length and run.

Peak memory is the growth over what was allocated before the measured step (inputs, model, optimizer
state): on CUDA torch.cuda.max_memory_allocated; on the CPU the peak bytes of tensor storage alive at once,
counted by a dispatch mode (LiveTensorBytes), in a run of its own after the timed ones. The CPU figure
is exact for PyTorch tensors and leaves out allocator slack (the resident set of the process depends on
glibc's reuse of freed blocks, which hides differences below its mmap threshold). Times are the best of
--repeats (taken round the methods in turn) after one warm-up run each.

    python scripts/bench_attention.py --quick                   # a few minutes on 2 CPU cores
    python scripts/bench_attention.py --seq-lens 128 256 512 1024 2048 --layers 2 --clock cpu   # the README run
    python scripts/bench_attention.py --device cuda      # a GPU session: T 128..8192, 12 layers, bf16
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import socket
import sys
import time
import weakref
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from hopfield_attention.attention import build_attention
from hopfield_attention.attention.paths import IMPLEMENTATIONS

REPO_ROOT = Path(__file__).resolve().parents[1]
HEADS, HEAD_DIM, WIDTH, VOCAB, PATCH = 12, 64, 768, 50257, 16
CASES = ("layer", "gpt2", "vit")


def methods() -> dict[str, tuple[str, dict]]:
    """Method name -> (attention variant, its parameters)."""
    table = {"softmax": ("softmax", {})}
    for implementation in IMPLEMENTATIONS:
        table[f"mha-{implementation}"] = ("mha", {"alpha": 0.5, "implementation": implementation})
    for implementation in IMPLEMENTATIONS:
        table[f"realformer-{implementation}"] = ("realformer", {"implementation": implementation})
    return table


# --- measuring ------------------------------------------------------------------------------------------


class LiveTensorBytes(TorchDispatchMode):
    """The CPU's counterpart of CUDA's max_memory_allocated: the peak bytes of tensor storage alive at once
    among the storages created while the mode is on (a storage counts until it is freed).

    An op's output that shares storage with one of its inputs (a view, an in-place op) is not new memory.
    Scratch space a kernel allocates inside C++ and frees before returning is not seen.
    """

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self._counted: set[int] = set()

    def _freed(self, key: int, nbytes: int) -> None:
        self.live -= nbytes
        self._counted.discard(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for tensor in tree_leaves(out):
            if not isinstance(tensor, torch.Tensor):
                continue
            storage = tensor.untyped_storage()
            key, nbytes = storage.data_ptr(), storage.nbytes()
            if nbytes == 0 or key in inputs or key in self._counted:
                continue
            self._counted.add(key)
            self.live += nbytes
            self.peak = max(self.peak, self.live)
            weakref.finalize(storage, self._freed, key, nbytes)  # fires when the storage itself is freed
        return out


def peak_bytes(step, device: torch.device) -> int:
    """Peak memory of `step()` above what was allocated before it."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    with LiveTensorBytes() as live:
        step()
    return live.peak


def measure(steps: dict, device: torch.device, repeats: int, clock=time.perf_counter) -> dict[str, tuple[list, int]]:
    """Method -> (seconds of each timed run, peak bytes) of its `step()`. The timed runs go round the methods in turn,
    so a load that drifts (a shared machine) touches every method alike, and the best of --repeats (as
    timeit reports) is the least disturbed; memory is counted in a run of its own after the timed ones."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for step in steps.values():
        step()  # warm-up: kernels chosen, optimizer state allocated
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            sync()
            start = clock()
            step()
            sync()
            times[name].append(clock() - start)
    return {name: (times[name], peak_bytes(step, device)) for name, step in steps.items()}


# --- the cases --------------------------------------------------------------------------------------------


def layer_step(variant_name, params, seq_len, batch, device, dtype):
    """One causal attention layer, forward + backward, given a carried state from the layer below."""
    gen = torch.Generator(device=device).manual_seed(0)
    shape = (batch, HEADS, seq_len, HEAD_DIM)
    q, k, v = (torch.randn(shape, generator=gen, device=device, dtype=dtype, requires_grad=True) for _ in range(3))
    variant = build_attention(variant_name, **params)
    hidden = None
    if variant.carries_state:
        hidden = torch.randn(batch, HEADS, seq_len, seq_len, generator=gen, device=device, requires_grad=True)
        state_grad = torch.randn(batch, HEADS, seq_len, seq_len, generator=gen, device=device)  # from above
    scale = 1.0 / math.sqrt(HEAD_DIM)

    def step():
        for t in (q, k, v, hidden):
            if t is not None:
                t.grad = None
        if variant.carries_state:
            out, state = variant.attend(q, k, v, hidden, scale=scale, is_causal=True)
            torch.autograd.backward([out, state], [torch.ones_like(out), state_grad])
        else:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
            out.backward(torch.ones_like(out))

    return step


def gpt2_model(layers: int, seq_len: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    # No dropout: the CPU's flash kernel has none, so dropout would send every method to SDPA's math path.
    config = GPT2Config(
        n_layer=layers, n_embd=WIDTH, n_head=HEADS, n_positions=seq_len, vocab_size=VOCAB,
        attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0,
    )  # fmt: skip
    config._attn_implementation = "sdpa"  # the stock fused path is the softmax baseline
    return GPT2LMHeadModel(config)


def vit_model(layers: int, seq_len: int):
    from timm.models.vision_transformer import VisionTransformer

    side = math.ceil(math.sqrt(seq_len - 1))  # patches a side: T = side^2 + 1 (the class token)
    return VisionTransformer(
        img_size=side * PATCH, patch_size=PATCH, embed_dim=WIDTH, depth=layers, num_heads=HEADS, num_classes=1000
    )


def model_step(case, variant_name, params, seq_len, batch, device, dtype, layers):
    """A training step of a converted model: forward, backward, AdamW."""
    from hopfield_attention import convert_model

    torch.manual_seed(0)
    model = gpt2_model(layers, seq_len) if case == "gpt2" else vit_model(layers, seq_len)
    model = convert_model(model, variant_name, **params).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    if case == "gpt2":
        tokens = torch.randint(0, VOCAB, (batch, seq_len), device=device)
        loss_of = lambda: model(input_ids=tokens, labels=tokens).loss  # noqa: E731
    else:
        size = model.patch_embed.img_size
        images = torch.randn(batch, 3, *size, device=device)
        labels = torch.randint(0, 1000, (batch,), device=device)
        loss_of = lambda: F.cross_entropy(model(images), labels)  # noqa: E731
    autocast = torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else nullcontext()

    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = loss_of()
        loss.backward()
        optimizer.step()

    return step


def actual_seq_len(case: str, seq_len: int) -> int:
    return math.ceil(math.sqrt(seq_len - 1)) ** 2 + 1 if case == "vit" else seq_len


# --- running and reporting -----------------------------------------------------------------------------------


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
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run(args) -> dict:
    device = torch.device(args.device)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
    table = methods()
    chosen = args.methods or list(table)
    results = []
    for case in args.cases:
        for seq_len in args.seq_lens:
            steps = {}
            for method in chosen:
                variant_name, params = table[method]
                if case == "layer":
                    steps[method] = layer_step(variant_name, params, seq_len, args.batch, device, dtype)
                else:
                    steps[method] = model_step(
                        case, variant_name, params, seq_len, args.batch, device, dtype, args.layers
                    )
            measured = measure(steps, device, args.repeats, CLOCKS[args.clock])
            del steps
            base_times, base_peak = measured.get("softmax", (None, None))
            base_time = min(base_times) if base_times else None
            for method, (times, peak) in measured.items():
                seconds = min(times)
                row = {
                    "case": case,
                    "seq_len": actual_seq_len(case, seq_len),
                    "method": method,
                    "time_ms": seconds * 1e3,
                    "peak_mb": peak / 2**20,
                    "time_ratio": seconds / base_time if base_time else None,
                    "all_times_ms": [t * 1e3 for t in times],
                    "memory_ratio": peak / base_peak if base_peak else None,
                }
                results.append(row)
                print(format_row(row), flush=True)
    return {
        "machine": machine(device),
        "settings": {
            "device": args.device,
            "dtype": args.dtype,
            "batch": args.batch,
            "layers": args.layers,
            "repeats": args.repeats,
            "clock": args.clock,
            "seq_lens": args.seq_lens,
            "cases": args.cases,
            "heads": HEADS,
            "head_dim": HEAD_DIM,
            "memory": "CUDA max_memory_allocated" if device.type == "cuda" else "peak live tensor bytes",
        },
        "results": results,
    }


# wall: elapsed time. cpu: the process's CPU time summed over its threads; on a shared machine a busy
# neighbour or a CPU quota stretches elapsed time but not this (threads spinning in a barrier still count).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}

HEADER = f"{'case':<6} {'T':>5} {'method':<20} {'time ms':>10} {'x softmax':>9} {'peak MB':>9} {'x softmax':>9}"


def format_row(row: dict) -> str:
    def ratio(value):
        return f"{value:9.2f}" if value is not None else f"{'-':>9}"

    return (
        f"{row['case']:<6} {row['seq_len']:>5} {row['method']:<20} {row['time_ms']:>10.1f} "
        f"{ratio(row.get('time_ratio'))} {row['peak_mb']:>9.1f} {ratio(row.get('memory_ratio'))}"
    )


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cuda = torch.cuda.is_available()
    parser.add_argument("--device", default="cuda" if cuda else "cpu")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default=None,
                        help="bf16 runs through autocast; default bfloat16 on CUDA, float32 on the CPU")  # fmt: skip
    parser.add_argument("--seq-lens", type=int, nargs="+", default=None,
                        help="default 128 256 512 1024 2048 (CPU), up to 8192 (CUDA)")  # fmt: skip
    parser.add_argument("--layers", type=int, default=None, help="blocks of the model cases: 12 (CUDA), 2 (CPU)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--clock", choices=tuple(CLOCKS), default="wall",
                        help="wall (default) or cpu: process CPU time, steadier on a shared CPU machine")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--methods", nargs="+", choices=list(methods()), default=None,
                        help="default: all; ratios need softmax among them")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="T in 128 512 1024, 1 layer, 1 repeat")
    parser.add_argument("--out", type=Path, default=None, help="JSON path; default results/bench/<host>-<device>.json")
    args = parser.parse_args(argv)

    on_gpu = args.device.startswith("cuda")
    args.dtype = args.dtype or ("bfloat16" if on_gpu else "float32")
    if args.quick:
        args.seq_lens = args.seq_lens or [128, 512, 1024]
        args.layers = args.layers or 1
        args.repeats = 1
    default_lens = [128, 256, 512, 1024, 2048] + ([4096, 8192] if on_gpu else [])
    args.seq_lens = args.seq_lens or default_lens
    args.layers = args.layers or (12 if on_gpu else 2)
    if any(t < 2 for t in args.seq_lens):
        parser.error(f"--seq-lens must be at least 2, got {args.seq_lens}")
    if args.out is None:
        device_name = torch.cuda.get_device_name().replace(" ", "-") if on_gpu else "cpu"
        args.out = REPO_ROOT / "results" / "bench" / f"{socket.gethostname()}-{device_name}.json"
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    print(HEADER)
    report = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"machine: {report['machine']}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
