"""Records are read defensively, through the real command line: a results.json that is JSON but no valid record
is skipped and listed with its path and the field that is wrong, by `status`, by `tables` and by a resume in its
directory; it never stops the others, and nothing is lost (a resume moves the bad file aside, never over it)."""

from __future__ import annotations

import json

import pytest

from hopfield_attention.runs.record import read_record, write_record

from support.commands import error_message, run_command
from support.results import run_record
from support.runs import record, tiny_lm, train

# One wrong field each (the record had them all): the field each message must name.
BAD = {"process": ({"process": "x"}, "`process`"), "paper": ({"paper": "x"}, "`paper`"),
       "cell": ({"cell": 5}, "`cell`"), "metric": ({"metrics": {"val/loss": "abc"}}, "`metrics.val/loss`"),
       "status": ({"status": "done"}, "`status`")}  # fmt: skip


@pytest.fixture
def runs_dir(tmp_path):
    """One good record (written by the real writer) and one bad record per field, plus a file that is no JSON."""
    good = tmp_path / "runs" / "good"
    write_record(good / "results.json", {**run_record(good), "status": "finished", "metrics": {"val/loss": 1.5}})
    for name, (wrong, _) in BAD.items():
        write_record(tmp_path / "runs" / name / "results.json", {**run_record(tmp_path), **wrong})
    (tmp_path / "runs" / "garbled").mkdir()
    (tmp_path / "runs" / "garbled" / "results.json").write_text('{"status": "fini')
    return tmp_path / "runs"


def test_status_lists_every_bad_record_with_its_field_and_shows_the_good_one(runs_dir):
    shown = run_command("status", f"runs_dir={runs_dir}", cwd=runs_dir)
    assert shown.returncode == 0, shown.stderr[-2000:]
    lines = shown.stdout.splitlines()
    for name, (_, field) in BAD.items():
        line = next(line for line in lines if line.startswith(f"unreadable {runs_dir / name / 'results.json'}:"))
        assert f"field {field} must be" in line, line
    assert any(line.startswith(f"unreadable {runs_dir / 'garbled' / 'results.json'}: not JSON") for line in lines)
    assert "finished" in shown.stdout and "tiny" in shown.stdout  # the good run is listed all the same


def test_tables_skip_and_list_every_bad_record(runs_dir, tmp_path):
    out = tmp_path / "tables"
    made = run_command("tables", f"runs_dir={runs_dir}", f"out_dir={out}", "figures=false", cwd=tmp_path)
    assert made.returncode == 0, made.stderr[-2000:]
    index = (out / "README.md").read_text()
    assert "6 results.json could not be read and were skipped" in index
    for name, (_, field) in BAD.items():
        assert f"- `{runs_dir / name / 'results.json'}`: field {field} must be" in index


def test_status_refuses_an_unknown_status_naming_the_allowed_ones(runs_dir):
    refused = run_command("status", f"runs_dir={runs_dir}", "status=bogus", cwd=runs_dir)
    assert refused.returncode == 1
    message = error_message(refused.stderr)
    assert "status='bogus'" in message and "'finished'" in message and "'lost'" in message


def test_a_resume_beside_a_bad_record_keeps_it_aside_and_continues(tmp_path):
    run_dir = tmp_path / "run"
    assert train(*tiny_lm(tmp_path / "data", run_dir, steps=4)).returncode == 0
    bad = {**record(run_dir), "status": "interrupted", "process": "x"}
    (run_dir / "results.json").write_text(json.dumps(bad))
    resumed = train(*tiny_lm(tmp_path / "data", run_dir, steps=6))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    warning = next(line for line in resumed.stderr.splitlines() if "results.json" in line and "warning" in line)
    assert str(run_dir / "results.json") in warning and "field `process`" in warning
    assert json.loads((run_dir / "results.json.invalid").read_text()) == bad  # kept, byte for byte the same data
    assert record(run_dir)["status"] == "finished" and record(run_dir)["global_step"] == 6
    assert record(run_dir)["resumed"]["step"] == 4


def test_read_record_names_the_file_and_the_field(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({**run_record(tmp_path), "global_step": "12"}))
    with pytest.raises(ValueError, match=rf"^{path}: field `global_step` must be an integer or null, got '12'$"):
        read_record(path)
