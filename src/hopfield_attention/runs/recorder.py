"""The Lightning callback that keeps a run's results.json current through fit and test.

Global rank 0 writes. Start: status `running` (a restart in the same run directory continues the old record,
see record.continue_record). After each validation: the metrics so far and the best validation values. End of
fit and of test: `finished` with final and best metrics. An exception: `failed`, or `interrupted` for a signal
(runs/signals.py), written so that a failure of the write itself never hides the original error.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from . import wandb_run
from .provenance import utc_now
from .record import mark_ended, write_record, write_without_masking

# Which way is better for the validation metrics whose best value the record keeps.
BEST_MODE = {"loss": "min", "ppl": "min", "top1": "max", "top5": "max"}


class RunRecorder(Callback):
    def __init__(self, record: dict, path: str | Path):
        self.record = record
        self.path = Path(path)
        self._t0: float | None = None

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start(trainer)

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._t0 is None:  # test without fit (evaluation of a checkpoint)
            self._start(trainer)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        best = self.record["best"]
        for key, value in scalars(trainer.callback_metrics).items():
            mode = BEST_MODE.get(key.rpartition("/")[2]) if key.startswith("val/") else None
            if mode is None or math.isnan(value):
                continue
            if key not in best or (value < best[key] if mode == "min" else value > best[key]):
                best[key] = value
        self._update_progress(trainer)
        self._write(trainer)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._finish(trainer)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._finish(trainer)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if self._t0 is None:
            self._t0 = time.monotonic()
        self._update_progress(trainer)
        mark_ended(self.record, exception, wall_time_s=time.monotonic() - self._t0)
        if trainer.is_global_zero:
            write_without_masking(self.path, self.record)
            wandb_run.put_summary(trainer, self.record)

    def _start(self, trainer: Trainer) -> None:
        self._t0 = time.monotonic()
        self.record.update(status="running", error=None, started_at=utc_now(), ended_at=None)
        self.record["wandb"] = wandb_run.info(trainer)
        self._write(trainer)
        wandb_run.put_config(trainer, self.record)

    def _finish(self, trainer: Trainer) -> None:
        self._update_progress(trainer)
        self.record.update(status="finished", error=None, ended_at=utc_now())
        self.record["wall_time_s"] = time.monotonic() - self._t0
        self._write(trainer)
        wandb_run.put_summary(trainer, self.record)

    def _update_progress(self, trainer: Trainer) -> None:
        self.record["metrics"].update(scalars(trainer.callback_metrics))
        self.record["epoch"] = trainer.current_epoch
        self.record["global_step"] = trainer.global_step
        checkpoint = trainer.checkpoint_callback
        if isinstance(checkpoint, ModelCheckpoint) and checkpoint.monitor:
            score = checkpoint.best_model_score
            self.record["checkpoint"] = {
                "monitor": checkpoint.monitor,
                "mode": checkpoint.mode,
                "best_score": None if score is None else float(score),
                "best_model_path": checkpoint.best_model_path or None,
                "last_model_path": checkpoint.last_model_path or None,
            }

    def _write(self, trainer: Trainer) -> None:
        if trainer.is_global_zero:
            write_record(self.path, self.record)


def scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The one-number entries of Lightning's metric dict as floats."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                continue
            value = value.item()
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(value)
    return out
