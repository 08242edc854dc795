"""What a table cell is: the resolved facts of a run that decide its number, compared with its experiment's.

A run's `paper:` block only labels the cell it claims. The cell itself is defined by its experiment file
(configs/experiment/<name>.yaml) composed without overrides: attention and its parameters, model size, data and
its split, recipe (optimizer, schedule, batch, step or epoch budget, validation cadence, what the best checkpoint
monitors), task, loss and whether a test pass runs. Each run records those facts as they resolved (`definition`,
flat dotted keys) and the keys where they differ from its experiment's (`deviations`); the tables file a run under
its cell only when there are none. Where a run ran (devices, precision, data location, workers, the attention
kernel, which computes the same numbers) does not define a cell; the seed is the axis a cell averages over.

Config groups named in QUALIFIER_GROUPS (a run-length `budget`, a `reading` of the paper's open choices) qualify
a cell instead of breaking it: the reference is composed with the run's own choice of them, and the table names
the choice (tables.py), so tables never mix run lengths or readings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..config.global_batch import stated_global_batch

SECTIONS = ("task", "attention", "model", "data", "optim", "loss", "test")
# Keys of those sections that say where or how fast, not what is computed.
OPERATIONAL = frozenset({
    "attention.implementation",
    "data.local_path", "data.cache_dir", "data.hf_cache_dir", "data.num_workers", "data.num_proc",
    "data.pin_memory", "data.eval_batch_size", "data.batch_size", "optim.optimizer.fused",
})  # fmt: skip
TRAINER_KEYS = ("max_steps", "max_epochs", "gradient_clip_val", "gradient_clip_algorithm", "val_check_interval",
                "check_val_every_n_epoch", "limit_train_batches", "limit_val_batches", "limit_test_batches",
                "overfit_batches", "fast_dev_run")  # fmt: skip
CHECKPOINT_KEYS = ("callbacks.model_checkpoint.monitor", "callbacks.model_checkpoint.mode")
# May grow when a stopped run is continued with a longer budget (README: train part of a schedule now).
BUDGET_KEYS = frozenset({"trainer.max_steps", "trainer.max_epochs"})
GLOBAL_BATCH = "global_batch"
QUALIFIER_GROUPS = ("budget", "reading")


def definition(cfg: DictConfig | Mapping) -> dict[str, Any]:
    """The defining facts of a resolved run config, as flat dotted keys (plus seed, kept apart by callers)."""
    cfg = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(dict(cfg))
    facts: dict[str, Any] = {}
    for section in SECTIONS:
        _flatten(section, _plain(OmegaConf.select(cfg, section, default=None)), facts)
    for key in TRAINER_KEYS:
        facts[f"trainer.{key}"] = _plain(OmegaConf.select(cfg, f"trainer.{key}", default=None))
    for key in CHECKPOINT_KEYS:
        facts[key] = _plain(OmegaConf.select(cfg, key, default=None))
    facts[GLOBAL_BATCH] = global_batch(cfg)
    facts["trainer.val_check_interval"] = validation_cadence(cfg)
    facts["seed"] = _plain(OmegaConf.select(cfg, "seed", default=None))
    return {key: value for key, value in facts.items() if key not in OPERATIONAL}


def global_batch(cfg: DictConfig) -> int | None:
    """Sequences or images per optimizer step over all devices: the recipe's batch.global_size, which the trainer
    is checked to reach (config/global_batch.py); else the product of the trainer's shape (None where it is not a count)."""
    if OmegaConf.select(cfg, "batch.global_size", default=None) is not None:
        return stated_global_batch(cfg)
    parts = [OmegaConf.select(cfg, key, default=None) for key in
             ("data.batch_size", "trainer.accumulate_grad_batches", "trainer.devices", "trainer.num_nodes")]  # fmt: skip
    if not all(isinstance(p, int) and not isinstance(p, bool) for p in parts):
        return None
    batch, accumulate, devices, nodes = parts
    return batch * accumulate * devices * nodes


def validation_cadence(cfg: DictConfig) -> Any:
    """trainer.val_check_interval in optimizer steps (Lightning counts micro-batches, which vary with the world
    size); a fraction of an epoch or null as it is."""
    interval = _plain(OmegaConf.select(cfg, "trainer.val_check_interval", default=None))
    accumulate = OmegaConf.select(cfg, "trainer.accumulate_grad_batches", default=1)
    if isinstance(interval, bool) or not isinstance(interval, int) or not isinstance(accumulate, int):
        return interval
    return interval / accumulate if interval % accumulate else interval // accumulate


def differences(run: Mapping[str, Any], reference: Mapping[str, Any], ignore=frozenset({"seed"})) -> dict[str, list]:
    """key -> [reference value, run value] where the two definitions differ."""
    keys = (set(run) | set(reference)) - set(ignore)
    missing = object()
    out = {}
    for key in sorted(keys):
        ours, theirs = run.get(key, missing), reference.get(key, missing)
        if ours != theirs:
            out[key] = [None if theirs is missing else theirs, None if ours is missing else ours]
    return out


def describe(deviations: Mapping[str, list], limit: int | None = 4) -> str:
    """'attention.name: softmax -> mha, trainer.max_steps: 300 -> 3' (the first `limit` keys; None: all)."""
    items = list(deviations.items())[:limit] if limit is not None else list(deviations.items())
    parts = [f"{key}: {ref!r} -> {ours!r}" for key, (ref, ours) in items]
    more = len(deviations) - len(items)
    return ", ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def debug_flags(cfg: DictConfig | Mapping, debug_choice: str | None) -> list[str]:
    """Why a run is a debugging run (never a table number): the debug group, fast_dev_run, overfit_batches."""
    cfg = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(dict(cfg))
    flags = [f"debug={debug_choice}"] if debug_choice else []
    if OmegaConf.select(cfg, "trainer.fast_dev_run", default=False):
        flags.append("trainer.fast_dev_run")
    if OmegaConf.select(cfg, "trainer.overfit_batches", default=0):
        flags.append("trainer.overfit_batches")
    return flags


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def flat(config: Mapping) -> dict[str, Any]:
    """{"a.b": value} of a nested mapping (lists stay values)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        _flatten(str(key), value, out)
    return out


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping) and value:
        for key, item in value.items():
            _flatten(f"{prefix}.{key}", item, out)
    else:
        out[prefix] = value
