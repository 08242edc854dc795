"""The stacked width at which "auto" should stop stacking, read off a benchmark JSON's "layer" rows.

Per layer, the dense paths (explicit, fused) cost the same at every depth n >= 2 (one T x T state), the stacked
path about a + b E at stacked width E = n * head_dim (notes/stacked-kernels.md, "Cost"). Per variant and T this
fits a + b E to the stacked rows by least squares and gives the crossover E* = (t_dense - a) / b against the
cheaper dense path at n >= 2, and the widest measured E whose stacked layer was no slower. "auto" has one
threshold per device (attention/paths.py STACKED_MAX_WIDTH): the recommended one is the multiple of head_dim that
minimises the summed time of layers 1..N at every measured T and variant under the rule "stack while E <= the
threshold, then dense" (N: the deepest measured layer; measured stacked times where there are, the line between),
so the longest sequences, where attention costs most, weigh most.

    python scripts/bench_attention.py --crossover results/bench/<host>-<device>.json
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path


def _fit_line(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares (intercept, slope) of y on x; one point gives a line through the origin."""
    if len(points) == 1:
        x, y = points[0]
        return 0.0, y / x
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sxx
    return mean_y - slope * mean_x, slope


def crossover(report: dict) -> dict:
    """{"per_case": [...], "recommended_max_width": E or None, ...} from a report of scripts/bench_attention.py."""
    settings = report["settings"]
    head_dim = settings["head_dim"]
    groups: dict[tuple[str, int], dict] = defaultdict(lambda: {"stacked": {}, "dense": {}, "first": {}})
    for row in report["results"]:
        if row["case"] != "layer" or row.get("time_ms") is None or row["variant"] == "softmax":
            continue
        group = groups[(row["variant"], row["seq_len"])]
        if row["implementation"] == "stacked":
            group["stacked"][row["depth"] * head_dim] = row["time_ms"]
        elif row["implementation"] in ("explicit", "fused"):
            kind = "first" if row["depth"] == 1 else "dense"
            group[kind][row["implementation"]] = min(row["time_ms"], group[kind].get(row["implementation"], 1e300))
    per_case, usable = [], []
    for (variant, seq_len), group in sorted(groups.items()):
        if len(group["stacked"]) < 2 or not group["dense"]:
            continue  # a line needs two widths, and a middle dense layer to compare with
        widths = sorted(group["stacked"])
        intercept, slope = _fit_line([(w, group["stacked"][w]) for w in widths])
        dense_path = min(group["dense"], key=group["dense"].get)
        dense_ms = group["dense"][dense_path]
        fitted = (dense_ms - intercept) / slope if slope > 0 else None
        no_slower = [w for w in widths if group["stacked"][w] <= dense_ms]
        entry = {
            "variant": variant,
            "seq_len": seq_len,
            "stacked_ms": {str(w): group["stacked"][w] for w in widths},
            "dense_ms": dict(group["dense"]),
            "cheaper_dense_path": dense_path,
            "fit_ms": {"intercept": intercept, "per_width": slope},
            "crossover_width": fitted,
            "crossover_within_measured": fitted is not None and widths[0] <= fitted <= widths[-1],
            "widest_no_slower": max(no_slower) if no_slower else None,
        }
        per_case.append(entry)
        first_ms = min(group["first"].values()) if group["first"] else dense_ms
        usable.append((group["stacked"], intercept, slope, dense_ms, first_ms, widths[-1] // head_dim))
    return {
        "device": settings["device"],
        "dtype": settings["dtype"],
        "head_dim": head_dim,
        "per_case": per_case,
        "recommended_max_width": _best_threshold(usable, head_dim),
        "rule": "stack while the stacked width after a layer is at most the threshold, then go dense once",
    }


def _best_threshold(usable, head_dim: int) -> int | None:
    """The multiple of head_dim minimising the time of layers 1..N summed over the measured cases (a stacked
    layer's measured time where there is one, the fitted line between)."""
    if not usable:
        return None
    deepest = max(case[-1] for case in usable)

    def total(threshold: int) -> float:
        time = 0.0
        for measured, intercept, slope, dense_ms, first_ms, _ in usable:
            for n in range(1, deepest + 1):
                width = n * head_dim
                if width <= threshold:
                    time += measured.get(width, intercept + slope * width)
                else:
                    time += first_ms if n == 1 else dense_ms
        return time

    candidates = [k * head_dim for k in range(deepest + 1)]
    return min(candidates, key=lambda threshold: (total(threshold), threshold))


def format_crossover(result: dict) -> str:
    lines = [f"crossover of the stacked path ({result['device']}, {result['dtype']}, head dim {result['head_dim']}):"]
    for case in result["per_case"]:
        fitted = case["crossover_width"]
        where = "" if case["crossover_within_measured"] else " (extrapolated)"
        lines.append(
            f"  {case['variant']:<10} T={case['seq_len']:>5}  dense {case['cheaper_dense_path']} "
            f"{case['dense_ms'][case['cheaper_dense_path']]:.1f} ms; stacked {case['fit_ms']['intercept']:.1f} + "
            f"{case['fit_ms']['per_width']:.3f} ms x width; crossover width "
            f"{'-' if fitted is None else f'{fitted:.0f}'}{where}; widest no slower {case['widest_no_slower']}"
        )
    lines.append(f"  recommended STACKED_MAX_WIDTH[{result['device']!r}] = {result['recommended_max_width']}")
    return "\n".join(lines)


def crossover_from_file(path: Path) -> dict:
    return crossover(json.loads(Path(path).read_text()))
