"""A full disk is reported as such, with the path, by every writer, through the real command line: a checkpoint
too large for the space left (torch's zip writer says only "unexpected pos"), tables, figures and a token cache.
Each ends in one message, `no space left on the device while writing <path>`, and leaves no partial file."""

from __future__ import annotations

import os
import subprocess

import pytest

from hopfield_attention.runs.record import write_record

from support.commands import error_message, run_command
from support.disk import small_tmpfs
from support.results import run_record
from support.runs import record, tiny_lm, train

MESSAGE = "no space left on the device while writing"


@pytest.fixture
def small_disk(tmp_path):
    """A 32 MB tmpfs (needs root, as in CI)."""
    with small_tmpfs(tmp_path / "disk", 32) as mount:
        yield mount


def fill(disk, leave_bytes: int = 0) -> None:
    """Fill the disk up to `leave_bytes` free."""
    subprocess.run(["dd", "if=/dev/zero", f"of={disk / 'filler'}", "bs=64k"], capture_output=True)
    if leave_bytes:
        size = (disk / "filler").stat().st_size
        os.truncate(disk / "filler", size - leave_bytes)


def said(result, path_part: str) -> str:
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    message = error_message(result.stderr)
    assert message.startswith(f"Error: {MESSAGE} ") and path_part in message, message
    assert len(message.splitlines()) <= 3 and "Traceback" not in result.stderr, message
    return message


def test_a_checkpoint_larger_than_the_space_left_is_reported_as_no_space(tmp_path, small_disk):
    # A checkpoint of about 20 MB, 4 MB left: the zip writer fails mid-file, and once the partial file is removed
    # the disk is no longer full; the message must still say what happened.
    run_dir = small_disk / "run"
    fill(small_disk, leave_bytes=4 << 20)
    result = train(*tiny_lm(tmp_path / "data", run_dir, "model.n_embd=256", steps=2))
    message = said(result, str(run_dir / "checkpoints"))
    assert "unexpected pos" not in message
    assert not list(run_dir.rglob("*.tmp")) and not list(run_dir.rglob("*.ckpt"))  # no partial checkpoint
    assert record(run_dir)["status"] == "failed" and MESSAGE in record(run_dir)["error"]["message"]


def test_tables_and_figures_on_a_full_disk_say_so_with_the_path(tmp_path, small_disk):
    runs = tmp_path / "runs"
    write_record(runs / "a" / "results.json", {**run_record(runs / "a"), "status": "finished",
                                              "metrics": {"test/top1": 50.0, "val/loss": 1.0}})  # fmt: skip
    fill(small_disk)
    tables = run_command(
        "tables", f"runs_dir={runs}", f"out_dir={small_disk / 'tables'}", "figures=false", cwd=tmp_path
    )
    said(tables, str(small_disk / "tables"))
    figures = run_command("tables", f"runs_dir={runs}", f"out_dir={tmp_path / 'tables'}",
                          f"figures_dir={small_disk / 'figures'}", cwd=tmp_path)  # fmt: skip
    said(figures, str(small_disk / "figures"))
    assert not list(small_disk.rglob(".*.tmp"))


def test_a_token_cache_on_a_full_disk_says_so_with_the_path(tmp_path, small_disk):
    overrides = tiny_lm(tmp_path / "data", None, f"data.cache_dir={small_disk / 'cache'}",
                        f"paths.log_dir={tmp_path / 'logs'}")  # fmt: skip
    fill(small_disk)
    said(run_command("prepare", *overrides, cwd=tmp_path), str(small_disk / "cache"))
    assert not [path for path in (small_disk / "cache").rglob("*") if path.is_file()]
