"""Checks of a whole sweep (`-m`), made once before any job starts (a Hydra callback, configs/hydra/default.yaml).

A mistake common to every job (a local sweep asked to train on several devices) is one message, not one per
job. The checks read the sweep's base config: the overrides that are not swept.
"""

from __future__ import annotations

import os
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def check_local_sweep(cfg: DictConfig, launcher: str | None) -> None:
    """A local sweep cannot train on several devices: Lightning restarts the command once per device."""
    devices = cfg.trainer.get("devices")
    several = (isinstance(devices, int) and devices > 1) or cfg.trainer.get("num_nodes", 1) > 1
    if launcher != "slurm" and several and "SLURM_JOB_ID" not in os.environ:
        raise ValueError("a local sweep (-m) cannot train on several devices: Lightning restarts the command for each "
                         "device and every process would replay the sweep; use hydra/launcher=slurm, or single runs")  # fmt: skip


class SweepChecks(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from .app import report, wants_traceback

        try:
            check_local_sweep(config, config.hydra.runtime.choices.get("hydra/launcher"))
        except ValueError as error:
            if wants_traceback():
                raise SystemExit(str(error)) from error
            report(error)
            raise SystemExit(1) from None  # Hydra turns an Exception of a callback into a warning and goes on
