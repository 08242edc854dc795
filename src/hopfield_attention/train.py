"""Train one configuration: `python -m hopfield_attention.train experiment=<name> [overrides]`.

Reads top to bottom: print and save the resolved config, check it, seed, build data, task, callbacks,
loggers and trainer, fit (resuming from `ckpt_path` when given), test with the best checkpoint, return
the metrics. Configs live in <repository>/configs (found from this file; HOPFIELD_ATTENTION_CONFIG_DIR
points elsewhere, e.g. for a non-editable install); `--config-dir` adds a directory of your own.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import hydra
import lightning as L
from hydra.utils import instantiate
from lightning.fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from . import resolvers  # noqa: F401  (registers the ha.* resolvers of configs/sweep and hydra/launcher)
from .cluster import resume_checkpoint_for
from .data.errors import DatasetUnavailableError
from .backbones.build import attention_variant, check_model_config
from .results.record import RunRecorder, write_failure_record
from .tasks import build_task, task_class
from .tasks.resume import ResumeRNG

REPOSITORY_DIR = Path(__file__).resolve().parents[2]
CONFIG_DIR = Path(os.environ.get("HOPFIELD_ATTENTION_CONFIG_DIR") or REPOSITORY_DIR / "configs")
# configs/paths/default.yaml puts data caches and logs under this root.
os.environ.setdefault("HOPFIELD_ATTENTION_ROOT", str(REPOSITORY_DIR))

PAPER_TABLES = (None, "1", "2", "3", "4", "5", "6a", "6b", "7", "quickstart")


def check_config(cfg: DictConfig) -> None:
    """Fail before any data is touched: unknown task, model or attention, bad alpha, missing probe weights."""
    task_class(cfg.task)
    check_model_config(cfg.model)
    attention_variant(cfg.attention)  # ValueError naming a bad name or value, before any model is built
    if cfg.paper.table not in PAPER_TABLES:
        raise ValueError(f"paper.table must be one of {PAPER_TABLES}, got {cfg.paper.table!r}")
    if cfg.task == "linear_probe" and not (cfg.pretrained_ckpt and Path(cfg.pretrained_ckpt).is_file()):
        raise ValueError(
            "task linear_probe needs pretrained_ckpt=<checkpoint of a Table 4 run, e.g. "
            f"logs/runs/t4_vit_base_imagenet1k_mha_a0.5/<time>/checkpoints/last.ckpt>, got {cfg.pretrained_ckpt!r}"
        )
    if cfg.ckpt_path is not None and not Path(cfg.ckpt_path).is_file():
        raise ValueError(f"ckpt_path {cfg.ckpt_path!r} is not a file")


@rank_zero_only
def print_config(cfg: DictConfig) -> None:
    """The resolved config as a tree, one branch per group, so a log shows exactly what ran."""
    from rich import print as rich_print
    from rich.syntax import Syntax
    from rich.tree import Tree

    tree = Tree("config", guide_style="dim")
    for key, value in cfg.items():
        text = OmegaConf.to_yaml(value) if isinstance(value, DictConfig) else str(value)
        tree.add(str(key)).add(Syntax(text.rstrip(), "yaml", theme="ansi_dark"))
    rich_print(tree)


@rank_zero_only
def save_config(cfg: DictConfig) -> None:
    """The resolved config beside Hydra's own record, as <run dir>/.hydra/config.yaml."""
    path = Path(cfg.paths.output_dir) / ".hydra" / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, path)


def instantiate_all(group: DictConfig | None) -> list:
    """The instantiated entries of a dict of configs (callbacks, loggers); null entries are switched off."""
    return [instantiate(entry) for entry in (group or {}).values() if entry is not None]


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit and test the run described by `cfg` (a composed config); returns the last logged metrics of fit
    (train/*, val/*) and of test (test/*, with the best checkpoint)."""
    OmegaConf.resolve(cfg)  # one value for every interpolation, kept by the run dir and the checkpoint
    print_config(cfg)
    save_config(cfg)
    try:
        check_config(cfg)
        L.seed_everything(cfg.seed, workers=True)
        datamodule = instantiate(cfg.data)
        module = build_task(cfg, datamodule)
        callbacks = instantiate_all(cfg.get("callbacks")) + [ResumeRNG(), RunRecorder(cfg)]
        loggers = instantiate_all(cfg.get("logger"))
        trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    except Exception as exc:
        write_failure_record(cfg, exc)
        raise
    try:
        # A requeued SLURM job continues from its run dir's newest checkpoint (cluster.py), else ckpt_path.
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_checkpoint_for(cfg))
        metrics = {key: float(value) for key, value in trainer.callback_metrics.items()}
        if cfg.test:
            best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
            trainer.test(module, datamodule=datamodule, ckpt_path=best or None)
            metrics.update({key: float(value) for key, value in trainer.callback_metrics.items()})
        return metrics
    finally:
        if "wandb" in sys.modules:  # so that jobs of one sweep never share a W&B run
            import wandb

            wandb.finish()


@contextmanager
def missing_data_exits() -> Iterator[None]:
    """A dataset missing while offline ends the command with its message alone and status 1.

    The message names the dataset and how to supply a local copy; the traceback through Lightning's
    fit would only bury it. The run's results.json already says "failed" (RunRecorder).
    """
    try:
        yield
    except DatasetUnavailableError as error:
        print(f"Error: {error}", file=sys.stderr)
        raise SystemExit(1) from None


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def main(cfg: DictConfig) -> None:
    with missing_data_exits():
        train(cfg)


if __name__ == "__main__":
    main()
