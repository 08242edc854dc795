"""Batch-level augmentation of the vision recipes: timm's Mixup/CutMix and soft-target loss in the training step."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy

from hopfield_attention.tasks import ImageClassificationTask

from support.train import compose_run


def task_for(experiment: str, *overrides: str) -> ImageClassificationTask:
    cfg = compose_run(experiment, ["model=vit_tiny_test", *overrides], "/tmp/unused")
    return ImageClassificationTask(cfg, num_classes=int(cfg.data.num_classes), image_size=32)


@pytest.mark.parametrize("experiment", ["t3_vit_tiny_cifar100_softmax", "t4_vit_base_imagenet1k_mha_a0.5"])
def test_deit_recipes_mix_batches_into_smoothed_soft_targets(experiment):
    task = task_for(experiment, "data=cifar100", "model.patch_size=4")
    mixup = task.mixup
    assert isinstance(mixup, Mixup)
    assert (mixup.mixup_alpha, mixup.cutmix_alpha, mixup.mix_prob, mixup.switch_prob) == (0.8, 1.0, 1.0, 0.5)
    assert (mixup.label_smoothing, mixup.num_classes, mixup.mode) == (0.1, 100, "batch")

    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    np.random.seed(0)  # Mixup draws from numpy's global stream (saved and restored on resume by ResumeRNG)
    mixed, targets = Mixup(0.8, 1.0, label_smoothing=0.1, num_classes=100)(images.clone(), labels)
    task.eval()  # no dropout: the two forward passes must agree
    expected = SoftTargetCrossEntropy()(task(mixed).float(), targets)
    np.random.seed(0)
    loss = task.training_step((images.clone(), labels), 0)
    torch.testing.assert_close(loss, expected)
    assert not torch.allclose(loss, F.cross_entropy(task(images).float(), labels, label_smoothing=0.1))

    # Evaluation scores the plain images against the hard labels.
    task._evaluate("val", (images, labels))
    torch.testing.assert_close(task.val_loss.compute(), F.cross_entropy(task(images).float(), labels))


def test_without_mixup_the_loss_is_label_smoothed_cross_entropy():
    task = task_for("t5_vit_base_linprobe_food101_softmax", "model.patch_size=4", "pretrained_ckpt=null")
    assert task.mixup is None
    task.eval()
    images, labels = torch.randn(2, 3, 32, 32), torch.tensor([5, 7])
    torch.testing.assert_close(task.training_step((images, labels), 0), F.cross_entropy(task(images).float(), labels))


def test_mixup_needs_an_even_batch_and_known_options():
    task = task_for("t3_vit_tiny_cifar100_softmax", "model.patch_size=4")
    with pytest.raises(ValueError, match="per-device batch size must be even, got 3"):
        task.training_step((torch.randn(3, 3, 32, 32), torch.tensor([0, 1, 2])), 0)
    with pytest.raises(
        ValueError, match=r"loss.mixup: unknown key\(s\) \['alpha'\]; allowed: \['correct_lam', 'cutmix_alpha'"
    ):
        task_for("t3_vit_tiny_cifar100_softmax", "+loss.mixup.alpha=0.2")
    with pytest.raises(ValueError, match=r"set mixup_alpha or cutmix_alpha > 0, or loss.mixup=null"):
        task_for("t3_vit_tiny_cifar100_softmax", "loss.mixup.mixup_alpha=0.0", "loss.mixup.cutmix_alpha=0.0")
