"""A CSV log whose history survives a resume: <run dir>/csv/metrics.csv reads as one run.

Lightning's CSVLogger deletes metrics.csv when it finds one. Here a restarted run keeps it: the rows the
interrupted attempt logged after its checkpoint are about to be logged again (training continues
deterministically from that checkpoint), so at this attempt's first logged step every old row at or after that
step is dropped, and the rest is continued. A fresh run in the same directory logs from step 0 and so replaces
everything. Rewrites are atomic; Lightning still appends between them.
"""

from __future__ import annotations

import csv
import os

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from .atomic import atomic_file, reporting_full_disk


class HistoryWriter(ExperimentWriter):
    def __init__(self, log_dir: str) -> None:
        self._resumed_rows: list[dict] | None = None
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        """Keep an existing metrics.csv (Lightning's writer deletes it); it is trimmed at the first log."""
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                self._resumed_rows = list(reader)
                self.metrics_keys = list(reader.fieldnames or [])

    def log_metrics(self, metrics_dict: dict[str, float], step: int | None = None) -> None:
        if self._resumed_rows is not None:
            first = len(self.metrics) if step is None else step
            kept = [row for row in self._resumed_rows if row.get("step") not in (None, "") and int(row["step"]) < first]
            self._rewrite(kept)
            self._resumed_rows = None
        super().log_metrics(metrics_dict, step)

    def save(self) -> None:
        with reporting_full_disk(self.metrics_file_path):  # Lightning appends rows; a full disk names the file
            super().save()

    def _rewrite(self, rows: list[dict]) -> None:
        with atomic_file(self.metrics_file_path) as handle:
            writer = csv.DictWriter(handle, fieldnames=self.metrics_keys)
            writer.writeheader()
            writer.writerows(rows)
        if not rows:  # no history left: the next save writes a fresh header with this attempt's keys
            os.remove(self.metrics_file_path)
            self.metrics_keys = []


class HistoryCSVLogger(CSVLogger):
    """CSVLogger (same arguments) that continues the metrics.csv of an earlier attempt in its directory."""

    @property
    @rank_zero_experiment
    def experiment(self) -> HistoryWriter:
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = HistoryWriter(log_dir=self.log_dir)
        return self._experiment


class SaveLogsWithCheckpoints(Callback):
    """Every logger writes out what it buffered whenever a checkpoint is taken, so no logged step between the
    last flush and the checkpoint is lost when the run dies and resumes from that checkpoint."""

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict) -> None:
        for logger in trainer.loggers:
            logger.save()
