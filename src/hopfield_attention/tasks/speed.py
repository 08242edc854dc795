"""The speed switches of a run (`speed:` in configs/train.yaml): how fast it computes, not what.

    tf32                      float32 matmuls in TF32 on CUDA (torch.set_float32_matmul_precision("high")):
                              the fp32 work under bf16 autocast too, e.g. the MHA state's q k^T, which the
                              attention paths keep in fp32. Off: "highest". The CPU is never touched.
    activation_checkpointing  each block's activations recomputed in backward: transformers'
                              activation_checkpointing_enable(use_reentrant=False), timm's set_grad_checkpointing.
                              The converted models carry their state through non-reentrant re-runs
                              (backbones/state.py) and refuse reentrant ones.
    compile                   torch.compile of the backbone in place (nn.Module.compile: the state dict, and so
                              every checkpoint, keeps its keys), with speed.compile_options as its keywords.
    throughput_window         Lightning's ThroughputMonitor over that many batches: samples/s (sequences or
                              images), tokens/s, FLOPs/s and, on a GPU whose peak Lightning knows, MFU (FLOPs per
                              sample, the attention variant's own work per implementation included:
                              tasks/flops.py). null: not measured.

Fused AdamW is an optimizer option (optim.optimizer.fused, tasks/optim.py). `switch_on` applies the switches
to a built task and returns the callbacks that go with them; train.py calls it where it builds the trainer.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ThroughputMonitor
from lightning.pytorch.trainer.states import RunningStage
from omegaconf import DictConfig, OmegaConf

from .base import Task

SPEED_KEYS = {"compile", "compile_options", "tf32", "activation_checkpointing", "throughput_window"}


def speed_settings(cfg: DictConfig) -> dict[str, Any]:
    """The `speed:` block with its defaults (a checkpoint's config from before it existed has none)."""
    given = OmegaConf.to_container(cfg.get("speed") or OmegaConf.create({}), resolve=True)
    unknown = sorted(set(given) - SPEED_KEYS)
    if unknown:
        raise ValueError(f"speed: unknown key(s) {unknown}; allowed: {sorted(SPEED_KEYS)}")
    settings = {"compile": False, "compile_options": {}, "tf32": True, "activation_checkpointing": False,
                "throughput_window": 20, **given}  # fmt: skip
    for key in ("compile", "tf32", "activation_checkpointing"):
        if not isinstance(settings[key], bool):
            raise ValueError(f"speed.{key} must be true or false, got {settings[key]!r}")
    window = settings["throughput_window"]
    if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 2):
        raise ValueError(f"speed.throughput_window must be an integer >= 2 (batches) or null (off), got {window!r}")
    return settings


def uses_cuda(accelerator: Any) -> bool:
    """Whether a trainer of this accelerator runs on CUDA in this process."""
    accelerator = str(accelerator).lower()
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def matmul_precision(tf32: bool, on_cuda: bool) -> str | None:
    """The float32 matmul precision to set, or None to leave it (never on the CPU, where "high" could mean
    bf16-based matmuls)."""
    if not on_cuda:
        return None
    return "high" if tf32 else "highest"


def enable_activation_checkpointing(model: torch.nn.Module) -> None:
    if hasattr(model, "activation_checkpointing_enable"):  # transformers 5 (formerly gradient_checkpointing_enable)
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    elif hasattr(model, "gradient_checkpointing_enable"):  # earlier transformers
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    elif hasattr(model, "set_grad_checkpointing"):  # timm
        model.set_grad_checkpointing(True)
    else:
        raise ValueError(f"speed.activation_checkpointing: {type(model).__name__} supports neither transformers' "
                         "nor timm's activation checkpointing")  # fmt: skip


class TrainingThroughput(ThroughputMonitor):
    """Lightning's ThroughputMonitor, logging the training stage only.

    It logs validation and test throughput at their own batch counters as steps, which would run the logged
    steps backwards (the CSV history of a resumed run is trimmed at its first logged step; W&B drops steps that
    go back). Those stages are still timed, so their time is kept out of the training rate. Overriding the
    private `_compute` is the one way: the callback has no option for it.
    """

    def _compute(self, trainer: L.Trainer, iter_num: int | None = None) -> None:
        if trainer.state.stage == RunningStage.TRAINING:
            super()._compute(trainer, iter_num)


def switch_on(cfg: DictConfig, module: Task) -> list[L.Callback]:
    """Apply the speed switches to `module` (its backbone `module.model`) and to this process; return the
    callbacks that measure it."""
    settings = speed_settings(cfg)
    precision = matmul_precision(settings["tf32"], uses_cuda(cfg.trainer.get("accelerator", "auto")))
    if precision is not None:
        torch.set_float32_matmul_precision(precision)
    if settings["activation_checkpointing"]:
        enable_activation_checkpointing(module.model)
    if settings["compile"]:
        module.model.compile(**settings["compile_options"])
    if settings["throughput_window"] is None:
        return []
    return [TrainingThroughput(batch_size_fn=module.samples_in, length_fn=module.tokens_in,
                               window_size=settings["throughput_window"])]  # fmt: skip
