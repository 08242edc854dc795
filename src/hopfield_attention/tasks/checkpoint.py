"""Rebuild a trained task from its checkpoint alone: the run config travels in the hyperparameters."""

from __future__ import annotations

import os

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf


def load_task(
    ckpt_path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[L.LightningModule, DictConfig]:
    """(the task module with the checkpoint's weights, in eval mode; the run's resolved config).

    The module's backbone is `.model`. Loaded with weights_only=True: our checkpoints hold tensors and
    plain containers only (the RNG states included), nothing that executes on unpickling.
    """
    from ..runs.resume import checkpoint_config
    from . import TASKS

    checkpoint_config(ckpt_path)  # a clear error for a missing, empty, foreign or damaged file
    checkpoint = torch.load(ckpt_path, map_location=map_location, weights_only=True)
    hparams = dict(checkpoint.get("hyper_parameters") or {})
    cfg = hparams.pop("cfg")
    module = TASKS[cfg["task"]](cfg, **hparams)
    module.load_state_dict(checkpoint["state_dict"])
    module._pretrained_loaded = True  # a linear probe's weights are all in its own checkpoint
    return module.eval(), OmegaConf.create(cfg)
