"""Train one configuration: `python -m hopfield_attention.train experiment=<name> [overrides]`.

Reads top to bottom: resolve the config; take the run directory (one owner at a time, runs/lock.py); check the
config; decide what the directory means (a fresh run, a resume, or a finished run: runs/resume.py); record
the run; build data, task, callbacks, loggers and trainer; fit; test with the best checkpoint; return the
metrics. A failure ends in one short message (cli/app.py) and a `failed` record; SIGTERM and SIGINT stop at a safe
point with a checkpoint (runs/signals.py) and an `interrupted` record.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from .attention.variants import AttentionVariant
from .backbones.build import attention_variant, check_model_config
from .cli.app import hydra_command, instantiate_all, save_config
from .cli.sweep_checks import check_local_sweep
from .config import resolvers  # noqa: F401  (registers the ha.* resolvers of the configs)
from .config.locations import CONFIG_DIR, SOURCE_CHECKOUT  # noqa: F401  (re-exported for scripts and tests)
from .config.schema import check_schema
from .reports.tables import known_tables
from .runs.cell import cell_facts
from .runs.checkpoint_io import AtomicCheckpointIO, remove_stale_temporaries
from .runs.csv_history import SaveLogsWithCheckpoints
from .runs.heartbeat import Heartbeat
from .runs.lock import RunLock
from .runs.record import (
    continue_record,
    mark_ended,
    new_record,
    results_path,
    write_record,
    write_without_masking,
)
from .runs.recorder import RunRecorder
from .runs.resume import checkpoint_config, plan_run, same_run, saved_config_guard
from .runs.signals import GracefulStop
from .tasks import build_task, task_class
from .tasks.resume import ResumeRNG
from .tasks.speed import switch_on

DEPTH_KEYS = ("n_layer", "num_hidden_layers", "depth")
# Set by the launchers that start one process per node (SLURM's srun, torchrun).
MULTI_NODE_VARIABLES = ("SLURM_JOB_ID", "NODE_RANK", "GROUP_RANK", "MASTER_ADDR")


def hydra_choices() -> dict:
    """The config group choices of this run (debug=..., budget=...), when Hydra composed it."""
    return dict(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else {}


def check_config(cfg: DictConfig) -> AttentionVariant:
    """Fail before any data is touched: each message names the key and what is allowed. Returns the run's
    attention variant, built and validated here once and handed to the task as an object."""
    task_class(cfg.task)
    check_model_config(cfg.model)
    variant = attention_variant(cfg.attention)  # a bad name or value fails here, before any model is built
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int):
        raise ValueError(f"seed must be an integer, got {cfg.seed!r}")
    for key in DEPTH_KEYS:
        depth = cfg.model.get(key)
        if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 1):
            raise ValueError(f"model.{key} must be an integer >= 1 (blocks of the model), got {depth!r}")
    threads = cfg.get("threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be null (torch's default) or an integer >= 1, got {threads!r}")
    for key in ("max_steps", "max_epochs"):
        value = cfg.trainer.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value == 0 or value < -1):
            raise ValueError(f"trainer.{key} must be a positive integer or -1 (no limit), got {value!r}")
    tables = known_tables()
    if cfg.paper.table is not None and str(cfg.paper.table) not in tables:
        raise ValueError(
            f"paper.table must be null or one of {sorted(tables)} (results/*.yaml), got {cfg.paper.table!r}"
        )
    if cfg.task == "linear_probe":
        if not cfg.pretrained_ckpt:
            raise ValueError("task linear_probe needs pretrained_ckpt=<checkpoint of a Table 4 run, e.g. "
                             "logs/runs/t4_vit_base_imagenet1k_mha_a0.5/<time>/checkpoints/last.ckpt>")  # fmt: skip
        checkpoint_config(cfg.pretrained_ckpt, key="pretrained_ckpt")
    if cfg.ckpt_path is not None:
        checkpoint_config(cfg.ckpt_path)
    check_schema(cfg)  # every other key: types from the targets' signatures, ranges, rules between keys
    check_launch(cfg)
    return variant


def check_launch(cfg: DictConfig) -> None:
    """How the run was started: several nodes need a launcher that starts them; a SLURM launcher needs a sweep;
    a local sweep cannot run multi-device DDP."""
    nodes = cfg.trainer.get("num_nodes", 1)
    if isinstance(nodes, int) and nodes > 1 and not any(v in os.environ for v in MULTI_NODE_VARIABLES):
        raise ValueError(f"trainer.num_nodes={nodes} needs a launcher that starts a process on every node (SLURM: "
                         "-m hydra/launcher=slurm or sbatch slurm/train.sbatch; or torchrun); here it would wait "
                         "for the other nodes forever")  # fmt: skip
    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    launcher = hydra_cfg.runtime.choices.get("hydra/launcher")
    if hydra_cfg.mode == RunMode.RUN and launcher == "slurm":
        raise ValueError("hydra/launcher=slurm submits sweeps: add -m (python -m hopfield_attention.train -m "
                         "hydra/launcher=slurm ...), or submit one run with sbatch slurm/train.sbatch")  # fmt: skip
    if hydra_cfg.mode == RunMode.MULTIRUN:
        check_local_sweep(cfg, launcher)


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


@contextlib.contextmanager
def owned(run_dir: Path, chief: bool):
    """The run directory held by this run: its lock and heartbeat (global rank 0; other ranks only read)."""
    if not chief:
        yield
        return
    with RunLock(run_dir), Heartbeat(run_dir):
        remove_stale_temporaries(run_dir)
        yield


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit and test the run described by `cfg` (a composed config); returns the last logged metrics of fit
    (train/*, val/*) and of test (test/*, with the best checkpoint)."""
    OmegaConf.resolve(cfg)  # one value for every interpolation, kept by the run dir and the checkpoint
    run_dir = Path(cfg.paths.output_dir)
    chief = rank_zero_only.rank == 0
    record_path = results_path(run_dir)
    with owned(run_dir, chief):
        try:
            variant = check_config(cfg)
            cell = cell_facts(cfg, hydra_choices())
            plan = plan_run(run_dir, cell["definition"], cfg.ckpt_path)
        except Exception as error:
            if chief and not record_path.exists():  # never overwrite the record of the directory's earlier run
                record = new_record(cfg, {})
                mark_ended(record, error)
                write_without_masking(record_path, record)
            raise
        for path, why in plan.skipped:
            print(f"warning: not resuming from {path}: {why}", file=sys.stderr)
        if plan.action == "finished":
            print(f"{run_dir}: finished already (its results.json); nothing to do", file=sys.stderr)
            return dict(plan.previous.get("metrics") or {})
        same = plan.previous and not same_run(
            cell["definition"], (plan.previous.get("cell") or {}).get("definition", {})
        )
        record = continue_record(new_record(cfg, cell), plan.previous if same else None)
        record["resumed"] = plan.resume_facts()
        if plan.action == "resume":
            print(f"resuming from {plan.ckpt_path}" + (f" (step {plan.step})" if plan.step is not None else ""),
                  file=sys.stderr)  # fmt: skip
        if chief:
            print_config(cfg)
            with saved_config_guard(run_dir, cfg):  # a hand edit of the earlier .hydra/config.yaml: kept, and said
                save_config(cfg)
            write_record(record_path, record)
        return _fit_and_test(cfg, variant, record, record_path, plan.ckpt_path, chief)


def _fit_and_test(
    cfg: DictConfig, variant: AttentionVariant, record: dict, record_path: Path, ckpt_path: str | None, chief: bool
) -> dict:
    try:
        if cfg.get("threads"):
            torch.set_num_threads(int(cfg.threads))  # local sweeps run several jobs at once: a core each
        L.seed_everything(cfg.seed, workers=True)
        datamodule = instantiate(cfg.data)
        module = build_task(cfg, datamodule, variant)
        stop = GracefulStop(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt")
        callbacks = instantiate_all(cfg.get("callbacks")) + [ResumeRNG(), stop, SaveLogsWithCheckpoints(),
                                                             RunRecorder(record, record_path)] + switch_on(cfg, module)  # fmt: skip
        loggers = instantiate_all(cfg.get("logger"))
        trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False,
                                         plugins=[AtomicCheckpointIO()])  # fmt: skip
    except Exception as error:
        mark_ended(record, error)
        if chief:
            write_without_masking(record_path, record)
        raise
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
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


main = hydra_command("train")(train)

if __name__ == "__main__":
    main()
