"""A checkpoint of the model as initialised, before its first step: <run dir>/checkpoints/init.ckpt.

For measuring a model at initialization with the same tool as after training (`analyze`, the token-uniformity
figures): the pinned alpha placement already changes the residual stream before any learning (README, "The paper
at laptop scale"). Written once, by a run that starts from step 0 (not by a resumed one).
"""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer

INITIAL_CHECKPOINT = "init.ckpt"


class InitialCheckpoint(Callback):
    def __init__(self, dirpath: str | Path):
        self.path = Path(dirpath) / INITIAL_CHECKPOINT

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.global_step == 0 and trainer.ckpt_path is None:
            trainer.save_checkpoint(self.path, weights_only=False)
