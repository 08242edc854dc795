"""Regenerate the tables (and the run figures) from the runs present: `python -m hopfield_attention.tables`.

    python -m hopfield_attention.tables                         # every results.json under logs/
    python -m hopfield_attention.tables runs_dir=/scratch/logs figures=false out_dir=/tmp/tables
    python -m hopfield_attention.tables source=wandb project=hopfield-attention entity=my-team

Options: configs/tables.yaml (Hydra overrides). Writes results/tables/table_<id>.{md,tex} and README.md, and
with figures=true results/figures/. A results.json that cannot be read is skipped and listed.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from .cli.app import hydra_command
from .config.schema import check_options
from .reports.collect import collect_local, collect_wandb
from .reports.publish import write_run_figures, write_tables, write_uniformity_tables
from .reports.tables import build_tables, load_paper_numbers

log = logging.getLogger("hopfield_attention.tables")


def tables(cfg: DictConfig) -> list[Path]:
    check_options(cfg, "tables")  # the options' types and ranges
    if cfg.source == "wandb":
        found = collect_wandb(cfg.project, cfg.entity)
        where = f"W&B project `{cfg.entity + '/' if cfg.entity else ''}{cfg.project}`"
    elif not Path(cfg.runs_dir).exists():
        raise ValueError(f"runs_dir {cfg.runs_dir!r} does not exist (no runs yet? train one first, or point "
                         "runs_dir= at the directory holding the run folders)")  # fmt: skip
    else:
        found = collect_local(cfg.runs_dir)
        where = f"`{cfg.runs_dir}`"
    for path, why in found.unreadable:
        log.warning("skipped unreadable %s: %s", path, why)
    specs = load_paper_numbers(cfg.paper_numbers)
    built = build_tables(found.records, specs)
    outside = sum(1 for record in found.records if (record.get("paper") or {}).get("table") is None)
    written = write_tables(built, cfg.out_dir, source=where, outside_tables=outside, unreadable=found.unreadable)
    if cfg.source == "local":
        written += write_uniformity_tables(cfg.runs_dir, cfg.out_dir)
    if cfg.figures:
        analysis_dir = None if cfg.source == "wandb" else cfg.runs_dir
        written += write_run_figures(found.records, specs, cfg.figures_dir, analysis_dir=analysis_dir)
    log.info("%d runs -> %d files", len(found.records), len(written))
    for path in written:
        print(path)
    return written


main = hydra_command("tables")(tables)

if __name__ == "__main__":
    main()
