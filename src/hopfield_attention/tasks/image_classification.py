"""Image classification: cross-entropy (optionally label-smoothed), top-1 and top-5 accuracy in percent."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from .base import Task


class ImageClassificationTask(Task):
    """Batches are (images (B, 3, H, W), labels (B,)). Accuracies are logged in percent, as the paper reports."""

    def __init__(self, cfg, *, num_classes: int, image_size: int):
        super().__init__(cfg, num_classes=num_classes, image_size=image_size)
        top_k = min(5, num_classes)
        for split in ("val", "test"):
            setattr(self, f"{split}_loss", MeanMetric())
            setattr(self, f"{split}_top1", MulticlassAccuracy(num_classes, top_k=1, average="micro"))
            setattr(self, f"{split}_top5", MulticlassAccuracy(num_classes, top_k=top_k, average="micro"))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)  # (B, classes)

    def training_step(self, batch, batch_idx):
        images, labels = batch
        logits = self(images)
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=float(self.cfg.loss.label_smoothing))
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
