"""A resume continues from the newest good checkpoint, through the real command line: one last.ckpt (no -v1
copies), chosen by the step recorded inside it; a truncated one is skipped with a warning naming it and the
newest intact one (a best checkpoint) is used; the record says what was resumed and what was skipped."""

from __future__ import annotations

import signal

import torch

from support.runs import (
    logged_steps,
    paced,
    record,
    start_training,
    tiny_lm,
    train,
    wait_until,
)


def overrides(tmp_path, *extra: str, steps: int, every: int = 2) -> list[str]:
    """The tiny run in tmp_path/run, validating (and so writing last.ckpt and a best checkpoint) every `every`."""
    base = [
        o for o in tiny_lm(tmp_path / "data", tmp_path / "run", steps=steps) if not o.startswith("trainer.val_check")
    ]
    return [*base, f"trainer.val_check_interval={every}", *extra]


def step_in(path) -> int:
    return torch.load(path, weights_only=True, map_location="cpu", mmap=True)["global_step"]


def test_a_stop_before_the_first_validation_leaves_one_last_checkpoint_that_later_resumes_use(tmp_path):
    run_dir = tmp_path / "run"
    job = start_training(*overrides(tmp_path, *paced(0.5), steps=6, every=4), log=tmp_path / "first.log")
    wait_until(lambda: len(logged_steps(run_dir)) >= 1, what="the first logged step")
    job.send_signal(signal.SIGTERM)
    assert job.wait(timeout=120) == 128 + signal.SIGTERM
    stopped = step_in(run_dir / "checkpoints" / "last.ckpt")
    assert stopped < 4, "stopped after the first validation: the case under test did not happen"

    finished = train(*overrides(tmp_path, steps=8, every=4))
    assert finished.returncode == 0, finished.stderr[-2000:]
    names = sorted(path.name for path in (run_dir / "checkpoints").iterdir())
    assert names in (["best-step0000004.ckpt", "last.ckpt"], ["best-step0000008.ckpt", "last.ckpt"]), names
    assert step_in(run_dir / "checkpoints" / "last.ckpt") == 8  # no last-v1.ckpt beside a stale last.ckpt

    longer = train(*overrides(tmp_path, steps=12, every=4))
    assert longer.returncode == 0, longer.stderr[-2000:]
    assert f"resuming from {run_dir / 'checkpoints' / 'last.ckpt'} (step 8)" in longer.stderr
    facts = record(run_dir)
    assert facts["status"] == "finished" and facts["global_step"] == 12 and facts["attempts"] == 3
    assert facts["resumed"] == {"ckpt_path": str(run_dir / "checkpoints" / "last.ckpt"), "step": 8, "skipped": []}
    assert [step for step, _ in logged_steps(run_dir)] == list(range(12))  # nothing trained twice, one history


def test_a_truncated_last_checkpoint_is_skipped_for_the_intact_best_one(tmp_path):
    run_dir = tmp_path / "run"
    first = train(*overrides(tmp_path, steps=4))
    assert first.returncode == 0, first.stderr[-2000:]
    last = run_dir / "checkpoints" / "last.ckpt"
    best = next((run_dir / "checkpoints").glob("best-*.ckpt"))
    best_step = step_in(best)
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])  # a write cut short (a full disk, a node lost mid-copy)

    longer = train(*overrides(tmp_path, steps=6))
    assert longer.returncode == 0, longer.stderr[-2000:]
    warning = next(line for line in longer.stderr.splitlines() if line.startswith("warning: not resuming"))
    assert str(last) in warning and "truncated" in warning
    assert f"resuming from {best} (step {best_step})" in longer.stderr
    facts = record(run_dir)
    assert facts["status"] == "finished" and facts["global_step"] == 6 and facts["attempts"] == 2
    assert facts["resumed"]["ckpt_path"] == str(best) and facts["resumed"]["step"] == best_step
    assert [path for path, _ in facts["resumed"]["skipped"]] == [str(last)]
    assert step_in(last) == 6  # rewritten whole by the resumed run
    assert [step for step, _ in logged_steps(run_dir)] == list(range(6))


def test_a_damaged_member_inside_an_intact_archive_is_caught_by_its_checksum(tmp_path):
    first = train(*overrides(tmp_path, steps=4))
    assert first.returncode == 0, first.stderr[-2000:]
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    data = bytearray(last.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in a tensor: the zip directory still reads fine
    last.write_bytes(bytes(data))
    longer = train(*overrides(tmp_path, steps=6))
    assert longer.returncode == 0, longer.stderr[-2000:]
    assert f"warning: not resuming from {last}: damaged" in longer.stderr
    assert record(tmp_path / "run")["resumed"]["ckpt_path"].endswith(".ckpt")
    assert "best-" in record(tmp_path / "run")["resumed"]["ckpt_path"]
