"""A callback that slows training down (tests put this directory on a child run's PYTHONPATH), so that a test
can send a signal, kill or fill the disk while the run is still in its middle. Sleeping changes no number."""

import time

from lightning.pytorch import Callback


class Pace(Callback):
    def __init__(self, seconds: float):
        self.seconds = seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        time.sleep(self.seconds)
