"""What every task shares: the run config saved in the checkpoint, the backbone as `.model`, the optimizer, and
what the throughput monitor counts (tasks/speed.py): samples and tokens of a batch, FLOPs per batch."""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import Any

import lightning as L
from omegaconf import DictConfig, OmegaConf

from ..attention.variants import AttentionVariant, restore_attention
from ..backbones.build import build_model
from .optim import build_optimization


class Task(L.LightningModule):
    """A LightningModule built from the resolved run config `cfg` and the data's dimensions.

    Both are saved as hyperparameters, so a checkpoint alone rebuilds the module (tasks.load_task).
    """

    # Tokens in a batch, for tokens/s; None: the task has no tokens (images: samples/s is images/s).
    tokens_in: Callable[[Any], int] | None = None

    def __init__(self, cfg: dict[str, Any], attention: AttentionVariant | None = None, **data_dims: int):
        super().__init__()
        if isinstance(cfg, DictConfig):
            cfg = OmegaConf.to_container(cfg, resolve=True)
        self.save_hyperparameters({"cfg": cfg, **data_dims})
        self.cfg = OmegaConf.create(cfg)
        # the run's variant as train built it; rebuilt from the config only when a checkpoint is loaded (an older
        # checkpoint's config lacks the open choices: restore_attention fills in what it was computed with)
        variant = attention or restore_attention(OmegaConf.to_container(self.cfg.attention, resolve=True))
        self.model = build_model(self.cfg.model, variant, **data_dims)

    def trainable_module(self):
        """The module whose parameters the optimizer updates (a linear probe narrows it to the head)."""
        return self.model

    def samples_in(self, batch) -> int:
        """Sequences or images in a training batch."""
        raise NotImplementedError

    def flops_per_sample(self) -> int:
        """Training FLOPs of one sample (tasks/flops.py)."""
        raise NotImplementedError

    @cached_property
    def flops_per_batch(self) -> int:
        """Training FLOPs of one per-device micro-batch (read by Lightning's ThroughputMonitor)."""
        return self.flops_per_sample() * int(self.cfg.data.batch_size)

    def configure_optimizers(self) -> dict:
        total = self.cfg.optim.scheduler.get("total_steps") or (
            self.trainer.max_steps if self.trainer.max_steps > 0 else self.trainer.estimated_stepping_batches
        )
        return build_optimization(self.trainable_module(), self.cfg.optim, total)
