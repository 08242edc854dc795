"""results.json from real tiny Lightning runs: finished, failed, interrupted, a failed write, and W&B offline."""

import os
import signal
import subprocess
from pathlib import Path

import pytest
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from hopfield_attention.errors import Interrupted
from hopfield_attention.runs.record import (
    RECORD_KEYS,
    read_record,
    write_without_masking,
)
from hopfield_attention.runs.recorder import RunRecorder
from hopfield_attention.runs.signals import GracefulStop

from support.results import TinyClassifier, run_record

REPO = Path(__file__).resolve().parents[1]


def make_trainer(tmp_path, recorder, *extra_callbacks, logger=False, epochs=2):
    return Trainer(
        max_epochs=epochs, logger=logger, accelerator="cpu", devices=1, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path,
        callbacks=[ModelCheckpoint(dirpath=tmp_path / "checkpoints", monitor="val/loss", mode="min", save_last=True),
                   recorder, *extra_callbacks],
    )  # fmt: skip


def recorder_in(directory) -> RunRecorder:
    return RunRecorder(run_record(directory), Path(directory) / "results.json")


class ValLossLog(Callback):
    """Remembers val/loss after each validation, and the record's status seen during training."""

    def __init__(self, path):
        self.path, self.val_losses, self.status_during_training = path, [], None

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.val_losses.append(float(trainer.callback_metrics["val/loss"]))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.status_during_training is None:
            self.status_during_training = read_record(self.path)["status"]


def test_finished_run_records_everything(tmp_path):
    recorder = recorder_in(tmp_path / "run")
    seen = ValLossLog(recorder.path)
    trainer = make_trainer(tmp_path, recorder, seen)
    module = TinyClassifier()
    trainer.fit(module)
    assert read_record(recorder.path)["status"] == "finished"
    trainer.test(module, verbose=False)

    record = read_record(tmp_path / "run" / "results.json")
    assert list(record) == list(RECORD_KEYS)
    assert seen.status_during_training == "running"
    assert record["status"] == "finished" and record["error"] is None
    assert record["experiment"] == "tiny" and record["seed"] == 7
    assert record["paper"] == {"table": "3", "dataset": "CIFAR-100", "row": "ViT-Tiny", "column": "softmax"}
    assert record["attention"] == {"name": "mha", "alpha": 0.5, "alpha_prime": 0.5, "first_layer": "scores"}
    assert record["model"]["name"] == "tiny_linear" and record["data"]["name"] == "gaussian_blobs"
    for key in ("train/loss", "val/loss", "val/top1", "test/loss", "test/top1"):
        assert key in record["metrics"], key
    assert record["metrics"]["test/loss"] == pytest.approx(float(trainer.callback_metrics["test/loss"]))
    assert len(seen.val_losses) == 2
    assert record["best"]["val/loss"] == pytest.approx(min(seen.val_losses))
    assert record["checkpoint"]["monitor"] == "val/loss"
    assert record["checkpoint"]["best_score"] == pytest.approx(min(seen.val_losses))
    assert Path(record["checkpoint"]["best_model_path"]).exists()
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert record["git"]["commit"] == head.strip() and isinstance(record["git"]["dirty"], bool)
    assert record["hardware"]["torch"] and record["hardware"]["host"]
    assert record["process"]["pid"] == os.getpid() and record["process"]["host"] == record["hardware"]["host"]
    assert record["started_at"] <= record["ended_at"] and record["wall_time_s"] > 0
    assert record["epoch"] == 2 and record["global_step"] == 8
    assert not [p for p in (tmp_path / "run").iterdir() if p.name != "results.json"]  # no temp files left
    assert oct((tmp_path / "run" / "results.json").stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_exception_leaves_a_failed_record(tmp_path):
    recorder = recorder_in(tmp_path)
    with pytest.raises(RuntimeError, match="boom"):
        make_trainer(tmp_path, recorder).fit(TinyClassifier(fail_at="train"))
    record = read_record(tmp_path / "results.json")
    assert record["status"] == "failed"
    assert record["error"]["type"] == "RuntimeError" and record["error"]["message"] == "RuntimeError: boom at step 2"
    assert "training_step" in record["error"]["traceback"]
    assert record["global_step"] == 2 and record["ended_at"] is not None


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_at_a_step_with_a_checkpoint_and_an_interrupted_record(tmp_path, signum):
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    recorder = recorder_in(tmp_path)
    stop = GracefulStop(tmp_path / "checkpoints" / "last.ckpt")
    module = TinyClassifier(fail_at={signal.SIGTERM: "sigterm", signal.SIGINT: "sigint"}[signum])
    try:
        with pytest.raises(Interrupted, match=f"{signal.Signals(signum).name} at step 3") as stopped:
            make_trainer(tmp_path, recorder, stop).fit(module)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert stopped.value.signum == signum
    record = read_record(tmp_path / "results.json")
    assert record["status"] == "interrupted" and record["error"]["type"] == "Interrupted"
    assert record["global_step"] == 3  # the step in flight when the signal came was finished, then it stopped
    import torch

    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 3
    assert {s: signal.getsignal(s) for s in handlers} == handlers  # the process's handlers are back


def test_a_record_that_cannot_be_written_does_not_hide_the_error(tmp_path, capsys):
    (tmp_path / "results.json").mkdir()  # a directory where the file should go: every write fails
    assert write_without_masking(tmp_path / "results.json", {"status": "failed"}) is False
    assert "could not update" in capsys.readouterr().err


def test_wandb_offline_run_gets_ids_and_summary(tmp_path):
    wandb = pytest.importorskip("wandb")
    from lightning.pytorch.loggers import WandbLogger

    logger = WandbLogger(project="tiny", save_dir=str(tmp_path), offline=True)
    recorder = recorder_in(tmp_path / "run")
    trainer = make_trainer(tmp_path, recorder, logger=logger, epochs=1)
    module = TinyClassifier()
    try:
        trainer.fit(module)
        trainer.test(module, verbose=False)
        run = logger.experiment
        record = read_record(recorder.path)
        assert record["wandb"]["id"] == run.id and record["wandb"]["offline"] is True
        assert record["wandb"]["url"] is None or run.id in record["wandb"]["url"]
        assert run.summary["test/loss"] == pytest.approx(record["metrics"]["test/loss"])
        assert run.summary["best/val/loss"] == pytest.approx(record["best"]["val/loss"])
        assert run.summary["status"] == "finished"
        assert run.config["paper"]["column"] == "softmax" and run.config["cell"]["deviations"] is None
    finally:
        wandb.finish()
    assert list((tmp_path / "wandb").glob(f"offline-run-*-{record['wandb']['id']}/run-*.wandb"))


def test_wandb_failed_run_has_paper_config_and_status(tmp_path):
    wandb = pytest.importorskip("wandb")
    from lightning.pytorch.loggers import WandbLogger

    logger = WandbLogger(project="tiny", save_dir=str(tmp_path), offline=True)
    recorder = recorder_in(tmp_path / "run")
    try:
        with pytest.raises(RuntimeError):
            make_trainer(tmp_path, recorder, logger=logger, epochs=1).fit(TinyClassifier(fail_at="train"))
        run = logger.experiment
        assert run.config["paper"]["row"] == "ViT-Tiny" and run.config["seed"] == 7
        assert run.summary["status"] == "failed"
    finally:
        wandb.finish()
