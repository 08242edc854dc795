"""Regenerate the paper's tables (and the run figures) from the runs present.

    python -m hopfield_attention.tables                       # results.json under <repo>/logs
    python -m hopfield_attention.tables runs_dir=/scratch/logs
    python -m hopfield_attention.tables source=wandb project=hopfield-attention entity=my-team
    python -m hopfield_attention.tables figures=false out_dir=/tmp/tables

Arguments are key=value overrides of `TablesConfig` (Hydra's override syntax, no Hydra run directory).
Writes results/tables/table_<id>.{md,tex} and README.md; with figures=true also results/figures/.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from hopfield_attention.results.collect import collect_local, collect_wandb
from hopfield_attention.results.paths import project_root
from hopfield_attention.results.publish import write_tables
from hopfield_attention.results.tables import build_tables, load_paper_numbers

log = logging.getLogger("hopfield_attention.tables")
SOURCES = ("local", "wandb")


@dataclass
class TablesConfig:
    source: str = "local"  # local: results.json files under runs_dir; wandb: the runs of a W&B project
    runs_dir: str | None = None  # default <repo>/logs (searched recursively)
    project: str | None = None  # W&B project, for source=wandb
    entity: str | None = None  # W&B entity (team or user); default: your W&B default entity
    paper_numbers: str | None = None  # default <repo>/results/paper_numbers.yaml
    out_dir: str | None = None  # default <repo>/results/tables
    figures: bool = True  # also draw the run figures (Table 6, Table 7, cosine violins)
    figures_dir: str | None = None  # default <repo>/results/figures


def main(argv: list[str] | None = None) -> list[Path]:
    args = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in args):
        print(__doc__)
        return []
    cfg: TablesConfig = OmegaConf.to_object(
        OmegaConf.merge(OmegaConf.structured(TablesConfig), OmegaConf.from_dotlist(args))
    )
    if cfg.source not in SOURCES:
        raise ValueError(f"source must be one of {list(SOURCES)}, got {cfg.source!r}")
    need_root = None in (cfg.paper_numbers, cfg.out_dir) or (cfg.figures and cfg.figures_dir is None) or (
        cfg.source == "local" and cfg.runs_dir is None
    )
    root = project_root() if need_root else None
    if cfg.source == "wandb":
        records = collect_wandb(cfg.project, cfg.entity)
        where = f"W&B project `{cfg.entity + '/' if cfg.entity else ''}{cfg.project}`"
    else:
        runs_dir = Path(cfg.runs_dir) if cfg.runs_dir else root / "logs"
        if cfg.runs_dir is None and not runs_dir.exists():
            log.warning("no runs yet: %s does not exist; every cell is shown as missing", runs_dir)
            records = []
        else:
            records = collect_local(runs_dir)
        where = f"`{cfg.runs_dir}`" if cfg.runs_dir else "`logs/`"
    paper_numbers = load_paper_numbers(cfg.paper_numbers or root / "results" / "paper_numbers.yaml")
    tables = build_tables(records, paper_numbers)
    outside = sum(1 for r in records if (r.get("paper") or {}).get("table") is None)
    written = write_tables(tables, cfg.out_dir or root / "results" / "tables", source=where, outside_tables=outside)
    if cfg.figures:
        from hopfield_attention.results.publish import write_run_figures

        runs_dir = None if cfg.source == "wandb" else (Path(cfg.runs_dir) if cfg.runs_dir else root / "logs")
        written += write_run_figures(records, paper_numbers, cfg.figures_dir or root / "results" / "figures",
                                     analysis_dir=runs_dir)  # fmt: skip
    log.info("%d runs -> %d files", len(records), len(written))
    for path in written:
        print(path)
    return written


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    main()
