"""The paper's claims at laptop scale: `python -m hopfield_attention.paper_small` (make paper-small).

Runs, through the ordinary entry points and in this order: `prepare` for the two data sets (so parallel jobs
never build a cache at once), one sweep per claim (`train -m sweep=laptop_lm|laptop_ablation|laptop_depth`, seeds
as configured, `jobs` at a time on the local joblib launcher), `analyze` of the deepest language models at
initialization and after training (token uniformity), and `tables` (tables and figures). Every command is printed
before it runs; the machine, the commands and their durations go to `report` (results/paper_small.json). Started
again, the sweeps run only the jobs that did not finish. Options: configs/paper_small.yaml.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from .cli.app import hydra_command
from .cli.pipeline import local_sweep, machine, run
from .config.locations import CONFIG_DIR, SOURCE_CHECKOUT
from .reports.generated import write_block
from .reports.laptop_verdicts import laptop_summary, laptop_verdicts
from .reports.readings import default_reading
from .runs.atomic import write_json
from .runs.provenance import git_state, utc_now
from .runs.record import RESULTS_FILE, read_record

# The sweep whose deepest models are analysed, and the data each claim reads (prepared once, before the sweeps).
LANGUAGE_SWEEP = "laptop_lm"
PREPARE = ("laptop_lm_depth2_softmax", "laptop_depth1_softmax")


def check_options(cfg: DictConfig) -> None:
    """Every option, before any work starts: one message naming the option, the value and what is allowed."""

    def integer(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    seeds = OmegaConf.to_container(cfg.seeds) if OmegaConf.is_list(cfg.seeds) else cfg.seeds
    if not isinstance(seeds, list) or not seeds or not all(integer(seed) for seed in seeds):
        raise ValueError(f"seeds must be a non-empty list of integers, e.g. seeds=[1,2,3], got {seeds!r}")
    for key in ("jobs", "analysis_batches"):
        if not integer(cfg[key]) or cfg[key] < 1:
            raise ValueError(f"{key} must be an integer >= 1, got {cfg[key]!r}")
    if not isinstance(cfg.quick, bool):
        raise ValueError(f"quick must be true or false, got {cfg.quick!r}")
    known = sorted(path.stem for path in (CONFIG_DIR / "sweep").glob("*.yaml"))
    sweeps = OmegaConf.to_container(cfg.sweeps) if OmegaConf.is_list(cfg.sweeps) else cfg.sweeps
    if not isinstance(sweeps, list) or not sweeps or any(sweep not in known for sweep in sweeps):
        raise ValueError(f"sweeps must be a non-empty list of configs/sweep/ names, got {sweeps!r}; "
                         f"allowed: {', '.join(known)}")  # fmt: skip


def passed_paths(cfg: DictConfig) -> list[str]:
    """The paths.* of this command, for every command it starts: their data, caches and logs go where ours do."""
    paths = {key: cfg.paths[key] for key in ("work_dir", "data_dir", "cache_dir")}
    return [f"paths.{key}={value}" for key, value in paths.items()] + [f"paths.log_dir={cfg.log_dir}"]


def paper_small(cfg: DictConfig) -> dict:
    check_options(cfg)
    seeds = [int(seed) for seed in cfg.seeds]
    budget = "quick" if cfg.quick else None
    common = passed_paths(cfg) + ([f"budget={budget}"] if budget else [])
    steps: list[dict] = []
    started = time.monotonic()
    # Read before the pipeline rewrites its own committed outputs (results/), which would mark the code dirty.
    code = git_state(SOURCE_CHECKOUT)
    for experiment in PREPARE:
        steps.append(run("prepare", f"experiment={experiment}", *common))
    for sweep in cfg.sweeps:
        steps.append(run("train", "-m", f"sweep={sweep}", *local_sweep(cfg.jobs, seeds), *common))
    checkpoints = deepest_checkpoints(Path(cfg.log_dir) / "multiruns" / LANGUAGE_SWEEP, budget)
    if checkpoints:
        quoted = ",".join(f"'{path}'" for path in checkpoints)  # job directories are named "key=value,..."
        steps.append(run("analyze", f"ckpt_path=[{quoted}]", f"n_batches={cfg.analysis_batches}", *passed_paths(cfg)))
    steps.append(run("tables", f"runs_dir={cfg.log_dir}", f"out_dir={cfg.tables_dir}", f"figures_dir={cfg.figures_dir}",
                     *passed_paths(cfg)))  # fmt: skip
    report = {
        "what": "python -m hopfield_attention.paper_small " + " ".join(sys.argv[1:]),
        "settings": OmegaConf.to_container(cfg, resolve=True),
        "machine": machine(),
        "git": code,
        "finished_at": utc_now(),
        "seconds": round(time.monotonic() - started, 1),
        "steps": steps,
        # the claims as verdicts, under the default reading, by the reading study's rule
        "verdicts": laptop_verdicts(cfg.log_dir, default_reading(), budget),
    }
    write_json(cfg.report, report)
    if cfg.readme and Path(cfg.readme).is_file():  # a work directory outside a checkout has no README
        readme = Path(cfg.readme)
        write_block(
            readme,
            "paper at laptop scale",
            os.path.relpath(cfg.report, readme.parent),
            laptop_summary(report, os.path.relpath(Path(cfg.tables_dir) / "readings.md", readme.parent)),
        )
    print(f"\npaper-small: {report['seconds'] / 60:.1f} min in all; report {cfg.report}", flush=True)
    return report


def deepest_checkpoints(sweep_dir: Path, budget: str | None) -> list[Path]:
    """The initial and the best (tested) checkpoint of every finished run of the deepest models in the sweep."""
    records = []
    for path in sorted(sweep_dir.glob(f"*/{RESULTS_FILE}")):
        try:
            record = read_record(path)
        except (OSError, ValueError) as error:  # listed, never fatal: `tables` lists it too
            print(f"warning: skipped {error}", file=sys.stderr)
            continue
        qualifiers = (record.get("cell") or {}).get("qualifiers") or {}
        if (
            record["status"] == "finished"
            and qualifiers.get("budget") == budget
            and (record.get("model") or {}).get("n_layer")
        ):
            records.append((path.parent, record))
    if not records:
        return []
    deepest = max(record["model"]["n_layer"] for _, record in records)
    found = []
    for run_dir, record in records:
        if record["model"]["n_layer"] != deepest:
            continue
        best = (record.get("checkpoint") or {}).get("best_model_path")
        found += (
            [run_dir / "checkpoints" / "init.ckpt", Path(best)] if best else [run_dir / "checkpoints" / "init.ckpt"]
        )
    return [path for path in found if path.is_file()]


main = hydra_command("paper_small")(paper_small)

if __name__ == "__main__":
    main()
