"""Image classification: cross-entropy (optionally label-smoothed), top-1 and top-5 accuracy in percent.

With `loss.mixup` (DeiT's Mixup/CutMix, timm.data.Mixup) each training batch is mixed and its labels
become soft targets (label smoothing applied by Mixup), scored by timm's SoftTargetCrossEntropy.
Validation and test always score the plain images against the hard labels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from .base import Task
from .flops import vit_flops_per_image

# timm.data.Mixup's own options; label smoothing and the class count come from loss.label_smoothing and the data.
MIXUP_KEYS = {"mixup_alpha", "cutmix_alpha", "cutmix_minmax", "prob", "switch_prob", "mode", "correct_lam"}


class ImageClassificationTask(Task):
    """Batches are (images (B, 3, H, W), labels (B,)). Accuracies are logged in percent, as the paper reports."""

    def __init__(self, cfg, attention=None, *, num_classes: int, image_size: int):
        super().__init__(cfg, attention, num_classes=num_classes, image_size=image_size)
        self.mixup = build_mixup(self.cfg.loss, num_classes)
        self.soft_target_loss = SoftTargetCrossEntropy()
        top_k = min(5, num_classes)
        for split in ("val", "test"):
            setattr(self, f"{split}_loss", MeanMetric())
            setattr(self, f"{split}_top1", MulticlassAccuracy(num_classes, top_k=1, average="micro"))
            setattr(self, f"{split}_top5", MulticlassAccuracy(num_classes, top_k=top_k, average="micro"))
        # one image, which Lightning's model summary runs to count its FLOPs (and sizes) per layer
        self.example_input_array = torch.zeros(1, 3, image_size, image_size)

    def samples_in(self, batch) -> int:
        return batch[0].shape[0]

    def flops_per_sample(self) -> int:
        return vit_flops_per_image(
            self.model, backbone_trains=self.trainable_module() is self.model, batch=int(self.cfg.data.batch_size)
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)  # (B, classes)

    def training_step(self, batch, batch_idx):
        images, labels = batch
        if self.mixup is None:
            logits = self(images)
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=float(self.cfg.loss.label_smoothing))
        else:
            if images.shape[0] % 2:
                raise ValueError(
                    f"loss.mixup mixes pairs of images: the per-device batch size must be even, got {images.shape[0]}"
                )
            images, targets = self.mixup(images, labels)  # in place; targets (B, classes), smoothed
            loss = self.soft_target_loss(self(images).float(), targets)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def _evaluate(self, split: str, batch) -> None:
        images, labels = batch
        logits = self(images).float()
        getattr(self, f"{split}_loss").update(F.cross_entropy(logits, labels), weight=labels.numel())
        getattr(self, f"{split}_top1").update(logits, labels)
        getattr(self, f"{split}_top5").update(logits, labels)

    def validation_step(self, batch, batch_idx):
        self._evaluate("val", batch)

    def test_step(self, batch, batch_idx):
        self._evaluate("test", batch)

    def on_validation_epoch_end(self):
        self._log_split("val")

    def on_test_epoch_end(self):
        self._log_split("test")

    def _log_split(self, split: str) -> None:
        for name in ("loss", "top1", "top5"):
            metric = getattr(self, f"{split}_{name}")
            value = metric.compute() * (1.0 if name == "loss" else 100.0)
            metric.reset()
            self.log(f"{split}/{name}", value, prog_bar=split == "val" and name != "top5")


def build_mixup(loss_cfg, num_classes: int) -> Mixup | None:
    """timm's Mixup/CutMix from `loss.mixup` (None or absent: off)."""
    options = loss_cfg.get("mixup")
    if not options:
        return None
    options = OmegaConf.to_container(options) if isinstance(options, DictConfig) else dict(options)
    unknown = sorted(set(options) - MIXUP_KEYS)
    if unknown:
        raise ValueError(f"loss.mixup: unknown key(s) {unknown}; allowed: {sorted(MIXUP_KEYS)} (timm.data.Mixup)")
    if not (
        options.get("mixup_alpha", 1.0) > 0 or options.get("cutmix_alpha", 0.0) > 0 or options.get("cutmix_minmax")
    ):
        raise ValueError(
            f"loss.mixup={options}: set mixup_alpha or cutmix_alpha > 0, or loss.mixup=null to switch it off"
        )
    return Mixup(**options, label_smoothing=float(loss_cfg.label_smoothing), num_classes=num_classes)
