"""LightningModules for the paper's tasks, chosen by the run config's `task` key."""

from __future__ import annotations

from omegaconf import DictConfig

from ..attention.variants import AttentionVariant
from .base import Task
from .checkpoint import load_task
from .image_classification import ImageClassificationTask
from .language_modeling import LanguageModelingTask
from .linear_probe import LinearProbeTask

TASKS: dict[str, type[Task]] = {
    "language_modeling": LanguageModelingTask,
    "image_classification": ImageClassificationTask,
    "linear_probe": LinearProbeTask,
}


def task_class(name: str) -> type[Task]:
    if name not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {name!r}")
    return TASKS[name]


def check_context(model_cfg, block_size: int) -> None:
    """A language model sees at most its context (position embeddings) at once: longer blocks are refused."""
    context = model_cfg.get("n_positions", model_cfg.get("max_position_embeddings"))
    if context is not None and int(block_size) > int(context):
        raise ValueError(
            f"data.block_size={block_size} exceeds model {model_cfg.get('name')!r}'s context of {context} tokens; "
            f"set data.block_size <= {context}"
        )


def build_task(cfg: DictConfig, datamodule, attention: AttentionVariant | None = None) -> Task:
    """The task module of `cfg`, sized by the datamodule (vocabulary, or classes and image size), with the run's
    attention variant (None: built from cfg.attention)."""
    cls = task_class(cfg.task)
    if cls is LanguageModelingTask:
        check_context(cfg.model, datamodule.block_size)
        return cls(cfg, attention=attention, vocab_size=int(datamodule.vocab_size))
    return cls(cfg, attention=attention, num_classes=int(datamodule.num_classes), image_size=int(datamodule.image_size))


__all__ = ["TASKS", "Task", "LanguageModelingTask", "ImageClassificationTask", "LinearProbeTask",
           "build_task", "check_context", "load_task", "task_class"]  # fmt: skip
