"""Evaluate a checkpoint: `python -m hopfield_attention.eval ckpt_path=<file> [split=val] [overrides]`.

The checkpoint carries its run's config, so model, attention and data need no flags. `data.*` keys set
here (e.g. data.local_path=<local copy>, data.eval_batch_size=64; other keys with `+data.<key>=`)
replace the run's for this evaluation. Writes <eval run dir>/eval.json and prints the metrics.
"""

from __future__ import annotations

from pathlib import Path

from hydra.utils import instantiate
from lightning.fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from .cli.app import hydra_command, instantiate_all
from .config.schema import check_options
from .runs.atomic import write_json
from .tasks import check_context, load_task


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Metrics of `cfg.ckpt_path` on `cfg.split` of its run's data (with `cfg.data` overrides applied)."""
    check_options(cfg, "eval")  # the options' types and ranges, the trainer and loggers as training checks them
    module, run_cfg = load_task(cfg.ckpt_path)
    overrides = {
        key: value for key, value in OmegaConf.to_container(cfg.data, resolve=True).items() if value is not None
    }
    data_cfg = OmegaConf.merge(run_cfg.data, overrides)
    if run_cfg.task == "language_modeling":
        check_context(run_cfg.model, data_cfg.block_size)
    datamodule = instantiate(data_cfg)
    trainer = instantiate(cfg.trainer, logger=instantiate_all(cfg.get("logger")) or False)
    run = trainer.test if cfg.split == "test" else trainer.validate
    metrics = {key: float(value) for key, value in run(module, datamodule=datamodule)[0].items()}
    write_report(cfg, run_cfg, metrics)
    return metrics


@rank_zero_only
def write_report(cfg: DictConfig, run_cfg: DictConfig, metrics: dict[str, float]) -> None:
    report = {
        "ckpt_path": str(Path(cfg.ckpt_path).resolve()),
        "split": cfg.split,
        "experiment": run_cfg.experiment,
        "paper": OmegaConf.to_container(run_cfg.paper),
        "metrics": metrics,
    }
    path = Path(cfg.paths.output_dir) / "eval.json"
    write_json(path, report)  # atomic; a full disk is reported with the path
    print(f"metrics written to {path}")


main = hydra_command("eval")(evaluate)

if __name__ == "__main__":
    main()
