"""A run directory has one owner, through the real command line: a second process fails at once naming the
holder; a directory is resumed only by the same run (budget aside); an explicit ckpt_path wins or conflicts
loudly; a finished run is not trained again; a sweep started again runs only the jobs that did not finish."""

from __future__ import annotations

import signal

import pytest
import torch

from support.commands import error_message
from support.runs import (
    logged_steps,
    paced,
    record,
    start_training,
    tiny_lm,
    train,
    wait_until,
)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A tiny run of 4 steps, finished in its directory."""
    root = tmp_path_factory.mktemp("finished")
    overrides = tiny_lm(root / "data", root / "run", steps=4)
    done = train(*overrides)
    assert done.returncode == 0, done.stderr[-2000:]
    return root, overrides


def one_message(result) -> str:
    """The error a refused command printed: exit status 1, at most three short lines, no traceback."""
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    message = error_message(result.stderr)
    assert message.startswith("Error: ") and len(message.splitlines()) <= 3 and "Traceback" not in message, message
    return message


def test_a_second_process_in_a_busy_directory_fails_at_once_naming_the_holder(tmp_path):
    run_dir = tmp_path / "run"
    release = tmp_path / "release"  # the first run holds after its first step until the second has been refused
    overrides = tiny_lm(tmp_path / "data", run_dir, *paced(0.1), f"+callbacks.pace.hold_until={release}", steps=12)
    first = start_training(*overrides, log=tmp_path / "first.log")
    wait_until(lambda: (run_dir / "results.json").exists(), what="the first run to start")
    second = train(*tiny_lm(tmp_path / "data", run_dir, "attention.alpha=0.9", steps=12))
    release.touch()
    message = one_message(second)
    assert f"run directory {run_dir} is in use by pid {first.pid}" in message
    assert first.wait(timeout=240) == 0
    # The directory is the first run's alone: its record, its saved config, its checkpoints.
    assert record(run_dir)["status"] == "finished" and record(run_dir)["attention"]["alpha"] == 0.5
    assert "alpha: 0.5" in (run_dir / ".hydra" / "config.yaml").read_text()
    cfg = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["hyper_parameters"]["cfg"]
    assert cfg["attention"]["alpha"] == 0.5


def test_a_directory_holding_another_run_is_refused_with_the_keys_that_differ(finished):
    root, overrides = finished
    before = (root / "run" / "results.json").read_text()
    message = one_message(train(*overrides, "attention.alpha=0.9"))
    assert "holds a run with other settings" in message and "attention.alpha: 0.5 -> 0.9" in message
    assert "start afresh in a new directory" in message
    assert (root / "run" / "results.json").read_text() == before  # the earlier run's record is untouched


def test_a_finished_run_is_not_trained_again(finished):
    root, overrides = finished
    last = root / "run" / "checkpoints" / "last.ckpt"
    mtime = last.stat().st_mtime_ns
    again = train(*overrides)
    assert again.returncode == 0 and "finished already" in again.stderr
    assert last.stat().st_mtime_ns == mtime and record(root / "run")["attempts"] == 1


def test_a_longer_budget_continues_a_finished_run(tmp_path):
    overrides = tiny_lm(tmp_path / "data", tmp_path / "run", steps=4)
    assert train(*overrides).returncode == 0
    longer = train(*tiny_lm(tmp_path / "data", tmp_path / "run", steps=6))
    assert longer.returncode == 0, longer.stderr[-2000:]
    assert "Restoring states from the checkpoint path" in longer.stdout + longer.stderr
    assert record(tmp_path / "run")["global_step"] == 6 and record(tmp_path / "run")["attempts"] == 2
    assert [step for step, _ in logged_steps(tmp_path / "run")] == list(range(6))  # one history


def test_an_explicit_ckpt_path_wins_or_conflicts_loudly(finished, tmp_path):
    root, overrides = finished
    own = root / "run" / "checkpoints" / "last.ckpt"
    # Beside a directory's own checkpoints, another file would go back in time: refused.
    other = tmp_path / "other.ckpt"
    other.write_bytes(own.read_bytes())
    message = one_message(train(*overrides, f"ckpt_path={other}"))
    assert "holds its own checkpoints" in message and "drop ckpt_path" in message
    # In a new directory a checkpoint of other settings is refused, one of the same settings wins.
    message = one_message(train(*tiny_lm(root / "data", tmp_path / "new", "attention.first_layer=zeros",
                                         f"ckpt_path={own}", steps=6)))  # fmt: skip
    assert "was trained with other settings" in message and "attention.first_layer: 'scores' -> 'zeros'" in message
    resumed = train(*tiny_lm(root / "data", tmp_path / "new", f"ckpt_path={own}", steps=6))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert record(tmp_path / "new")["global_step"] == 6


def test_a_sweep_started_again_runs_only_the_jobs_that_did_not_finish(tmp_path):
    sweep = ["-m", "seed=1,2,3", f"hydra.sweep.dir={tmp_path / 'sweep'}",
             *tiny_lm(tmp_path / "data", None, *paced(0.4), steps=6)]  # fmt: skip
    first = start_training(*sweep, log=tmp_path / "first.log")

    def second_job_checkpointed() -> bool:
        job = job_of_seed(tmp_path / "sweep", 2)
        return job is not None and (job / "checkpoints" / "last.ckpt").exists()

    wait_until(second_job_checkpointed, what="the second job's first checkpoint")
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=120) == 128 + signal.SIGTERM
    jobs = {seed: job_of_seed(tmp_path / "sweep", seed) for seed in (1, 2)}
    assert record(jobs[1])["status"] == "finished" and record(jobs[2])["status"] == "interrupted"
    assert job_of_seed(tmp_path / "sweep", 3) is None  # the signal stopped the whole sweep
    finished_mtime = (jobs[1] / "checkpoints" / "last.ckpt").stat().st_mtime_ns

    again = train(*sweep)
    assert again.returncode == 0, again.stderr[-3000:]
    assert job_of_seed(tmp_path / "sweep", 1) == jobs[1] and job_of_seed(tmp_path / "sweep", 2) == jobs[2]
    assert (jobs[1] / "checkpoints" / "last.ckpt").stat().st_mtime_ns == finished_mtime  # not trained again
    assert record(jobs[2])["status"] == "finished" and record(jobs[2])["attempts"] == 2
    job3 = job_of_seed(tmp_path / "sweep", 3)
    assert record(job3)["status"] == "finished" and record(job3)["attempts"] == 1
    assert len([path for path in (tmp_path / "sweep").iterdir() if path.is_dir()]) == 3  # one directory per job


def job_of_seed(sweep_dir, seed):
    """The job directory of the sweep whose record says it trained with `seed` (None before it started)."""
    found = [path.parent for path in sweep_dir.glob("*/results.json") if record(path.parent)["seed"] == seed]
    assert len(found) <= 1, found
    return found[0] if found else None
