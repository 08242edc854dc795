"""A few real training steps of the vision experiments (Tables 3-5) on tiny local copies of their data."""

from __future__ import annotations

import math

import pytest
import torch

from hopfield_attention.tasks import load_task
from hopfield_attention.train import train

from support.data import (
    write_cifar10_fixture,
    write_cifar100_fixture,
    write_food101_fixture,
)
from support.train import CPU, compose_run, data_overrides, logged

STEPS = ["trainer.max_steps=3", "trainer.val_check_interval=null", "trainer.check_val_every_n_epoch=1"]


@pytest.mark.parametrize("experiment", ["t3_vit_tiny_cifar100_softmax", "t3_vit_tiny_cifar100_mha_a0.5"])
def test_vit_trains_on_cifar100(experiment, tmp_path):
    fixture = write_cifar100_fixture(tmp_path / "data")  # 12 train images, batch 4: 3 steps per epoch
    cfg = compose_run(experiment, ["model=vit_tiny_test", *CPU, *STEPS, *data_overrides(fixture)], tmp_path / "run")
    metrics = train(cfg)

    losses = [value for _, value in logged(tmp_path / "run", "train/loss")]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    for split in ("val", "test"):
        top1, top5 = metrics[f"{split}/top1"], metrics[f"{split}/top5"]
        assert 0.0 <= top1 <= top5 <= 100.0  # percent, as the paper reports
        assert math.isfinite(metrics[f"{split}/loss"])
    module, run_cfg = load_task(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert module.model.hopfield_attention.name == run_cfg.attention.name == cfg.attention.name
    assert module.model.get_classifier().out_features == 100


def test_linear_probe_trains_only_a_new_head_on_a_frozen_backbone(tmp_path):
    # Pretrain (Table 4's recipe, at test size on CIFAR-10 images) ...
    pretrain = compose_run(
        "t4_vit_base_imagenet1k_mha_a0.5",
        ["model=vit_tiny_test", "data=cifar10", *CPU, *STEPS,
         *data_overrides(write_cifar10_fixture(tmp_path / "cifar10"))],
        tmp_path / "pretrain",
    )  # fmt: skip
    train(pretrain)
    pretrained_ckpt = tmp_path / "pretrain" / "checkpoints" / "last.ckpt"
    pretrained, _ = load_task(pretrained_ckpt)

    # ... then probe it on Food-101 images of the same size.
    food = {**write_food101_fixture(tmp_path / "food101"), "image_size": 32}
    probe_overrides = ["model=vit_tiny_test", *CPU, *STEPS, *data_overrides(food), f"pretrained_ckpt={pretrained_ckpt}"]
    probe = compose_run("t5_vit_base_linprobe_food101_mha_a0.5", probe_overrides, tmp_path / "probe")
    metrics = train(probe)
    assert 0.0 <= metrics["test/top1"] <= metrics["test/top5"] <= 100.0

    probed, cfg = load_task(tmp_path / "probe" / "checkpoints" / "last.ckpt")
    assert cfg.task == "linear_probe" and probed.model.get_classifier().out_features == 101
    head = {f"head.{name}" for name in probed.model.get_classifier().state_dict()}
    before, after = pretrained.model.state_dict(), probed.model.state_dict()
    for name, value in after.items():
        if name not in head:
            torch.testing.assert_close(value, before[name], rtol=0, atol=0, msg=f"{name} moved")
    assert all(not p.requires_grad for n, p in probed.model.named_parameters() if n not in head)

    # A probe whose attention differs from the pretraining run's is refused.
    mismatched = compose_run("t5_vit_base_linprobe_food101_softmax", probe_overrides, tmp_path / "mismatch")
    with pytest.raises(ValueError, match="attention"):
        train(mismatched)
