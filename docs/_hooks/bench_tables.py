"""MkDocs hook: the measured tables of docs/performance.md, rendered from the committed benchmark files.

A page line `<!-- bench-tables: results/bench/*.json -->` becomes, for each file the pattern matches (relative to
the repository root), a section with its machine and one table of every case but the single-layer sweep:
time and peak memory of each method as multiples of `softmax` in the same run, softmax's own figures beside them,
and the crossover width the run recommends. The numbers are the JSON's; nothing is typed into the page.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

MARKER = re.compile(r"<!-- bench-tables: (\S+) -->")
ROOT = Path(__file__).resolve().parents[2]


def _choices(result: dict) -> str:
    choices = result.get("auto_choices")
    if not choices:
        return ""
    counts: dict[str, int] = {}
    for choice in choices:
        counts[choice] = counts.get(choice, 0) + 1
    return " (" + ", ".join(f"{name} x{n}" if n > 1 else name for name, n in counts.items()) + ")"


def render(path: Path) -> str:
    bench = json.loads(path.read_text(encoding="utf-8"))
    machine, settings = bench["machine"], bench["settings"]
    rows: dict[tuple, dict[str, dict]] = defaultdict(dict)
    for result in bench["results"]:
        if result["case"] == "layer":
            continue
        rows[(result["case"], result["seq_len"], result["layers"])][result["method"]] = result
    methods = [m for m in settings["methods"] if m != "softmax"]
    lines = [
        f"### `{path.relative_to(ROOT).as_posix()}`",
        "",
        f"{machine.get('cpu', machine.get('gpu', '?'))}, {machine.get('threads', '?')} threads, torch "
        f"{machine.get('torch', '?')}, {settings['dtype']}, {settings['clock']} clock; "
        f"{'complete' if bench.get('complete') else 'incomplete'} run of {bench.get('elapsed_s', 0) / 60:.0f} min. "
        "Each cell: time, peak memory as multiples of softmax's in the same run.",
        "",
        "| case, T, blocks | softmax | " + " | ".join(f"`{m}`" for m in methods) + " |",
        "|---|---:|" + "---:|" * len(methods),
    ]
    for (case, seq_len, layers), by_method in rows.items():
        base = by_method.get("softmax")
        cells = [f"{base['time_ms'] / 1000:.3g} s, {base['peak_mb']:.0f} MB" if base else "—"]
        for method in methods:
            result = by_method.get(method)
            if result is None or result.get("time_ratio") is None:
                cells.append("—")
            else:
                cells.append(f"{result['time_ratio']:.2f}x, {result['memory_ratio']:.2f}x{_choices(result)}")
        lines.append(f"| {case}, {seq_len}, {layers} | " + " | ".join(cells) + " |")
    crossover = bench.get("crossover") or {}
    if crossover.get("recommended_max_width") is not None:
        lines += ["", f"Crossover: the run recommends `STACKED_MAX_WIDTH[\"{crossover['device']}\"] = "
                      f"{crossover['recommended_max_width']}` ({crossover.get('rule', '')}); "
                      "`attention/paths.py` states the value it keeps, and why."]  # fmt: skip
    return "\n".join(lines) + "\n"


def on_page_markdown(markdown: str, **kwargs) -> str:
    def tables(match: re.Match) -> str:
        files = sorted(ROOT.glob(match.group(1)))
        if not files:
            return "No measurement of this kind is committed yet.\n"
        return "\n".join(render(path) for path in files)

    return MARKER.sub(tables, markdown)
