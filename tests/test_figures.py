"""Figures: written as PNG and PDF, one violin per layer and attention kind, the paper's points overlaid."""

import json

import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from PIL import Image

from hopfield_attention.reports.figures import (
    ablation_curves,
    cosine_violins,
    depth_curves,
    save_figure,
)
from hopfield_attention.reports.publish import write_run_figures
from hopfield_attention.reports.tables import build_tables, load_paper_numbers

from support.results import REPO_PAPER_NUMBERS


def samples(n_layers, centre, seed=0):
    rng = np.random.default_rng(seed)
    return {n: np.clip(rng.normal(centre + 0.02 * n, 0.1, 200), -1, 1).tolist() for n in range(1, n_layers + 1)}


def violin_bodies(ax):
    return [c for c in ax.collections if isinstance(c, PolyCollection)]


def test_one_violin_per_layer_and_kind(tmp_path):
    fig = cosine_violins({"softmax": samples(24, 0.5), "MHA alpha=0.5": samples(24, 0.1)}, layers=[12, 24])
    (ax,) = fig.axes
    bodies = violin_bodies(ax)
    assert sorted(b.get_gid() for b in bodies) == sorted(
        ["softmax|layer 12", "softmax|layer 24", "MHA alpha=0.5|layer 12", "MHA alpha=0.5|layer 24"]
    )
    assert [t.get_text() for t in ax.get_xticklabels()] == ["layer 12", "layer 24"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["softmax", "MHA alpha=0.5"]
    png, pdf = save_figure(fig, tmp_path / "violin")
    assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 1000
    with Image.open(png) as image:
        assert image.size[0] > 300 and image.size[1] > 300


def test_every_layer_by_default_and_missing_layers_refused():
    fig = cosine_violins({"mha": samples(3, 0.3)})
    assert len(violin_bodies(fig.axes[0])) == 3
    with pytest.raises(ValueError, match=r"no cosine samples for layers \[5\]"):
        cosine_violins({"mha": samples(3, 0.3)}, layers=[1, 5])


def curves(ax):
    """label -> (x, y) of the drawn curves: ours are error-bar containers, the paper's plain lines."""
    drawn = {c.get_label(): c.lines[0] for c in ax.containers}
    drawn.update({line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")})
    return {label: (list(line.get_xdata()), list(line.get_ydata())) for label, line in drawn.items()}


_SEEDS = iter(range(10_000))


def run(table, row, column, value, dataset="CIFAR-100"):
    """A finished schema-2 record that its cell files (no deviations from its experiment), its own seed."""
    cell = {"definition": {}, "defined_by": "experiment=x", "deviations": {}, "qualifiers": {}, "debug": []}
    return {"schema": 2, "status": "finished", "cell": cell, "seed": next(_SEEDS), "ended_at": "t",
            "paper": {"table": table, "dataset": dataset, "row": row, "column": column},
            "metrics": {"test/top1": value}}  # fmt: skip


def test_ablation_curves_show_ours_and_the_paper():
    records = [run("6a", "alpha'=0.2", "MHA", v) for v in (70.0, 72.0)] + [run("6b", "alpha=0.6", "MHA", 71.0)]
    tables = {t.id: t for t in build_tables(records, load_paper_numbers(REPO_PAPER_NUMBERS))}
    fig = ablation_curves(tables["6a"], tables["6b"])
    left, right = fig.axes
    assert curves(left) == {"MHA (ours)": ([0.2], [71.0]), "MHA (paper)": ([0.0, 0.2, 1.0], [71.16, 72.29, 66.10])}
    assert curves(right)["MHA (ours)"] == ([0.6], [71.0])


def test_depth_curves_one_panel_per_dataset_with_paper_points():
    records = [run("7", "depth 4", "MHA", 80.0, dataset="CIFAR-10")]
    (table,) = [t for t in build_tables(records, load_paper_numbers(REPO_PAPER_NUMBERS)) if t.id == "7"]
    fig = depth_curves(table)
    assert [ax.get_title() for ax in fig.axes] == ["Table 7: CIFAR-10", "Table 7: CIFAR-100"]
    lines = curves(fig.axes[0])
    assert lines["MHA (ours)"] == ([4.0], [80.0])
    assert lines["softmax (paper)"] == ([1.0, 2.0, 4.0, 8.0, 12.0], [55.08, 63.72, 57.38, 48.59, 10.00])
    assert "softmax (ours)" not in lines  # no run: nothing drawn, nothing invented


def test_run_figures_from_records_and_analysis_files(tmp_path):
    logs = tmp_path / "logs"
    for name, kind, centre, created in (("a", "softmax", 0.8, "2026-01-01T00:00:00+00:00"),
                                        ("b", "MHA alpha=0.5", 0.2, "2026-01-01T00:00:00+00:00"),
                                        ("b", "stale", 0.0, "2025-01-01T00:00:00+00:00")):  # fmt: skip
        out = logs / name / "analysis"
        out.mkdir(parents=True, exist_ok=True)
        cos = samples(24, centre)
        result = {"model": "gpt2_medium", "data": "wikitext103", "kind": kind, "created_at": created,
                  "ckpt_path": f"/runs/{name}/checkpoints/last.ckpt", "layers": [{"layer": n} for n in cos],
                  "cos_samples": {str(k): v for k, v in cos.items()}}  # fmt: skip
        (out / f"{'old' if kind == 'stale' else 'last'}.json").write_text(json.dumps(result))
    written = write_run_figures([], load_paper_numbers(REPO_PAPER_NUMBERS), tmp_path / "figures", analysis_dir=logs)
    names = sorted(p.name for p in written)
    stems = ("table6_ablation", "table7_depth_no_skip", "cosine_violin_gpt2-medium_wikitext103_24-layers_trained")
    assert names == sorted(f"{stem}.{ext}" for ext in ("png", "pdf") for stem in stems)
    assert all(p.stat().st_size > 1000 for p in written)
