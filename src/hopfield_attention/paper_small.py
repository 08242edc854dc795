"""The paper's claims at laptop scale: `python -m hopfield_attention.paper_small` (make paper-small).

Runs, through the ordinary entry points and in this order: `prepare` for the two data sets (so parallel jobs
never build a cache at once), one sweep per claim (`train -m sweep=laptop_lm|laptop_ablation|laptop_depth`, seeds
as configured, `jobs` at a time on the local joblib launcher), `analyze` of the deepest language models at
initialization and after training (token uniformity), and `tables` (tables and figures). A cell and seed that
already has a finished run under log_dir computing the same definition (the reading study's, with
log_dir=<its log dir>) is not trained again; the report counts them. Every command is printed
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
from .cli.pipeline import local_sweep, machine, passed_paths, run, sweep_experiments
from .config.locations import CONFIG_DIR, SOURCE_CHECKOUT
from .config.readings import default_reading
from .reports.collect import collect_local
from .reports.generated import write_block
from .reports.laptop_verdicts import laptop_summary, laptop_verdicts
from .reports.readings import arm_definition, definition_key, finished_seeds, index_runs
from .runs.atomic import write_json
from .runs.provenance import git_state, utc_now

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
    reading = default_reading()
    index = finished_runs(cfg.log_dir)
    reused = 0
    for sweep in cfg.sweeps:
        # a run of the same definition and seed already under log_dir (another sweep's, e.g. the reading study's)
        # is this sweep's run: only the rest train, grouped by the seeds they lack
        missing: dict[tuple, list[str]] = {}
        for experiment in sweep_experiments(sweep):
            done = finished_seeds(index, experiment, reading, budget)
            reused += len(done & set(seeds))
            lacking = tuple(seed for seed in seeds if seed not in done)
            if lacking:
                missing.setdefault(lacking, []).append(experiment)
        for lacking, experiments in missing.items():
            steps.append(run("train", "-m", f"sweep={sweep}", f"experiment={','.join(experiments)}",
                             *local_sweep(cfg.jobs, list(lacking)), *common))  # fmt: skip
    index = finished_runs(cfg.log_dir)
    checkpoints = deepest_checkpoints(index, reading, budget)
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
        "reused_runs": reused,  # finished runs of the sweeps' cells found under log_dir, not trained again
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


def finished_runs(log_dir: str) -> dict:
    """The finished runs under log_dir by definition; none before the first sweep made the folder."""
    runs = Path(log_dir) / "multiruns"
    return index_runs(collect_local(runs).records) if runs.is_dir() else {}


def deepest_checkpoints(index, reading: str, budget: str | None) -> list[Path]:
    """The initial and the best (tested) checkpoint of every finished run of the language sweep's deepest models,
    under the reading and budget, whichever sweep ran them."""
    runs = []
    for experiment in sweep_experiments(LANGUAGE_SWEEP):
        runs += index.get(definition_key(arm_definition(experiment, reading, budget)), [])
    layered = [record for record in runs if (record.get("model") or {}).get("n_layer")]
    if not layered:
        return []
    deepest = max(record["model"]["n_layer"] for record in layered)
    found = []
    for record in layered:
        if record["model"]["n_layer"] != deepest:
            continue
        run_dir = Path(record["source"]).parent
        best = (record.get("checkpoint") or {}).get("best_model_path")
        found += [run_dir / "checkpoints" / "init.ckpt"] + ([Path(best)] if best else [])
    return [path for path in found if path.is_file()]


main = hydra_command("paper_small")(paper_small)

if __name__ == "__main__":
    main()
