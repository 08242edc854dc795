"""Which points the benchmark measures: a case at a sequence length, depth and batch.

The default CPU plan took 85 minutes on this project's 2-core machine (results/bench/cpu-2-cores.json; sized from
short runs to about 45, but the model steps at T = 4096 took longer). Where the CPU cannot afford a full model it
runs fewer blocks, said in each point's note and in the JSON. Each point's elapsed seconds are in the JSON
("points"), to resize the plan from a real run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from .cases import CASE_SHAPE, SHAPES


@dataclass(frozen=True)
class Point:
    case: str
    seq_len: int
    layers: int  # blocks of a model, layers of a stack; for "layer" the deepest layer measured
    batch: int = 1
    depths: tuple[int, ...] = ()  # "layer": the layers n measured (the stacked width is n * head_dim)
    note: str = ""
    variants: tuple[str, ...] = ()  # the carried variants measured here besides softmax (empty: all)

    def as_dict(self) -> dict:
        return {**asdict(self), "depths": list(self.depths), "variants": list(self.variants)}

    def measures(self, variant: str) -> bool:
        return variant == "softmax" or not self.variants or variant in self.variants


def _layer_points(seq_lens, depths, batch=1, **fields):
    return [Point("layer", t, max(depths), batch, tuple(depths), **fields) for t in seq_lens]


TARGET = "issue 11 target"
CPU_DEPTHS = (1, 2, 4, 8, 12)  # GPT-2 Small's depth; the CPU crossover is expected at a few layers
CPU_PLAN = [
    *_layer_points((256, 1024, 2048), CPU_DEPTHS),
    Point(
        "layer", 4096, 8, 1, (1, 2, 4, 8), "to n = 8 (CPU time); realformer's layer is the same computation", ("mha",)
    ),
    Point("stack", 256, 12),
    Point("stack", 1024, 12),
    Point("stack", 2048, 4, note="4 of 12 layers (CPU time)"),
    Point("stack", 4096, 4, note="4 of 12 layers (CPU time)"),
    Point("gpt2-small", 256, 12),
    Point("gpt2-small", 1024, 12, note=TARGET + ": the full model"),
    Point("gpt2-small", 2048, 4, note="4 of 12 blocks (CPU time)"),
    Point("gpt2-small", 4096, 4, note=TARGET + ": 4 blocks, batch 1"),
    Point("gpt2-medium", 256, 6, note="6 of 24 blocks (CPU time)"),
    Point("gpt2-medium", 1024, 4, note="4 of 24 blocks (CPU time)"),
    Point("gpt2-medium", 2048, 2, note="2 of 24 blocks (CPU time)"),
    Point("gpt2-medium", 4096, 2, note="2 of 24 blocks (CPU time)"),
    Point("vit-base", 197, 12, note="224 px"),
]

CUDA_DEPTHS = (1, 2, 4, 8, 12, 16, 24)  # up to GPT-2 Medium's depth: the CUDA crossover is expected later
CUDA_PLAN = [
    *_layer_points((1024,), CUDA_DEPTHS, batch=8),
    *_layer_points((4096,), CUDA_DEPTHS, batch=2, variants=("mha",)),
    Point("stack", 1024, 12, 8),
    Point("stack", 4096, 12, 2),
    *[
        Point(case, t, SHAPES[case].layers, max(1, 8192 // t))
        for case in ("gpt2-small", "gpt2-medium")
        for t in (256, 1024, 2048, 4096)
    ],  # 8192 tokens a batch
    Point("vit-base", 197, 12, 64, note="224 px"),
    Point("vit-base", 577, 12, 16, note="384 px"),
]

# --quick: every case and method at toy shapes (cases.TINY_SHAPES), to check the script end to end.
QUICK_PLAN = [
    *_layer_points((32,), (1, 2, 3)),
    Point("stack", 32, 3),
    Point("gpt2-small", 32, 2),
    Point("gpt2-medium", 32, 2),
    Point("vit-base", 17, 2),
]


def default_plan(on_gpu: bool, quick: bool) -> list[Point]:
    return list(QUICK_PLAN if quick else CUDA_PLAN if on_gpu else CPU_PLAN)


def custom_plan(plan: list[Point], cases, seq_lens=None, layers=None, batch=None, depths=None,
                shapes=SHAPES) -> list[Point]:  # fmt: skip
    """The plan's points of `cases`; given lengths replace the plan's (at `layers`, else the full depth)."""
    points = [p for p in plan if p.case in cases]
    if seq_lens:
        points = []
        for case in cases:
            full = shapes[CASE_SHAPE[case]].layers
            if case == "layer":
                chosen = tuple(depths) if depths else tuple(d for d in (1, 2, 4, 8, 12) if d <= (layers or full))
                points += [Point(case, t, max(chosen), 1, chosen) for t in seq_lens]
            else:
                points += [Point(case, t, layers or full) for t in seq_lens]
    if layers and not seq_lens:
        points = [p if p.case == "layer" else replace(p, layers=layers, note="") for p in points]
    if depths and not seq_lens:
        points = [replace(p, depths=tuple(depths), layers=max(depths)) if p.case == "layer" else p for p in points]
    if batch:
        points = [replace(p, batch=batch) for p in points]
    return points
