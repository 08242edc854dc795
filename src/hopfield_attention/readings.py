"""The reading study: `python -m hopfield_attention.readings` (make readings).

Runs, through the ordinary entry points: `prepare` for the two data sets, the softmax sweep every reading shares
(`train -m sweep=readings_softmax`), then the MHA sweeps with the readings as one more axis (`train -m
sweep=readings_lm|readings_vit|readings_depth reading=<a>,<b>,...`), 2 jobs at a time on the joblib launcher, and
the controls where a reading's MHA differs from softmax (`sweep=readings_controls`). It scores every reading
against the paper's fingerprints (reports/readings.py: the rule, the controls, the default). It writes
results/readings.json, its Markdown report, the verdict grid and the README's account of it (a generated block).

`stage=long` (make readings-long), after the main study: the deep language model again at four times the steps
(budget=lm_4x), softmax and the readings the default was decided between (or `long_readings`), scored again into
the same files with its own time and commit. A main study run again keeps that section while it still scores the
readings the default is decided between.

`screen_only` readings run the deciding fingerprint (the deep language model) alone and cannot become the default
until their other fingerprints have run. Started again, the sweeps run only the jobs that did not finish.
`render_only=true` writes the report, the figure and the README block again from results/readings.json;
`rescore=true` scores again from the runs under log_dir. Neither trains. Options: configs/readings.yaml."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from .cli.app import hydra_command
from .cli.pipeline import local_sweep, machine, passed_paths, run
from .config.locations import SOURCE_CHECKOUT
from .config.readings import available_readings, reading_choices
from .reports.collect import collect_local
from .reports.generated import write_block
from .reports.readings import (
    DECIDING,
    FINGERPRINTS,
    choose_default,
    index_runs,
    needed_controls,
    score_reading,
)
from .reports.readings_report import summary, write_report
from .runs.atomic import write_json
from .runs.provenance import git_state, utc_now

PREPARE = ("laptop_lm_depth2_softmax", "laptop_depth1_softmax")
MHA_SWEEPS = ("readings_lm", "readings_vit", "readings_depth")
DECIDING_SWEEP = "readings_lm"  # the deep language model: run for every reading, screened ones included
LONG_BUDGET = "lm_4x"
LONG_EXPERIMENTS = ("laptop_lm_depth12_softmax", "laptop_lm_depth12_mha")
LONG_FINGERPRINTS = tuple(f for f in FINGERPRINTS if f.key == DECIDING)  # what the longer runs score again
README_BLOCK = "reading study"
# main: the study itself (its budget: 90 min on 2 CPUs); long: the deep language model at 4x the steps, after it
STAGES = ("main", "long")


def check_options(cfg: DictConfig) -> tuple[list[str], list[int], list[str]]:
    """Every option checked before any work starts."""
    known = available_readings()
    readings = [str(name) for name in cfg.readings]
    unknown = [name for name in readings if name not in known]
    if not readings or unknown:
        raise ValueError(f"readings must name configs/reading/ files {known}, got {readings}")
    screened = [str(name) for name in cfg.screen_only]
    if set(screened) - set(readings) or set(screened) >= set(readings):
        raise ValueError(f"screen_only must name some, not all, of readings {readings}, got {screened}")
    seeds = [int(seed) for seed in cfg.seeds]
    if not seeds or int(cfg.jobs) < 1:
        raise ValueError(f"seeds must name at least one seed and jobs be >= 1, got seeds={seeds}, jobs={cfg.jobs}")
    if cfg.stage not in STAGES:
        raise ValueError(f"stage must be one of {list(STAGES)}, got {cfg.stage!r}")
    long_readings = [] if cfg.long_readings is None else [str(name) for name in cfg.long_readings]
    if cfg.stage == "long" and (cfg.quick or set(long_readings) - set(readings)):
        raise ValueError(f"stage=long runs the full recipe (quick=false) for long_readings within readings {readings}, "
                         f"got quick={cfg.quick}, long_readings={long_readings}")  # fmt: skip
    return readings, seeds, long_readings


def readings(cfg: DictConfig) -> dict:
    names, seeds, long_readings = check_options(cfg)
    if cfg.render_only:
        study = json.loads(Path(cfg.out).read_text(encoding="utf-8"))
        publish(study, cfg)
        return study
    if cfg.rescore:
        return rescore(cfg)
    if cfg.stage == "long":
        return long_stage(cfg, long_readings)
    budget = "quick" if cfg.quick else None
    common = passed_paths(cfg) + ([f"budget={budget}"] if budget else [])
    sweep = local_sweep(int(cfg.jobs), seeds)
    code = git_state(SOURCE_CHECKOUT)  # read before the study rewrites its committed outputs
    started = time.monotonic()
    steps = [run("prepare", f"experiment={experiment}", *common) for experiment in PREPARE]
    steps.append(run("train", "-m", "sweep=readings_softmax", *sweep, *common))
    full = [name for name in names if name not in cfg.screen_only]
    for name in MHA_SWEEPS:  # the deciding fingerprint's sweep for every reading, the rest for the full ones
        swept = names if name == DECIDING_SWEEP else full
        steps.append(run("train", "-m", f"sweep={name}", f"reading={','.join(swept)}", *sweep, *common))
    index, unreadable = study_runs(cfg.log_dir)
    for name in full:  # the controls, where the reading's MHA differs from softmax
        controls = needed_controls(score_reading(index, name, budget))
        if controls:
            steps.append(run("train", "-m", "sweep=readings_controls", f"experiment={','.join(controls)}",
                             f"reading={name}", *sweep, *common))  # fmt: skip
    index, unreadable = study_runs(cfg.log_dir)
    scores = {name: score_reading(index, name, budget) for name in names}
    default = choose_default({name: scores[name] for name in full}, incumbent=names[0])
    study = {
        "readings": {name: reading_choices(name) for name in names},
        "screened": [name for name in names if name not in full],
        "main": {"budget": budget or "recipe", "readings": scores},
        "default": default,
    }
    study["run"] = run_record(cfg, steps, seeds, code, started, by_stage(index, "main"))
    study["unreadable"] = unreadable
    kept_long(study, cfg.out)
    write_json(cfg.out, study)
    publish(study, cfg)
    print(f"\nreadings: {study['run']['minutes']:.1f} min in all; {cfg.out}", flush=True)
    return study


def long_stage(cfg: DictConfig, long_readings: list[str]) -> dict:
    """The deep language model again at four times the steps (budget=lm_4x): softmax and the readings the main
    study's default was decided between (or `long_readings`), scored by the same rule into the study's "long"
    section, with what ran and how long apart from the main study's."""
    out = Path(cfg.out)
    if not out.is_file():
        raise ValueError(f"stage=long scores the main study's deciding fingerprint again: run the main study first "
                         f"(make readings), {out} does not exist")  # fmt: skip
    study = json.loads(out.read_text(encoding="utf-8"))
    long_readings = long_readings or study["default"]["between"]
    seeds = [int(seed) for seed in (cfg.long_seeds or cfg.seeds)]
    code = git_state(SOURCE_CHECKOUT)
    started = time.monotonic()
    long = [*passed_paths(cfg), f"budget={LONG_BUDGET}", *local_sweep(int(cfg.jobs), seeds)]
    steps = [run("train", "-m", "sweep=readings_lm_long", f"experiment={LONG_EXPERIMENTS[0]}", *long),
             run("train", "-m", "sweep=readings_lm_long", f"experiment={LONG_EXPERIMENTS[1]}",
                 f"reading={','.join(long_readings)}", *long)]  # fmt: skip
    index, unreadable = study_runs(cfg.log_dir)
    study["long"] = {
        "budget": LONG_BUDGET,
        "seeds": seeds,
        "readings": {name: score_reading(index, name, LONG_BUDGET, LONG_FINGERPRINTS) for name in long_readings},
        "run": run_record(cfg, steps, seeds, code, started, by_stage(index, "long")),
    }
    study["unreadable"] = unreadable
    write_json(cfg.out, study)
    publish(study, cfg)
    print(f"\nreadings, stage long: {study['long']['run']['minutes']:.1f} min; {cfg.out}", flush=True)
    return study


def kept_long(study: dict, out: str) -> None:
    """The longer runs' section of an earlier study in `out`, kept where it scored the readings this study's
    default was decided between (a main study run again does not lose them); dropped, and said, otherwise."""
    path = Path(out)
    earlier = json.loads(path.read_text(encoding="utf-8")).get("long") if path.is_file() else None
    if not earlier:
        return
    if set(earlier["readings"]) >= set(study["default"]["between"]):
        study["long"] = earlier
    else:
        print(
            f"readings: the longer runs in {out} scored {sorted(earlier['readings'])}, not the readings the default "
            f"is now decided between {study['default']['between']}: dropped; run stage=long again",
            flush=True,
        )


def rescore(cfg: DictConfig) -> dict:
    """The study scored again from the runs under log_dir, without training: what ran (the command, its steps and
    time) is kept from `out`, the scores, the default and the runs' own time are recomputed (the longer runs' too)."""
    study = json.loads(Path(cfg.out).read_text(encoding="utf-8"))
    index, unreadable = study_runs(cfg.log_dir)
    budget = "quick" if cfg.quick else None
    full = [name for name in study["readings"] if name not in study.get("screened", [])]
    scores = {name: score_reading(index, name, budget) for name in study["readings"]}
    study["main"]["readings"] = scores
    study["default"] = choose_default({name: scores[name] for name in full}, incumbent=next(iter(study["readings"])))
    study["run"]["runs_minutes"] = runs_minutes(by_stage(index, "main"), int(cfg.jobs))
    if study.get("long"):
        long = study["long"]
        long["readings"] = {
            name: score_reading(index, name, LONG_BUDGET, LONG_FINGERPRINTS) for name in long["readings"]
        }
        long["run"]["runs_minutes"] = runs_minutes(by_stage(index, "long"), int(cfg.jobs))
    study["unreadable"] = unreadable
    write_json(cfg.out, study)
    publish(study, cfg)
    return study


def by_stage(index, stage: str) -> dict:
    """The runs of one stage: the longer runs are those of the long budget, the main study's all others."""

    def long(record) -> bool:
        return ((record.get("cell") or {}).get("qualifiers") or {}).get("budget") == LONG_BUDGET

    picked = {key: [r for r in records if long(r) == (stage == "long")] for key, records in index.items()}
    return {key: records for key, records in picked.items() if records}


def runs_minutes(index, jobs: int) -> float:
    """The study's training time as its runs recorded it: their wall times summed, over the jobs run at once."""
    return sum(float(record.get("wall_time_s") or 0.0) for runs in index.values() for record in runs) / jobs / 60


def run_record(cfg: DictConfig, steps: list, seeds: list, code: dict, started: float, index) -> dict:
    """What ran: the command, the machine, the code (the pipeline's commit, and every commit its runs recorded),
    and how long it took."""
    seconds = round(time.monotonic() - started, 1)
    run_commits = sorted({str((record.get("git") or {}).get("commit")) for runs in index.values() for record in runs})
    return {
        "command": "python -m hopfield_attention.readings " + " ".join(sys.argv[1:]),
        "settings": OmegaConf.to_container(cfg, resolve=True),
        "seeds": seeds,
        "machine": machine(),
        "git": code,
        "run_commits": run_commits,
        "finished_at": utc_now(),
        "seconds": seconds,
        "minutes": seconds / 60,
        "runs_minutes": runs_minutes(index, int(cfg.jobs)),
        "steps": list(steps),
    }


def publish(study: dict, cfg: DictConfig) -> None:
    """The report, the verdict grid and, when `readme` is set, the README's generated account of the study."""
    written = write_report(study, cfg.report, cfg.figure)
    if cfg.readme and Path(cfg.readme).is_file():  # a work directory outside a checkout has no README
        link = os.path.relpath(cfg.report, Path(cfg.readme).parent)
        write_block(cfg.readme, README_BLOCK, os.path.relpath(cfg.out, Path(cfg.readme).parent), summary(study, link))
        written.append(Path(cfg.readme))
    print("readings: wrote " + ", ".join(map(str, written)), flush=True)


def study_runs(log_dir: str) -> tuple[dict, list]:
    """The study's finished runs by definition, and the results.json files that could not be read."""
    records = collect_local(Path(log_dir) / "multiruns")
    return index_runs(records.records), records.unreadable


main = hydra_command("readings")(readings)

if __name__ == "__main__":
    main()
