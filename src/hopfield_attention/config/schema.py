"""The training config checked as a whole before any work: types, ranges and the rules between keys.

Types come from the code itself, so a key nobody listed is covered too: every section built by Hydra's
`instantiate` (trainer, data, callbacks.*, logger.*) is checked key by key against the type annotations of its
`_target_`'s signature (Lightning's Trainer says which precisions exist, which types devices may have, ...).
Ranges that no annotation states are in RANGES; rules between keys in `cross_checks`. Each error is one line
naming the key, the value and what is allowed.

The other commands' own options (configs/eval.yaml, analyze.yaml, tables.yaml) are checked the same way before
the command does any work, by `check_options`: each option's type and range (COMMAND_OPTIONS), a device that this
machine has (`check_device`), and for eval, whose trainer and loggers are instantiated, `check_schema` as well.
"""

from __future__ import annotations

import collections.abc
import inspect
import os
import types
import typing
from typing import Any, Literal, Union

import torch
from hydra.utils import get_method
from omegaconf import DictConfig, OmegaConf

SECTIONS = ("trainer", "data")
GROUPS = ("callbacks", "logger")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# key: (valid, what is allowed); keys absent from a config are not checked.
RANGES = {
    "optim.optimizer.lr": (lambda v: _number(v) and v > 0, "a number > 0"),
    "optim.optimizer.eps": (lambda v: _number(v) and v > 0, "a number > 0"),
    "optim.optimizer.weight_decay": (lambda v: _number(v) and v >= 0, "a number >= 0"),
    "optim.scheduler.warmup_steps": (lambda v: _count(v) and v >= 0, "an integer >= 0"),
    "optim.scheduler.total_steps": (lambda v: v is None or (_count(v) and v >= 1), "null or an integer >= 1"),
    "batch.global_size": (lambda v: v is None or (_count(v) and v >= 1), "null or an integer >= 1"),
    "batch.per_device": (lambda v: v is None or (_count(v) and v >= 1), "null or an integer >= 1"),
    "trainer.gradient_clip_val": (lambda v: v is None or (_number(v) and v >= 0), "null or a number >= 0"),
}
# Precisions Lightning accepts on the CPU without silently changing them (it trains "16-mixed" in bf16 there).
CPU_PRECISIONS = ("32-true", "32", "64-true", "64", "bf16-mixed", "bf16-true", "bf16")
# (heads key, width key) pairs of the model families
HEADS = (("n_head", "n_embd"), ("num_attention_heads", "hidden_size"), ("num_heads", "embed_dim"))


def _optional_text(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _one_of(*choices: str) -> tuple:
    return (lambda v: v in choices, "one of " + ", ".join(repr(c) for c in choices))


NULL_OR_TEXT = (_optional_text, "null or a path/name")
TEXT = (lambda v: isinstance(v, str) and v != "", "a non-empty path/name")
FLAG = (lambda v: isinstance(v, bool), "true or false")
# A command's own options: key -> (valid, what is allowed); keys absent from a config are not checked. The
# messages keep the commands' own form: "<key> must be <allowed>, got <value>".
COMMAND_OPTIONS: dict[str, dict[str, tuple]] = {
    "analyze": {
        "n_batches": (lambda v: _count(v) and v >= 1, "an integer >= 1"),
        "samples_per_batch": (lambda v: _count(v) and v >= 0, "an integer >= 0"),
        "seed": (lambda v: _count(v) and v >= 0, "an integer >= 0"),
        "split": _one_of("val", "test"),
        "attention_entropy": FLAG,
        "out_dir": NULL_OR_TEXT,
    },
    "eval": {
        "split": _one_of("test", "val"),
        "data.block_size": (lambda v: v is None or (_count(v) and v >= 2), "null or an integer >= 2"),
        "data.eval_batch_size": (lambda v: v is None or (_count(v) and v >= 1), "null or an integer >= 1"),
        "data.num_workers": (lambda v: v is None or (_count(v) and v >= 0), "null or an integer >= 0"),
        "data.local_path": NULL_OR_TEXT,
        "data.cache_dir": NULL_OR_TEXT,
    },
    "tables": {
        "source": _one_of("local", "wandb"),
        "runs_dir": TEXT,
        "project": NULL_OR_TEXT,
        "entity": NULL_OR_TEXT,
        "paper_numbers": NULL_OR_TEXT,
        "out_dir": TEXT,
        "figures": FLAG,
        "figures_dir": TEXT,
    },
}
DEVICES = "auto, cpu, cuda or cuda:<index>"


def check_options(cfg: DictConfig, command: str) -> None:
    """A command's options (configs/<command>.yaml) before it does any work; one line naming the key, the value
    and what is allowed."""
    for key, (valid, allowed) in COMMAND_OPTIONS[command].items():
        value = OmegaConf.select(cfg, key, default="<absent>")
        if value != "<absent>" and not valid(value):
            raise ValueError(f"{key} must be {allowed}, got {value!r}")
    if OmegaConf.select(cfg, "device", default=None) is not None:
        check_device(cfg.device)
    if command == "eval":
        check_schema(cfg)


def check_device(value: Any, key: str = "device") -> torch.device:
    """The torch device `value` names ("auto": CUDA when available), if this machine has it; else one line naming
    the value and what is allowed here."""
    if value == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else None
    except (RuntimeError, TypeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"{key}={value!r}: must be {DEVICES}")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"{key}={value!r}: no CUDA GPU is available on this machine; allowed here: auto, cpu")
        if device.index is not None and device.index >= count:
            raise ValueError(f"{key}={value!r}: this machine has {count} CUDA GPU(s); allowed here: auto, cpu, cuda, "
                             f"cuda:0 to cuda:{count - 1}")  # fmt: skip
    return device


def check_schema(cfg: DictConfig) -> None:
    for section in SECTIONS:
        if OmegaConf.select(cfg, section) is not None:
            check_against_target(OmegaConf.select(cfg, section), section)
    for group in GROUPS:
        for name, entry in (OmegaConf.select(cfg, group) or {}).items():
            if entry is not None:
                check_against_target(entry, f"{group}.{name}")
    for key, (valid, allowed) in RANGES.items():
        value = OmegaConf.select(cfg, key, default="<absent>")
        if value != "<absent>" and not valid(value):
            raise ValueError(f"{key}={value!r}: must be {allowed}")
    cross_checks(cfg)


def check_against_target(section: DictConfig, prefix: str) -> None:
    target = section.get("_target_")
    if not target:
        return
    try:
        factory = get_method(target)
        hints = typing.get_type_hints(factory.__init__ if inspect.isclass(factory) else factory)
    except Exception:  # noqa: BLE001 - unresolvable annotations: the target's own checks remain
        return
    for key, value in section.items():
        if str(key).startswith("_") or key not in hints or OmegaConf.is_missing(section, key):
            continue
        plain = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
        if not conforms(plain, hints[key]):
            raise ValueError(f"{prefix}.{key}={plain!r}: must be {describe(hints[key])}")


def conforms(value: Any, hint: Any) -> bool:
    """Whether `value` (plain YAML data) fits annotation `hint`; True for what this cannot judge."""
    if hint is Any or hint is inspect.Parameter.empty:
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return any(conforms(value, arg) for arg in args)
    if origin is Literal:
        return value in args
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return _count(value)
    if hint is float:
        return _number(value)
    if hint is str:
        return isinstance(value, str)
    if hint in (os.PathLike,) or (inspect.isclass(hint) and issubclass(hint, os.PathLike)):
        return isinstance(value, str)
    container = origin or hint
    if container in (list, tuple, collections.abc.Sequence):
        return isinstance(value, (list, tuple)) and (not args or all(conforms(v, args[0]) for v in value))
    if container in (dict, collections.abc.Mapping):
        return isinstance(value, dict)
    return True  # a class of the library (a callback object, a plugin): not something YAML can give


def describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        shown = list(dict.fromkeys(describe(arg) for arg in args))
        if "an integer" in shown and "a number" in shown:
            shown.remove("an integer")
        return " or ".join(shown)
    if origin is Literal:
        return "one of " + ", ".join(repr(arg) for arg in args)
    if hint is type(None):
        return "null"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        hint, getattr(hint, "__name__", str(hint)).replace("Sequence", "list").replace("Mapping", "dict")
    )


def cross_checks(cfg: DictConfig) -> None:
    model = cfg.get("model") or {}
    for heads_key, width_key in HEADS:
        heads, width = model.get(heads_key), model.get(width_key)
        if _count(heads) and _count(width) and heads >= 1 and width % heads:
            raise ValueError(
                f"model.{heads_key}={heads}: must divide model.{width_key}={width} (the width is "
                f"split among the heads); allowed: {[d for d in range(1, width + 1) if width % d == 0]}"
            )
    trainer = cfg.get("trainer") or {}
    scheduler = OmegaConf.select(cfg, "optim.scheduler") or {}
    total, steps = scheduler.get("total_steps"), trainer.get("max_steps")
    if _count(total) and _count(steps) and steps > total:
        raise ValueError(f"optim.scheduler.total_steps={total} is below trainer.max_steps={steps}: the schedule must "
                         f"cover the run (set total_steps >= {steps}, or null for max_steps)")  # fmt: skip
    precision, accelerator = str(trainer.get("precision")), trainer.get("accelerator")
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    if on_cpu and precision not in CPU_PRECISIONS:
        raise ValueError(f"trainer.precision={precision!r} is not supported on the CPU (Lightning would train in "
                         f"bf16 instead); allowed there: 32-true, 64-true, bf16-mixed, bf16-true")  # fmt: skip
    checkpoint = OmegaConf.select(cfg, "callbacks.model_checkpoint")
    if checkpoint is not None and checkpoint.get("monitor") and trainer.get("limit_val_batches") == 0:
        raise ValueError(f"trainer.limit_val_batches=0 turns validation off, but callbacks.model_checkpoint keeps the "
                         f"best checkpoint by {checkpoint.monitor!r}; allow validation batches, or set "
                         "callbacks.model_checkpoint.monitor=null")  # fmt: skip
