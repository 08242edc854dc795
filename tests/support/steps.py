"""A callback for multi-process runs: what each rank put into each optimizer step."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L


class StepRecorder(L.Callback):
    """<directory>/rank<r>.json: the micro-batch sizes of every optimizer step, and the steps validation ran at.

    Used as `+callbacks.steps._target_=support.steps.StepRecorder +callbacks.steps.directory=<dir>` (with this
    directory on PYTHONPATH).
    """

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)
        self.pending: list[int] = []
        self.steps: list[list[int]] = []
        self.validated: list[int] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.pending.append(int(batch["input_ids"].shape[0]))

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.steps.append(self.pending)
        self.pending = []

    def on_validation_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.validated.append(trainer.global_step)

    def on_train_end(self, trainer, pl_module) -> None:
        record = {
            "world_size": trainer.world_size,
            "accumulate_grad_batches": trainer.accumulate_grad_batches,
            "micro_batches_per_step": self.steps,
            "validated_at_steps": self.validated,
        }
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))
