"""Helpers for the training tests: compose the real run config with Hydra and train it on the CPU."""

from __future__ import annotations

import copy
import csv
import functools
from pathlib import Path

from hydra import compose, initialize_config_dir

from hopfield_attention.train import CONFIG_DIR

EXPERIMENTS = sorted(path.stem for path in (CONFIG_DIR / "experiment").glob("*.yaml"))
# The test size of each model family.
TINY_MODEL = {"gpt2": "gpt2_tiny", "llama": "llama_tiny", "vit": "vit_tiny_test"}
# Fast, quiet CPU training: every step logged, no progress bar, no sanity check; the data fixtures' tiny
# per-device batch without the recipe's global batch (batch.global_size=null: no accumulation to reach it).
CPU = [
    "trainer=cpu",
    "batch.global_size=null",
    "callbacks.progress_bar=null",
    "+trainer.enable_progress_bar=false",
    "+trainer.enable_model_summary=false",
    "trainer.log_every_n_steps=1",
    "trainer.num_sanity_val_steps=0",
]


def hydra_value(value) -> str:
    """A Python value written in Hydra's override grammar."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {hydra_value(item)}" for key, item in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(hydra_value(item) for item in value) + "]"
    if value is None:
        return "null"
    return str(value)


def data_overrides(fixture: dict) -> list[str]:
    """A data fixture's dict (tests/support/data.py) as command-line overrides of the `data` node."""
    return [f"data.{key}={hydra_value(value)}" for key, value in fixture.items()]


def compose_run(experiment: str, overrides: list[str], output_dir: Path | str | None = None):
    """The composed config of `train experiment=<experiment> <overrides>`, with its run dir set."""
    extra = [f"paths.output_dir={output_dir}"] if output_dir is not None else []
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=[f"experiment={experiment}", *overrides, *extra])


@functools.cache
def _composed(experiment: str) -> object:
    return compose_run(experiment, [], "/tmp/unused")


def composed_experiment(experiment: str):
    """The experiment as composed without overrides (cached: the config tests read each one often)."""
    return copy.deepcopy(_composed(experiment))


def logged(run_dir: Path | str, key: str) -> list[tuple[int, float]]:
    """(epoch, value) of every row of the run's CSV log that has `key`, in logging order."""
    with open(Path(run_dir) / "csv" / "metrics.csv", newline="", encoding="utf-8") as handle:
        return [(int(row["epoch"]), float(row[key])) for row in csv.DictReader(handle) if row.get(key)]
