"""results.json: one record per run, written atomically at every state change, so a crash still says so.

`RunRecorder(cfg)` is a Lightning callback built by train.py with the resolved run config. It writes
<cfg.paths.output_dir>/results.json at fit (or test) start with status "running", on an exception with
status "failed" ("interrupted" for KeyboardInterrupt and SIGTERM), and at the end of fit and of test with
status "finished", the final metrics and the best validation metrics. `write_failure_record(cfg, exc)`
covers failures before a Trainer exists. Schema: see `RECORD_KEYS` and README "Tables and figures".
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Mapping

import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from .provenance import git_state, hardware, repository_dir, utc_now

RESULTS_FILE = "results.json"
SCHEMA_VERSION = 1
STATUSES = ("running", "finished", "failed", "interrupted")
RECORD_KEYS = (
    "schema", "experiment", "paper", "attention", "model", "data", "task", "seed", "status", "attempts", "error",
    "metrics", "best", "checkpoint", "epoch", "global_step", "git", "hardware", "started_at", "ended_at",
    "wall_time_s", "wandb", "output_dir",
)  # fmt: skip
# Which way is better for the validation metrics whose best value the record keeps.
BEST_MODE = {"loss": "min", "ppl": "min", "top1": "max", "top5": "max"}


def results_path(cfg: DictConfig | Mapping) -> Path:
    return Path(_as_config(cfg).paths.output_dir) / RESULTS_FILE


def write_failure_record(cfg: DictConfig | Mapping, exc: BaseException) -> Path:
    """Record a run that failed before (or outside) a Trainer: keeps what an earlier record said, if any."""
    cfg = _as_config(cfg)
    path = results_path(cfg)
    record = read_record(path) if path.exists() else _static_record(cfg)
    record.setdefault("started_at", utc_now())
    _mark_ended(record, exc)
    if rank_zero_only.rank == 0:
        write_record(path, record)
    return path


def read_record(path: str | os.PathLike) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def write_record(path: str | os.PathLike, record: Mapping) -> None:
    """Write `record` as JSON to `path` atomically: a reader sees the old file or the new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_json_safe(record), indent=2, sort_keys=False, allow_nan=False)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RunRecorder(Callback):
    """Keeps <cfg.paths.output_dir>/results.json up to date through fit and test (global rank 0 writes)."""

    def __init__(self, cfg: DictConfig | Mapping):
        self.cfg = _as_config(cfg)
        self.path = results_path(self.cfg)
        self.record = _static_record(self.cfg)
        self._t0: float | None = None

    # -- lifecycle -------------------------------------------------------------------------------------
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start(trainer)

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._t0 is None:  # test without fit (evaluation of a checkpoint)
            self._start(trainer)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        best = self.record["best"]
        for key, value in _scalars(trainer.callback_metrics).items():
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
            self._start(trainer)
        self._update_progress(trainer)
        _mark_ended(self.record, exception, wall_time_s=time.monotonic() - self._t0)
        self._write(trainer)
        _put_in_wandb_summary(trainer, self.record)

    # -- helpers ---------------------------------------------------------------------------------------
    def _start(self, trainer: Trainer) -> None:
        self._t0 = time.monotonic()
        if self.path.exists():  # a resumed run (requeued job) in its old run dir: continue its record
            previous = read_record(self.path)
            self.record["attempts"] = int(previous.get("attempts") or 1) + 1
            self.record["best"] = {**previous.get("best", {}), **self.record["best"]}
        self.record.update(status="running", error=None, started_at=utc_now(), ended_at=None)
        self.record["wandb"] = _wandb_info(trainer)
        self._write(trainer)
        _put_in_wandb_config(trainer, self.record)

    def _finish(self, trainer: Trainer) -> None:
        self._update_progress(trainer)
        self.record.update(status="finished", error=None, ended_at=utc_now())
        self.record["wall_time_s"] = time.monotonic() - self._t0
        self._write(trainer)
        _put_in_wandb_summary(trainer, self.record)

    def _update_progress(self, trainer: Trainer) -> None:
        self.record["metrics"].update(_scalars(trainer.callback_metrics))
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


def _as_config(cfg: DictConfig | Mapping) -> DictConfig:
    if isinstance(cfg, Mapping) and not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(dict(cfg))
    if not isinstance(cfg, DictConfig):
        raise TypeError(f"cfg must be an omegaconf DictConfig or a mapping, got {type(cfg).__name__}")
    if OmegaConf.select(cfg, "paths.output_dir") is None:
        raise ValueError("cfg.paths.output_dir must be set: it is the run directory that holds results.json")
    return cfg


def _section(cfg: DictConfig, key: str) -> Any:
    value = OmegaConf.select(cfg, key)
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig) else value


def _static_record(cfg: DictConfig) -> dict:
    """The fields known before the run starts, from the resolved config."""
    paper = _section(cfg, "paper") or {}
    return {
        "schema": SCHEMA_VERSION,
        "experiment": _section(cfg, "experiment"),
        "paper": {key: paper.get(key) for key in ("table", "dataset", "row", "column")},
        "attention": _section(cfg, "attention"),
        "model": _section(cfg, "model"),
        "data": _section(cfg, "data"),
        "task": _section(cfg, "task"),
        "seed": _section(cfg, "seed"),
        "status": "running",
        "attempts": 1,  # > 1: resumed in the same run dir after an interruption
        "error": None,
        "metrics": {},
        "best": {},
        "checkpoint": None,
        "epoch": None,
        "global_step": None,
        "git": git_state(repository_dir(_section(cfg, "paths.root_dir"))),
        "hardware": hardware(),
        "started_at": None,
        "ended_at": None,
        "wall_time_s": None,
        "wandb": None,
        "output_dir": str(Path(cfg.paths.output_dir).resolve()),
    }


def _mark_ended(record: dict, exc: BaseException, wall_time_s: float | None = None) -> None:
    interrupted = isinstance(exc, (KeyboardInterrupt, SIGTERMException))
    record["status"] = "interrupted" if interrupted else "failed"
    record["error"] = {
        "type": type(exc).__name__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-8000:],
    }
    record["ended_at"] = utc_now()
    if wall_time_s is not None:
        record["wall_time_s"] = wall_time_s


def _scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
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


def _json_safe(value: Any) -> Any:
    """Strict JSON: non-finite floats become the strings "nan", "inf", "-inf" (float() reads them back)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _wandb_loggers(trainer: Trainer) -> list[WandbLogger]:
    return [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]


def _wandb_info(trainer: Trainer) -> dict | None:
    loggers = _wandb_loggers(trainer)
    if not loggers or not trainer.is_global_zero:
        return None
    run = loggers[0].experiment
    return {
        "id": run.id,
        "name": run.name,
        "project": run.project,
        "entity": run.entity or None,
        "url": run.url,  # None offline; `wandb sync <dir>` uploads the run later
        "dir": run.dir,
        "offline": run.settings.mode in ("offline", "dryrun"),
    }


def _put_in_wandb_config(trainer: Trainer, record: Mapping) -> None:
    """The paper cell, experiment and seed at the top of the W&B run config, so that a W&B project can be
    grouped into tables (source=wandb), crashed runs included."""
    if not trainer.is_global_zero:
        return
    for logger in _wandb_loggers(trainer):
        logger.experiment.config.update(
            {"paper": record["paper"], "experiment": record["experiment"], "seed": record["seed"],
             "attention": record["attention"]},
            allow_val_change=True,
        )  # fmt: skip


def _put_in_wandb_summary(trainer: Trainer, record: Mapping) -> None:
    """The same final and best metrics in the W&B run summary, and the record's status (wandb offline
    keeps no local summary file; results.json is the local copy)."""
    if not trainer.is_global_zero:
        return
    for logger in _wandb_loggers(trainer):
        best = {f"best/{key}": value for key, value in record["best"].items()}
        logger.experiment.summary.update(_json_safe({**record["metrics"], **best, "status": record["status"]}))
