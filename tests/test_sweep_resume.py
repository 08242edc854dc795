"""A local sweep stopped halfway (SIGTERM, as `scancel` or a closed laptop lid's shutdown sends) and started again
with the same command runs only what did not finish: the finished job is left alone, the interrupted one resumes
from its checkpoint, the one never started starts. Through the real command line (Hydra's basic launcher)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from support.runs import (
    logged_steps,
    paced,
    record,
    start_training,
    tiny_lm,
    train,
    wait_until,
)

pytestmark = pytest.mark.slow

SEEDS = (1, 2, 3)


def jobs_by_seed(sweep_dir: Path) -> dict[int, Path]:
    """The sweep's job directories (named by their overrides), by the seed each job records."""
    return {record(job)["seed"]: job for job in sweep_dir.iterdir() if (job / "results.json").exists()}


def test_a_local_sweep_stopped_halfway_runs_only_its_unfinished_jobs_when_started_again(tmp_path):
    sweep_dir = tmp_path / "sweep"
    command = ["-m", *tiny_lm(tmp_path / "data", None, *paced(0.3), steps=6), f"hydra.sweep.dir={sweep_dir}",
               f"seed={','.join(map(str, SEEDS))}"]  # fmt: skip
    sweep = start_training(*command, log=tmp_path / "first.log")
    # Stop it once the second job has trained a step.
    wait_until(lambda: 2 in jobs_by_seed(sweep_dir) if sweep_dir.exists() else False, what="the second job to start")
    wait_until(lambda: logged_steps(jobs_by_seed(sweep_dir)[2]), what="the second job's first step")
    sweep.send_signal(signal.SIGTERM)
    assert sweep.wait(timeout=120) == 128 + signal.SIGTERM, (tmp_path / "first.log").read_text()[-3000:]

    jobs = jobs_by_seed(sweep_dir)
    assert set(jobs) == {1, 2}  # the third never started
    assert record(jobs[1])["status"] == "finished" and record(jobs[2])["status"] == "interrupted"
    finished_checkpoint = (jobs[1] / "checkpoints" / "last.ckpt").stat().st_mtime_ns
    interrupted_at = max(step for step, _ in logged_steps(jobs[2]))

    again = train(*command)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{jobs[1]}: finished already" in again.stderr
    jobs = jobs_by_seed(sweep_dir)
    assert set(jobs) == set(SEEDS) and all(record(job)["status"] == "finished" for job in jobs.values())
    assert (jobs[1] / "checkpoints" / "last.ckpt").stat().st_mtime_ns == finished_checkpoint  # not trained again
    assert record(jobs[1])["attempts"] == 1 and record(jobs[3])["attempts"] == 1
    assert record(jobs[2])["attempts"] == 2  # resumed in its own directory
    steps = [step for step, _ in logged_steps(jobs[2])]
    assert steps == sorted(set(steps)) and steps[-1] == 5 and interrupted_at < 5  # one history, to the end
