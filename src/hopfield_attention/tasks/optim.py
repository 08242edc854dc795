"""AdamW with weight decay on matrices only, and a linear warm-up followed by cosine decay (per step).

`optim.optimizer.fused: null` means torch's fused kernel when the parameters are on CUDA, and torch's default
(foreach) implementation elsewhere; true or false forces it."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn as nn
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def parameter_groups(module: nn.Module) -> list[dict]:
    """Two groups: decayed (weight matrices, embeddings) and not decayed (biases, norm gains, and what the
    model lists in `no_weight_decay()`, e.g. a ViT's position embedding and class token). Frozen
    parameters are left out."""
    skip = set(module.no_weight_decay()) if hasattr(module, "no_weight_decay") else set()
    decay, no_decay = [], []
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or name in skip else decay).append(param)
    groups = [{"params": decay, "name": "decay"}, {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"}]
    return [group for group in groups if group["params"]]


def warmup_cosine(total_steps: int, warmup_steps: int, min_lr_ratio: float) -> Callable[[int], float]:
    """Learning-rate factor at optimizer step `step`: linear from 1/warmup to 1, then cosine to min_lr_ratio."""
    if total_steps <= 0:
        raise ValueError(f"the schedule needs a positive number of training steps, got {total_steps}")
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"optim.scheduler.min_lr_ratio must be in [0, 1], got {min_lr_ratio}")
    warmup_steps = min(warmup_steps, total_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def use_fused(configured: bool | None, device: torch.device) -> bool:
    """The optimizer's `fused` flag: as configured, or (null) on CUDA only."""
    return device.type == "cuda" if configured is None else bool(configured)


def build_optimization(module: nn.Module, optim_cfg: DictConfig, total_steps: int) -> dict:
    """What LightningModule.configure_optimizers returns: the optimizer and its per-step schedule. Lightning
    calls it once the module is on its device, so the parameters say where the optimizer runs."""
    groups = parameter_groups(module)
    device = groups[0]["params"][0].device if groups else torch.device("cpu")
    fused = use_fused(optim_cfg.optimizer.get("fused"), device)
    optimizer: Optimizer = instantiate(optim_cfg.optimizer, fused=fused)(groups)
    schedule = warmup_cosine(
        int(total_steps), int(optim_cfg.scheduler.warmup_steps), float(optim_cfg.scheduler.min_lr_ratio)
    )
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": LambdaLR(optimizer, schedule), "interval": "step"}}
