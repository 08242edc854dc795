"""Exact resumption: the random number generators continue where the interrupted run left them.

Lightning restores weights, optimizer, schedule and loop counters from a checkpoint, but not the RNG
streams of dropout and augmentation. This callback stores them with every checkpoint and puts them back
when the first training epoch (or, mid-epoch, the first batch) after a resume starts: the point at which
the uninterrupted run, having saved its checkpoint, drew the same numbers. Sanity-check validation of
the resumed run happens before that point, so it does not disturb them.

The data order is the train DataLoader's own (data/loaders.py): a StatefulDataLoader whose position
Lightning saves and restores, shuffled by (seed, epoch) without touching these streams, so a checkpoint
from the middle of an epoch continues that epoch's batches too.
"""

from __future__ import annotations

import random

import lightning as L
import numpy as np
import torch


def capture_rng_states() -> dict:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": _numpy_state_as_tensors(np.random.get_state()),
        "python": random.getstate(),
    }


def _numpy_state_as_tensors(state: tuple) -> tuple:
    """numpy's state with its key array as a tensor: checkpoints stay loadable with weights_only=True."""
    kind, keys, pos, has_gauss, cached_gaussian = state
    return kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached_gaussian)


def restore_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])
    kind, keys, pos, has_gauss, cached_gaussian = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached_gaussian))
    random.setstate(states["python"])


class ResumeRNG(L.Callback):
    """Saves the RNG states in each checkpoint; restores them at the first train epoch after a resume."""

    def __init__(self):
        self._pending: dict | None = None

    def state_dict(self) -> dict:
        return {"rng_states": capture_rng_states()}

    def load_state_dict(self, state_dict: dict) -> None:
        self._pending = state_dict.get("rng_states")

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        self._restore()  # a mid-epoch restart skips on_train_epoch_start: restore before its first batch

    def _restore(self) -> None:
        if self._pending is not None:
            restore_rng_states(self._pending)
            self._pending = None
