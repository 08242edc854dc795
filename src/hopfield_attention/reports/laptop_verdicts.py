"""The paper's claims at laptop scale as verdicts (make paper-small): the reading study's fingerprints scored on
paper-small's own runs under the default reading, and token uniformity from `analyze`, by the study's one rule
(reports/readings.py), rendered as the README's generated block."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .collect import collect_local
from .publish import analysis_stage, newest_analyses
from .readings import (
    FINGERPRINTS,
    Arm,
    difference,
    effect,
    index_runs,
    score_reading,
    verdict,
)
from .readings_report import MARK, arm_text, claim_text, state_effects

# analyze labels a run by its paper column (configs/experiment/laptop_lm_depth12_*)
SOFTMAX, MHA, CONTROL = "softmax", "MHA alpha=0.5", "MHA alpha=0.5, alpha'=0 (control)"
UNIFORMITY_PAPER = "MHA keeps tokens apart: less rank collapse than softmax (GPT-2 Medium, layers 12 and 24)"


def uniformity(log_dir: str | Path) -> dict:
    """Per stage (init, trained): the deepest layer's mean token cosine of every analysed run, by attention kind,
    and the claim MHA - softmax < 0 (MHA's tokens less alike) with its control."""
    arms: dict[str, dict[str, Arm]] = {}
    deepest = 0
    for result in newest_analyses(Path(log_dir)):
        deepest = max(deepest, len(result["layers"]))
    for result in newest_analyses(Path(log_dir)):
        if len(result["layers"]) != deepest:
            continue
        arm = arms.setdefault(analysis_stage(result), {}).setdefault(result["kind"], Arm())
        arm.values.append(float(result["layers"][-1]["cos_mean"]))
    out = {"layer": deepest, "stages": {}}
    for stage, kinds in arms.items():
        if SOFTMAX not in kinds or MHA not in kinds:
            continue
        diff = difference(kinds[MHA], kinds[SOFTMAX])
        entry = {"arms": {kind: arm.summary() for kind, arm in kinds.items()}, **diff,
                 "verdict": verdict(diff["d"], diff["se"], float("-inf"), 0.0)}  # fmt: skip
        if CONTROL in kinds:
            entry["state"] = effect(kinds[MHA], kinds[CONTROL])
        out["stages"][stage] = entry
    return out


def laptop_verdicts(log_dir: str | Path, reading: str, budget: str | None) -> dict:
    """Every fingerprint with runs in `log_dir` (paper-small's log dir), under `reading`, and token uniformity."""
    index = index_runs(collect_local(Path(log_dir) / "multiruns").records)
    scored = score_reading(index, reading, budget)
    with_runs = {key: result for key, result in scored.items()
                 if all(arm["n"] for arm in result["arms"].values())}  # fmt: skip
    return {"reading": reading, "budget": budget or "recipe", "fingerprints": with_runs,
            "uniformity": uniformity(log_dir)}  # fmt: skip


def reused(report: Mapping) -> str:
    """How many of the runs came finished from earlier sweeps under the log dir (the reading study's)."""
    count = report.get("reused_runs") or 0
    return (
        f"; {count} runs reused, finished already under its log_dir with the same definition and seed" if count else ""
    )


def laptop_summary(report: Mapping, rule_link: str) -> str:
    """The README block from paper-small's report (results/paper_small.json): one row per claim, our arms, the
    verdict by the study's rule, the state's own effect."""
    verdicts, machine, git = report["verdicts"], report["machine"], report["git"]
    lines = [
        f"The committed run: {report['seconds'] / 60:.1f} min on {machine['cpu_count']} CPUs ({machine['platform']}), "
        f"commit {str(git.get('commit'))[:7]}{' (dirty)' if git.get('dirty') else ''}, seeds {report['settings']['seeds']}"
        f"{reused(report)}. "
        f"Under the default reading `{verdicts['reading']}`, test split, mean ± std (n) over seeds; d ± 2 se and "
        f"the verdict by [the reading study's rule]({rule_link}).",
        "",
        "| claim | paper | ours | verdict | the state's own effect |",
        "|---|---|---|---|---|",
    ]
    for fingerprint in FINGERPRINTS:
        result = verdicts["fingerprints"].get(fingerprint.key)
        if result is None:
            continue
        arms = "; ".join(f"`{name}` {arm_text(arm)}" for name, arm in result["arms"].items())
        diffs = ", ".join(claim_text(claim) for claim in result["claims"])
        lines.append(f"| {fingerprint.title} | {fingerprint.paper} | {arms} | {MARK[result['verdict']]}: "
                     f"d = {diffs} | {state_effects(result)} |")  # fmt: skip
    layer = verdicts["uniformity"]["layer"]
    for stage, entry in sorted(verdicts["uniformity"]["stages"].items()):
        arms = "; ".join(f"{kind} {arm_text(arm)}" for kind, arm in entry["arms"].items())
        state = entry.get("state")
        said = (
            "no control"
            if state is None
            else (f"{claim_text(state)} ({'matters' if state['counts'] else 'no difference'})")
        )
        lines.append(f"| Token uniformity, layer {layer} {'at initialization' if stage == 'init' else 'after training'}"
                     f": MHA's tokens less alike (lower mean cosine) | {UNIFORMITY_PAPER} | {arms} | "
                     f"{MARK[entry['verdict']]}: d = {claim_text(entry)} | {said} |")  # fmt: skip
    return "\n".join(lines) + "\n"
