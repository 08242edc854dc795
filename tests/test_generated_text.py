"""Verdicts are outputs: every generated block of the README, and the study's report, equal what their generators
render from the committed results files, so committed text and committed results cannot disagree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hopfield_attention.config.locations import SOURCE_CHECKOUT as REPOSITORY_DIR
from hopfield_attention.readings import README_BLOCK
from hopfield_attention.reports.generated import markers, read_block, write_block
from hopfield_attention.reports.laptop_verdicts import laptop_summary
from hopfield_attention.reports.readings_report import render_markdown, summary

README = REPOSITORY_DIR / "README.md"
RESULTS = REPOSITORY_DIR / "results"


def committed(name: str) -> dict:
    return json.loads((RESULTS / name).read_text(encoding="utf-8"))


def test_the_readme_account_of_the_reading_study_is_rendered_from_its_results():
    study = committed("readings.json")
    assert read_block(README.read_text(encoding="utf-8"), README_BLOCK) == summary(study, "results/tables/readings.md")


def test_the_study_report_is_rendered_from_its_results():
    study = committed("readings.json")
    assert (RESULTS / "tables" / "readings.md").read_text(encoding="utf-8") == render_markdown(study)


def test_the_readme_verdicts_at_laptop_scale_are_rendered_from_paper_small_results():
    """A report written before paper-small scored its runs (no "verdicts") states no verdict in the README."""
    report = committed("paper_small.json")
    text = read_block(README.read_text(encoding="utf-8"), "paper at laptop scale")
    assert text == (laptop_summary(report, "results/tables/readings.md") if "verdicts" in report else "")


def test_a_generated_block_is_replaced_in_place_and_a_missing_one_is_an_error(tmp_path: Path):
    doc = tmp_path / "doc.md"
    begin, end = markers("x", "somewhere.json")
    doc.write_text(f"before\n{begin}\nold\n{end}\nafter\n", encoding="utf-8")
    write_block(doc, "x", "somewhere.json", "new 1\nnew 2")
    assert doc.read_text(encoding="utf-8") == f"before\n{begin}\nnew 1\nnew 2\n{end}\nafter\n"
    assert read_block(doc.read_text(encoding="utf-8"), "x") == "new 1\nnew 2\n"
    with pytest.raises(ValueError, match="no generated block 'y'"):
        write_block(doc, "y", "somewhere.json", "text")
