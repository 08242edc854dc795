"""SIGTERM and SIGINT stop a run at a safe point, with a checkpoint, as `interrupted`.

SIGTERM is what `scancel`, preemption and a requeue send; SIGINT is Ctrl-C. Either one only sets a flag. At
the end of the current optimizer step every process agrees to stop, and the run stops where a resumed run
continues exactly as an uninterrupted one:
- when no validation follows this step: at on_train_batch_end, where Lightning's own step checkpoints are taken;
  the run saves <run dir>/checkpoints/last.ckpt and asks Lightning to stop (it then logs the finished step);
- when a validation follows it: after that validation and the ModelCheckpoint's own last.ckpt (a checkpoint from
  before the validation would resume without it, and without its best-checkpoint bookkeeping).
`Interrupted` is then raised before anything else (a validation Lightning adds for stopping, an epoch-end hook,
another checkpoint) can run. During the test pass the run stops at the next test batch. A second Ctrl-C aborts
at once.

Lightning's own SIGTERM handling is replaced while training runs (it would stop at the end of the epoch only,
without a checkpoint); it is restored when the trainer tears down. The time-limit signal of SLURM (USR1,
config/cluster.py) stays Lightning's.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from ..errors import Interrupted

SIGNALS = (signal.SIGTERM, signal.SIGINT)


def validation_follows(trainer: Trainer) -> bool:
    """Whether Lightning validates right after the training batch that just ended. No public API says so; this
    asks the epoch loop's own rule (private, Lightning 2.6), which the exact-resume tests pin down."""
    loop = trainer.fit_loop
    return bool(loop.epoch_loop._should_check_val_fx(loop._data_fetcher))


class GracefulStop(Callback):
    def __init__(self, checkpoint_path: str | Path):
        self.checkpoint_path = Path(checkpoint_path)
        self.received: int | None = None
        self.stopping = False
        self.after_validation = False
        self._previous: dict[int, object] = {}
        self._last_step = -1

    # -- signal handlers -------------------------------------------------------------------------------
    def _handle(self, signum: int, frame) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now, without a checkpoint
        self.received = signum
        print(f"\n{signal.Signals(signum).name} received: stopping after this step with a checkpoint "
              "(Ctrl-C again to abort at once)", file=sys.stderr, flush=True)  # fmt: skip

    def _install(self) -> None:
        if self._previous or threading.current_thread() is not threading.main_thread():
            return  # installed already; signals reach the main thread only (a worker thread keeps the defaults)
        for signum in SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    # -- Lightning hooks -------------------------------------------------------------------------------
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._install()  # after Lightning registered its handlers, which it restores at teardown
        self._last_step = trainer.global_step

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx) -> None:
        stepped = trainer.global_step != self._last_step  # accumulating batches are not a safe point
        self._last_step = trainer.global_step
        if not stepped or self.stopping:
            return
        if not trainer.strategy.reduce_boolean_decision(self.received is not None, all=False):
            return
        self.received = self.received or signal.SIGTERM  # a rank that got no signal follows rank 0
        if validation_follows(trainer):
            self.after_validation = True  # stop in on_validation_end, once that validation is done
            return
        trainer.save_checkpoint(self.checkpoint_path, weights_only=False)
        self._stop(trainer)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.after_validation or trainer.sanity_checking:
            return
        checkpoint = trainer.checkpoint_callback
        if not (isinstance(checkpoint, ModelCheckpoint) and checkpoint.save_last):
            # nobody else saves this state (a ModelCheckpoint's hooks run after ours)
            trainer.save_checkpoint(self.checkpoint_path, weights_only=False)
        else:
            self.checkpoint_path = Path(checkpoint.dirpath or self.checkpoint_path.parent) / "last.ckpt"
        self._stop(trainer)  # the ModelCheckpoint's on_validation_end, after this one, writes last.ckpt

    def _stop(self, trainer: Trainer) -> None:
        self.stopping = True
        trainer.should_stop = True  # Lightning logs this step, then our next hook raises

    def _raise_if_stopping(self, trainer: Trainer) -> None:
        if self.stopping:
            name = signal.Signals(self.received).name
            raise Interrupted(self.received, f"stopped by {name} at step {trainer.global_step}; checkpoint "
                                             f"{self.checkpoint_path}: run the same command again to resume")  # fmt: skip

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._raise_if_stopping(trainer)  # the validation Lightning adds when asked to stop: not the run's own

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._raise_if_stopping(trainer)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._raise_if_stopping(trainer)
        self._restore()

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._install()

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self.received is not None:
            name = signal.Signals(self.received).name
            raise Interrupted(self.received, f"stopped by {name} during the test pass; the trained checkpoints are "
                                             "kept: run the same command again to test")  # fmt: skip

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._restore()

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._restore()
