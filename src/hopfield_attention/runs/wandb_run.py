"""The run's W&B side: one W&B run per run directory, and the record's facts in its config and summary.

The W&B run id is derived from the run directory (`run_id` in config/resolvers.py, used by configs/logger/wandb.yaml through the
`ha.wandb_id` resolver, with resume="allow"), so a requeued or resumed job continues the same W&B run and its
history reads as one. The paper cell, the cell facts, experiment and seed go into the run config (so a W&B
project can be grouped into tables with `tables source=wandb`), the final and best metrics and the status into
the summary (offline W&B keeps no local summary file; results.json is the local copy).
"""

from __future__ import annotations

from collections.abc import Mapping

from lightning.pytorch import Trainer
from lightning.pytorch.loggers import WandbLogger

from .record import json_safe


def loggers(trainer: Trainer) -> list[WandbLogger]:
    return [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]


def info(trainer: Trainer) -> dict | None:
    found = loggers(trainer)
    if not found or not trainer.is_global_zero:
        return None
    run = found[0].experiment
    return {
        "id": run.id,
        "name": run.name,
        "project": run.project,
        "entity": run.entity or None,
        "url": run.url,  # None offline; `wandb sync <dir>` uploads the run later
        "dir": run.dir,
        "offline": run.settings.mode in ("offline", "dryrun"),
    }


def put_config(trainer: Trainer, record: Mapping) -> None:
    if not trainer.is_global_zero:
        return
    for logger in loggers(trainer):
        logger.experiment.config.update(
            json_safe({"paper": record["paper"], "cell": record["cell"], "experiment": record["experiment"],
                       "seed": record["seed"], "attention": record["attention"]}),
            allow_val_change=True,
        )  # fmt: skip


def put_summary(trainer: Trainer, record: Mapping) -> None:
    if not trainer.is_global_zero:
        return
    for logger in loggers(trainer):
        best = {f"best/{key}": value for key, value in record["best"].items()}
        logger.experiment.summary.update(
            json_safe({**record["metrics"], **best, "status": record["status"], "ended_at": record["ended_at"]})
        )
