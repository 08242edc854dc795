"""A tiny real Lightning classifier and run config for the results tests (no project model needed)."""

from __future__ import annotations

import os
import signal

import torch
from lightning.pytorch import LightningModule
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, TensorDataset


def run_record(output_dir, **paper) -> dict:
    """The record train.py starts such a run with (no experiment file defines the tiny run)."""
    from hopfield_attention.runs.record import new_record

    return new_record(run_config(output_dir, **paper), {"definition": {}, "deviations": None, "debug": []})


def run_config(output_dir, **paper) -> OmegaConf:
    return OmegaConf.create(
        {
            "experiment": "tiny",
            "paper": {"table": "3", "dataset": "CIFAR-100", "row": "ViT-Tiny", "column": "softmax", **paper},
            "attention": {"name": "mha", "alpha": 0.5, "alpha_prime": "${.alpha}", "first_layer": "scores"},
            "model": {"name": "tiny_linear", "width": 8},
            "data": {"name": "gaussian_blobs"},
            "task": "image_classification",
            "seed": 7,
            "paths": {"output_dir": str(output_dir)},
        }
    )


class TinyClassifier(LightningModule):
    """Two Gaussian blobs, a linear layer; logs the contract's flat keys. `fail_at`: "train" raises
    RuntimeError at step 2, "sigterm" / "sigint" send this process SIGTERM / SIGINT during step 2."""

    def __init__(self, fail_at: str | None = None):
        super().__init__()
        self.layer = torch.nn.Linear(4, 2)
        self.fail_at = fail_at
        generator = torch.Generator().manual_seed(0)
        labels = torch.randint(0, 2, (64,), generator=generator)
        self.data = TensorDataset(torch.randn(64, 4, generator=generator) + 2.0 * labels[:, None], labels)

    def _step(self, batch, stage):
        x, y = batch
        logits = self.layer(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True)
        if stage != "train":
            self.log(f"{stage}/top1", 100.0 * (logits.argmax(-1) == y).float().mean(), on_epoch=True)
        return loss

    def training_step(self, batch, batch_idx):
        if self.fail_at == "train" and self.global_step == 2:
            raise RuntimeError("boom at step 2")
        if self.fail_at in ("sigterm", "sigint") and self.global_step == 2:
            os.kill(os.getpid(), signal.SIGTERM if self.fail_at == "sigterm" else signal.SIGINT)
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)

    def _loader(self):
        return DataLoader(self.data, batch_size=16)

    train_dataloader = val_dataloader = test_dataloader = _loader


from pathlib import Path  # noqa: E402

REPO_PAPER_NUMBERS = Path(__file__).resolve().parents[2] / "results" / "paper_numbers.yaml"
