"""Resuming from last.ckpt (at an epoch boundary or mid-epoch) continues exactly as an uninterrupted run;
the same seed gives the same run."""

from __future__ import annotations

import pytest

from hopfield_attention.train import train

from support.data import write_wikitext_fixture
from support.train import CPU, compose_run, data_overrides, logged

# Epochs of 3 steps, validation at each epoch end; dropout on, so the RNG streams matter too. The schedule
# is 6 steps long whatever trainer.max_steps says, so a run stopped at 3 is the first half of a 6-step run.
RUN = ["model=gpt2_tiny", "model.dropout=0.1", "trainer.limit_train_batches=3", "trainer.accumulate_grad_batches=1", "trainer.val_check_interval=null",
       "trainer.check_val_every_n_epoch=1", "optim.scheduler.total_steps=6", "optim.scheduler.warmup_steps=2",
       "test=false", *CPU]  # fmt: skip


@pytest.fixture(scope="module")
def wikitext(tmp_path_factory):
    return data_overrides(write_wikitext_fixture(tmp_path_factory.mktemp("wikitext")))


def run(wikitext, out, *extra) -> dict:
    cfg = compose_run("t1_gpt2_small_wikitext103_mha_a0.5", [*RUN, *wikitext, *extra], out)
    return train(cfg)


def test_resumed_run_matches_uninterrupted(wikitext, tmp_path):
    run(wikitext, tmp_path / "full", "trainer.max_steps=6")
    run(wikitext, tmp_path / "first_half", "trainer.max_steps=3")
    run(
        wikitext,
        tmp_path / "resumed",
        "trainer.max_steps=6",
        f"ckpt_path={tmp_path / 'first_half/checkpoints/last.ckpt'}",
    )

    full = logged(tmp_path / "full", "train/loss")
    first_half = logged(tmp_path / "first_half", "train/loss")
    resumed = logged(tmp_path / "resumed", "train/loss")
    assert len(full) == 6 and first_half == full[:3]
    assert resumed == full[3:]  # same epochs, bit-identical losses
    assert [epoch for epoch, _ in full] == [0, 0, 0, 1, 1, 1]  # resumed at an epoch boundary
    assert logged(tmp_path / "resumed", "val/loss") == logged(tmp_path / "full", "val/loss")[1:]
    # Without the RNG states the second epoch would be shuffled (and dropped out) differently.
    assert full[3:] != full[:3]


def test_resumed_mid_epoch_run_matches_uninterrupted(wikitext, tmp_path):
    # Epochs of 4 steps with validation (and so last.ckpt) every 2: the first run stops mid-epoch, and the
    # resumed one must continue that epoch's data order, then start the next epoch as the full run does.
    mid_epoch = ["trainer.limit_train_batches=4", "trainer.val_check_interval=2"]
    run(wikitext, tmp_path / "full", *mid_epoch, "trainer.max_steps=6")
    run(wikitext, tmp_path / "first_part", *mid_epoch, "trainer.max_steps=2")
    last = tmp_path / "first_part/checkpoints/last.ckpt"
    run(wikitext, tmp_path / "resumed", *mid_epoch, "trainer.max_steps=6", f"ckpt_path={last}")

    full = logged(tmp_path / "full", "train/loss")
    resumed = logged(tmp_path / "resumed", "train/loss")
    assert [epoch for epoch, _ in full] == [0, 0, 0, 0, 1, 1]
    assert logged(tmp_path / "first_part", "train/loss") == full[:2]
    assert resumed == full[2:]  # bit-identical: the rest of epoch 0 (same batches), then epoch 1
    assert logged(tmp_path / "resumed", "val/loss") == logged(tmp_path / "full", "val/loss")[1:]


def test_resumed_epoch_based_run_matches_uninterrupted(wikitext, tmp_path):
    # The vision recipes count epochs, not steps: then Lightning loads no loader state at an epoch
    # boundary, and the next epoch's order must follow from the seed and the epoch alone.
    by_epochs = ["trainer.max_steps=-1"]
    run(wikitext, tmp_path / "full", *by_epochs, "trainer.max_epochs=2")
    run(wikitext, tmp_path / "first_epoch", *by_epochs, "trainer.max_epochs=1")
    last = tmp_path / "first_epoch/checkpoints/last.ckpt"
    run(wikitext, tmp_path / "resumed", *by_epochs, "trainer.max_epochs=2", f"ckpt_path={last}")

    full = logged(tmp_path / "full", "train/loss")
    assert [epoch for epoch, _ in full] == [0, 0, 0, 1, 1, 1]
    assert logged(tmp_path / "resumed", "train/loss") == full[3:]


def test_same_seed_same_losses_other_seed_other_losses(wikitext, tmp_path):
    run(wikitext, tmp_path / "a", "trainer.max_steps=3", "seed=7")
    run(wikitext, tmp_path / "b", "trainer.max_steps=3", "seed=7")
    run(wikitext, tmp_path / "c", "trainer.max_steps=3", "seed=8")
    a, b, c = (logged(tmp_path / name, "train/loss") for name in "abc")
    assert len(a) == 3 and a == b
    assert a != c
