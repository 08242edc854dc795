"""Checks of a whole sweep (`-m`), made once before any job starts (a Hydra callback, configs/hydra/default.yaml).

A mistake common to every job (a local sweep asked to train on several devices) is one message, not one per
job. The checks read the sweep's base config: the overrides that are not swept.
"""

from __future__ import annotations

from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class SweepChecks(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from .cli import report, wants_traceback
        from .train import check_local_sweep

        try:
            check_local_sweep(config, config.hydra.runtime.choices.get("hydra/launcher"))
        except ValueError as error:
            if wants_traceback():
                raise SystemExit(str(error)) from error
            report(error)
            raise SystemExit(1) from None  # Hydra turns an Exception of a callback into a warning and goes on
