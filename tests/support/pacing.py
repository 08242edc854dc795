"""A callback that slows training down (tests put this directory on a child run's PYTHONPATH), so that a test
can send a signal, kill or fill the disk while the run is still in its middle. Sleeping changes no number."""

import time
from pathlib import Path

from lightning.pytorch import Callback


class Pace(Callback):
    """Sleeps `seconds` after every batch; with `hold_until`, also waits after the first batch until that file
    exists (a test that must act while the run lives creates it when done, however slow the machine)."""

    def __init__(self, seconds: float, hold_until: str | None = None):
        self.seconds = seconds
        self.hold_until = Path(hold_until) if hold_until else None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        time.sleep(self.seconds)
        while self.hold_until is not None and not self.hold_until.exists():
            time.sleep(0.1)
