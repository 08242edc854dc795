"""The paper's figures from our runs (matplotlib, Agg): token-cosine violins per layer (softmax vs MHA),
the alpha / alpha' ablation curves (Table 6) and accuracy against depth without skip connections
(Table 7), each with the paper's known numbers overlaid. Every function returns its Figure."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ..runs.atomic import atomic_file  # noqa: E402
from .tables import PERCENT_METRICS, Table  # noqa: E402

COLOURS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860")


def cosine_violins(samples: Mapping[str, Mapping[int, Sequence[float]]], layers: Sequence[int] | None = None,
                   title: str = "Pairwise cosine similarity of token representations") -> Figure:  # fmt: skip
    """One violin per (layer, attention kind), kinds side by side within each layer.

    samples: kind label (e.g. "softmax", "MHA alpha=0.5") -> layer number (from 1) -> cosine values.
    layers: which layers to draw (default: every layer the first kind has). Each violin body carries the
    gid "<kind>|layer <n>".
    """
    if not samples:
        raise ValueError("cosine_violins needs at least one attention kind")
    kinds = list(samples)
    layers = list(layers) if layers is not None else sorted(int(k) for k in samples[kinds[0]])
    for kind in kinds:
        missing = [n for n in layers if not samples[kind].get(n)]
        if missing:
            raise ValueError(f"{kind!r} has no cosine samples for layers {missing}; it has {sorted(samples[kind])}")
    width = 0.8 / len(kinds)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(layers) * len(kinds) + 1.5), 3.6), layout="constrained")
    for k, (kind, colour) in enumerate(zip(kinds, _cycle(len(kinds)))):
        positions = [i + (k - (len(kinds) - 1) / 2) * width for i in range(len(layers))]
        parts = ax.violinplot([list(samples[kind][n]) for n in layers], positions=positions, widths=0.9 * width,
                              showextrema=False, showmedians=True)  # fmt: skip
        for body, layer in zip(parts["bodies"], layers):
            body.set_facecolor(colour)
            body.set_edgecolor("black")
            body.set_alpha(0.75)
            body.set_gid(f"{kind}|layer {layer}")
        parts["cmedians"].set_color("black")
        ax.bar(0, 0, color=colour, label=kind)  # legend handle (zero-size)
    ax.set_xticks(range(len(layers)), [f"layer {n}" for n in layers])
    ax.set_ylabel("cosine similarity")
    ax.set_ylim(-1.05, 1.05)
    ax.axhline(1.0, color="grey", lw=0.6, ls=":")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower left", fontsize=8, frameon=False)
    return fig


def ablation_curves(alpha_prime: Table, alpha: Table) -> Figure:
    """Table 6: top-1 against alpha' (at alpha = 0.5) and against alpha (at alpha' = 0.5)."""
    fig, axes = plt.subplots(1, 2, figsize=(8.5, 3.4), sharey=True, layout="constrained")
    for ax, table, name in ((axes[0], alpha_prime, "α' (α = 0.5)"), (axes[1], alpha, "α (α' = 0.5)")):
        _curves(ax, table, dataset=table.datasets[0] if table.datasets else None, x_of=_number_in)
        ax.set_xlabel(name)
        ax.set_title(f"Table {table.id}: {table.datasets[0] if table.datasets else ''}", fontsize=10)
    axes[0].set_ylabel(_metric_label(alpha_prime))
    return fig


def parameter_curve(table: Table, xlabel: str) -> Figure:
    """One panel: the metric against the number in each row label (e.g. alpha'), ours and the paper's."""
    fig, ax = plt.subplots(figsize=(4.6, 3.4), layout="constrained")
    _curves(ax, table, dataset=table.datasets[0] if table.datasets else None, x_of=_number_in)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(_metric_label(table))
    ax.set_title(table.title, fontsize=9)
    return fig


def depth_curves(table: Table) -> Figure:
    """Table 7: top-1 against depth without skip connections, one panel per dataset."""
    datasets = table.datasets or [""]
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.3 * len(datasets), 3.4), squeeze=False,
                             layout="constrained")  # fmt: skip
    for ax, dataset in zip(axes[0], datasets):
        _curves(ax, table, dataset=dataset, x_of=_number_in)
        ax.set_xlabel("depth (blocks, no skip connections)")
        ax.set_xscale("log", base=2)
        depths = sorted({_number_in(row) for d, row in table.rows if d == dataset})
        ax.set_xticks(depths, [f"{d:g}" for d in depths])
        ax.set_title(f"Table {table.id}: {dataset}", fontsize=10)
    axes[0][0].set_ylabel(_metric_label(table))
    return fig


def _curves(ax, table: Table, dataset: str | None, x_of) -> None:
    """Per column: our mean ± std (solid, error bars) and the paper's known points (hollow, dashed)."""
    rows = [row for d, row in table.rows if d == dataset]
    for column, colour in zip(table.columns, _cycle(len(table.columns))):
        ours = [(x_of(r), table.cell_runs(dataset, r, column)) for r in rows]
        ours = sorted((x, c.mean, c.std or 0.0) for x, c in ours if c.n)
        if ours:
            xs, means, stds = zip(*ours)
            ax.errorbar(xs, means, yerr=stds, color=colour, marker="o", capsize=3, label=f"{column} (ours)")
        known = [(r, table.paper.get((dataset, r, column))) for r in rows]
        paper = sorted((x_of(r), _paper_number(cell)) for r, cell in known if _paper_number(cell) is not None)
        if paper:
            xs, values = zip(*paper)
            ax.plot(xs, values, color=colour, ls="--", marker="s", mfc="white", label=f"{column} (paper)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, frameon=False)


def _paper_number(cell) -> float | None:
    """The paper's number of a cell: its value, or the number our own tables quote in words ("72.29 (best)")."""
    if cell is None:
        return None
    if cell.value is not None:
        return cell.value
    match = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)(?:\s*\(.*\))?\s*", cell.text or "")
    return float(match.group(1)) if match else None


def _number_in(label: str) -> float:
    """The number in a row label: "alpha'=0.2" -> 0.2, "depth 12" -> 12."""
    match = re.search(r"-?\d+(?:\.\d+)?", label)
    if match is None:
        raise ValueError(f"row {label!r} names no number to plot against")
    return float(match.group())


def _metric_label(table: Table) -> str:
    return f"{table.metric} (%)" if table.metric in PERCENT_METRICS else table.metric


def _cycle(n: int) -> list[str]:
    return [COLOURS[i % len(COLOURS)] for i in range(n)]


def save_figure(fig: Figure, stem: str | Path) -> list[Path]:
    """Write <stem>.png (150 dpi) and <stem>.pdf; closes the figure."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    # No timestamps in the files: regenerating unchanged figures leaves git quiet. Atomic writes: a full disk
    # is reported with the path and leaves the previous figure whole.
    try:
        with atomic_file(paths[0], "wb") as handle:
            fig.savefig(handle, format="png", dpi=150, metadata={"Software": None})
        with atomic_file(paths[1], "wb") as handle:
            fig.savefig(handle, format="pdf", metadata={"CreationDate": None, "Creator": None, "Producer": None})
    finally:
        plt.close(fig)
    return paths
