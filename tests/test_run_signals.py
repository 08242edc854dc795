"""No work lost to a signal, a kill or a full disk, through the real command line: SIGTERM and SIGINT stop at
a step with a checkpoint and status `interrupted` (exit 128 + signal); the same command resumes exactly, its CSV
history and W&B run read as one; a SIGKILLed run is shown `lost`; a full disk keeps the last good files."""

from __future__ import annotations

import signal
import subprocess

import pytest
import torch

from hopfield_attention.config.resolvers import run_id
from hopfield_attention.runs.checkpoint_io import AtomicCheckpointIO

from support.commands import run_command
from support.disk import small_tmpfs
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
def uninterrupted(tmp_path_factory):
    root = tmp_path_factory.mktemp("uninterrupted")
    done = train(*tiny_lm(root / "data", root / "run"))
    assert done.returncode == 0, done.stderr[-2000:]
    return root / "run"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_checkpoints_and_the_same_command_resumes_exactly_with_one_history(tmp_path, uninterrupted, signum):
    run_dir = tmp_path / "run"
    overrides = tiny_lm(tmp_path / "data", run_dir, "logger=wandb", *paced(0.7))
    job = start_training(*overrides, log=tmp_path / "first.log")
    wait_until(lambda: len(logged_steps(run_dir)) >= 3, what="three logged steps")
    job.send_signal(signum)
    assert job.wait(timeout=120) == 128 + signum, (tmp_path / "first.log").read_text()[-2000:]
    first = record(run_dir)
    assert first["status"] == "interrupted" and signal.Signals(signum).name in first["error"]["message"]
    stopped_at = first["global_step"]
    assert 3 <= stopped_at < 8
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert checkpoint["global_step"] == stopped_at  # the checkpoint is the step the run stopped at

    resumed = train(*overrides)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    final = record(run_dir)
    assert final["status"] == "finished" and final["attempts"] == 2 and final["global_step"] == 8
    # One history: the interrupted attempt's rows, then the resumed one's, equal to a run never stopped.
    assert logged_steps(run_dir) == logged_steps(uninterrupted)
    assert logged_steps(run_dir, "val/loss") == logged_steps(uninterrupted, "val/loss")
    # One W&B run: both attempts log under the id derived from the run directory.
    attempts = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(attempts) == 2 and {path.name.rsplit("-", 1)[1] for path in attempts} == {run_id(run_dir)}


def test_a_killed_run_is_shown_lost_and_the_same_command_resumes_it(tmp_path):
    run_dir = tmp_path / "logs" / "runs" / "x" / "run"
    overrides = tiny_lm(tmp_path / "data", run_dir, *paced(0.7))
    job = start_training(*overrides, log=tmp_path / "first.log")
    wait_until(lambda: (run_dir / "checkpoints" / "last.ckpt").exists() and len(logged_steps(run_dir)) >= 3,
               what="a checkpoint")  # fmt: skip
    job.kill()
    job.wait(timeout=60)
    assert record(run_dir)["status"] == "running"  # what the file says; nobody is left to change it

    listing = run_command("status", f"runs_dir={tmp_path / 'logs'}", env={"COLUMNS": "200"})
    assert listing.returncode == 0 and "lost" in listing.stdout and "runs/x/run" in listing.stdout
    tables = run_command("tables", f"runs_dir={tmp_path / 'logs'}", f"out_dir={tmp_path / 'tables'}", "figures=false")
    assert tables.returncode == 0, tables.stderr
    assert "lost" in (tmp_path / "tables" / "table_quickstart.md").read_text()

    resumed = train(*overrides)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Restoring states from the checkpoint path" in resumed.stdout + resumed.stderr
    assert record(run_dir)["status"] == "finished" and record(run_dir)["global_step"] == 8


@pytest.fixture
def small_disk(tmp_path):
    with small_tmpfs(tmp_path / "disk", 16) as mount:
        yield mount


def test_a_full_disk_keeps_the_last_good_checkpoint_and_shows_the_original_error(tmp_path, small_disk):
    run_dir = small_disk / "run"
    job = start_training(*tiny_lm(tmp_path / "data", run_dir, *paced(0.7)), log=tmp_path / "run.log")
    wait_until(lambda: (run_dir / "checkpoints" / "last.ckpt").exists(), what="the first checkpoint")
    good = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")["global_step"]
    subprocess.run(["dd", "if=/dev/zero", f"of={small_disk / 'filler'}", "bs=64k"], capture_output=True)  # fill it
    assert job.wait(timeout=120) == 1
    output = (tmp_path / "run.log").read_text()
    assert "no space left on the device while writing" in output.lower()
    assert "Traceback" not in output
    # The last good checkpoint survives whole, and no half-written temporary is left behind.
    kept = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")["global_step"]
    assert kept >= good
    assert not [path for path in run_dir.rglob("*.tmp")]
    record(run_dir)  # the last results.json written is whole JSON


def test_a_new_time_limit_checkpoint_replaces_the_older_ones(tmp_path):
    io = AtomicCheckpointIO()
    for number in (1, 2):
        io.save_checkpoint({"step": number}, tmp_path / f"hpc_ckpt_{number}.ckpt")
    io.save_checkpoint({"step": 9}, tmp_path / "checkpoints" / "last.ckpt")
    assert sorted(path.name for path in tmp_path.glob("hpc_ckpt_*.ckpt")) == ["hpc_ckpt_2.ckpt"]
    assert torch.load(tmp_path / "hpc_ckpt_2.ckpt", weights_only=True) == {"step": 2}
    assert (tmp_path / "checkpoints" / "last.ckpt").exists()
