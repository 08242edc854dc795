"""The reading study rendered: a Markdown report and a verdict grid (figure) from results/readings.json."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ..runs.atomic import atomic_file  # noqa: E402
from .readings import FINGERPRINTS, RULE  # noqa: E402

MARK = {"agrees": "✓ agrees", "disagrees": "✗ disagrees", "inconclusive": "· inconclusive", "not run": "– not run"}
COLOUR = {"agrees": "#55A868", "disagrees": "#C44E52", "inconclusive": "#BBBBBB", "not run": "#F2F2F2"}


def timing(meta: Mapping) -> str:
    """How long the study took: the command's wall clock, and the runs' own time where they ran over several
    invocations (a sweep started again trains only what did not finish)."""
    said = f"{meta['minutes']:.0f} min for the command"
    if meta.get("runs_minutes"):
        said += f", {meta['runs_minutes']:.0f} min of training as the runs recorded it (their wall time over the jobs)"
    return said


def number(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def arm_text(arm: Mapping) -> str:
    """mean ± std (n)."""
    if not arm["n"]:
        return "no runs"
    std = "" if arm["std"] is None else f" ± {arm['std']:.2f}"
    return f"{arm['mean']:.2f}{std} ({arm['n']})"


def ran(result: Mapping) -> bool:
    """Whether the claims' own arms (A, an MHA arm) have runs: a screened reading's have not, while softmax's, and
    a control that is softmax itself, do."""
    return any(result["arms"][claim["a"]]["n"] for claim in result["claims"])


def claim_text(claim: Mapping) -> str:
    se = "" if claim["se"] is None else f" ± {2 * claim['se']:.2f}"
    return f"{number(claim['d'])}{se}"


def verdict_table(study: Mapping, budget: str = "main") -> list[str]:
    fingerprints = [f for f in FINGERPRINTS if f.key in next(iter(study[budget]["readings"].values()))]
    lines = ["| reading | " + " | ".join(f.title for f in fingerprints) + " | agrees |",
             "|---|" + "---|" * len(fingerprints) + "---:|"]  # fmt: skip
    lines.append("| *paper* | " + " | ".join(f.paper for f in fingerprints) + " | |")
    for reading, scored in study[budget]["readings"].items():
        cells = []
        for fingerprint in fingerprints:
            result = scored[fingerprint.key]
            if not ran(result):
                cells.append("not run")
                continue
            diffs = ", ".join(claim_text(claim) for claim in result["claims"])
            cells.append(f"{MARK[result['verdict']]} (d = {diffs})")
        count = sum(1 for f in fingerprints if scored[f.key]["verdict"] == "agrees")
        lines.append(f"| `{reading}` | " + " | ".join(cells) + f" | {count} of {len(fingerprints)} |")
    return lines


def arms_tables(study: Mapping, budget: str = "main") -> list[str]:
    readings = study[budget]["readings"]
    lines: list[str] = []
    for fingerprint in FINGERPRINTS:
        first = next(iter(readings.values())).get(fingerprint.key)
        if first is None:
            continue
        arms = list(first["arms"])
        lines += ["", f"**{fingerprint.title}** (test {fingerprint.metric}; paper: {fingerprint.paper})", "",
                  "| reading | " + " | ".join(f"`{arm}`" for arm in arms) + " |", "|---|" + "---:|" * len(arms)]  # fmt: skip
        for reading, scored in readings.items():
            cells = [arm_text(scored[fingerprint.key]["arms"][arm]) for arm in arms]
            lines.append(f"| `{reading}` | " + " | ".join(cells) + " |")
    return lines


def attribution_table(study: Mapping, budget: str = "main") -> list[str]:
    readings = study[budget]["readings"]
    columns = [(f.key, i, c) for f in FINGERPRINTS for i, c in enumerate(next(iter(readings.values()))
               .get(f.key, {}).get("controls", []))]  # fmt: skip
    if not columns:
        return []
    lines = ["| reading | " + " | ".join(f"`{c['mha']}`" for _, _, c in columns) + " |",
             "|---|" + "---|" * len(columns)]  # fmt: skip
    for reading, scored in readings.items():
        cells = []
        for key, i, _ in columns:
            control = scored[key]["controls"][i]
            if not ran(scored[key]):
                cells.append("not run")
                continue
            if control["state"] is None:
                cells.append(control["cause"])
                continue
            softmax_itself = " (control: softmax itself)" if control.get("control_is_softmax") else ""
            cells.append(f"{control['cause']}: state {claim_text(control['state'])}, "
                         f"residual {claim_text(control['residual'])}{softmax_itself}")  # fmt: skip
        lines.append(f"| `{reading}` | " + " | ".join(cells) + " |")
    return lines


def render_markdown(study: Mapping) -> str:
    meta = study["run"]
    lines = [
        "# The reading study",
        "",
        f"Which reading of the paper's open choices reproduces its own numbers, at laptop scale. Generated by "
        f"`{meta['command']}` ({timing(meta)} on {meta['machine']['cpu_count']} CPUs, "
        f"{meta['machine']['platform']}; commit {meta['git'].get('commit', '?')[:7]}"
        f"{', dirty' if meta['git'].get('dirty') else ''}; seeds {meta['seeds']}). Test split; d is the difference "
        "of means with ± 2 se.",
        "",
        "Readings (configs/reading/): "
        + "; ".join(
            f"`{name}`: " + ", ".join(f"{k}={v}" for k, v in choices.items())
            for name, choices in study["readings"].items()
        ),
        "",
        f"**Rule.** {RULE}",
        "",
        "## Verdicts",
        "",
        *verdict_table(study),
        *(
            [
                "",
                "Screened (the deciding fingerprint only, not eligible as the default until the rest runs): "
                + ", ".join(f"`{name}`" for name in study["screened"])
                + ".",
            ]
            if study.get("screened")
            else []
        ),
        "",
        f"**Default:** `{study['default']['reading']}` ({study['default']['why']}; agreements and the deep "
        f"language model's verdict per reading: {study['default']['rank']}).",
        "",
        "## What causes each difference from softmax (controls at alpha' = 0)",
        "",
        *attribution_table(study),
        "",
        "## Every arm: mean ± std (n)",
        *arms_tables(study),
    ]
    if study.get("long"):
        long = study["long"]
        lines += ["", f"## Longer training: {long['budget']} (the deep language model)", ""]
        if long.get("run"):
            meta = long["run"]
            lines += [f"Generated by `{meta['command']}` ({timing(meta)} on {meta['machine']['cpu_count']} CPUs; "
                      f"commit {meta['git'].get('commit', '?')[:7]}{', dirty' if meta['git'].get('dirty') else ''}; "
                      f"seeds {meta['seeds']}).", ""]  # fmt: skip
        lines += [*verdict_table(study, "long"), *arms_tables(study, "long")]
    return "\n".join(lines) + "\n"


def verdict_grid(study: Mapping) -> Figure:
    readings = list(study["main"]["readings"])
    fingerprints = [f for f in FINGERPRINTS if f.key in study["main"]["readings"][readings[0]]]
    fig, ax = plt.subplots(figsize=(1.2 * len(fingerprints) + 2.5, 0.6 * len(readings) + 1.8), layout="constrained")
    for r, reading in enumerate(readings):
        for c, fingerprint in enumerate(fingerprints):
            scored = study["main"]["readings"][reading][fingerprint.key]
            result = scored["verdict"] if ran(scored) else "not run"
            ax.add_patch(plt.Rectangle((c, r), 0.95, 0.9, color=COLOUR[result], gid=f"{reading}|{fingerprint.key}"))
            ax.text(c + 0.47, r + 0.45, MARK[result].split()[0], ha="center", va="center", fontsize=12)
    ax.set_xlim(0, len(fingerprints))
    ax.set_ylim(len(readings), 0)
    ax.set_xticks([c + 0.47 for c in range(len(fingerprints))], [f.key for f in fingerprints], rotation=30, ha="right")
    ax.set_yticks([r + 0.45 for r in range(len(readings))], readings)
    ax.set_title("Readings against the paper's fingerprints (green agrees, red disagrees, grey inconclusive, pale not run)",
                 fontsize=9)  # fmt: skip
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    return fig


def state_effects(result: Mapping) -> str:
    """The hidden state's own effect in a fingerprint (MHA against the same reading at alpha' = 0)."""
    if not result["controls"]:
        return "no control (MHA against MHA)"
    return ", ".join(state_text(c) for c in result["controls"])


def state_text(control: Mapping) -> str:
    if control["state"] is None:
        return control["cause"]
    said = f"{claim_text(control['state'])} ({'matters' if control['state']['counts'] else 'no difference'})"
    return said + (" (control: softmax itself)" if control.get("control_is_softmax") else "")


def summary(study: Mapping, report_link: str) -> str:
    """The README's first-screen account of the study: the default reading and, in numbers, what was found."""
    default = study["default"]["reading"]
    scores = study["main"]["readings"]
    counts = {name: sum(1 for r in scored.values() if r["verdict"] == "agrees") for name, scored in scores.items()}
    total = len(next(iter(scores.values())))
    choices = ", ".join(f"{k}={v}" for k, v in study["readings"][default].items())
    screened = study.get("screened") or []
    others = ", ".join(f"`{name}` {count}" for name, count in counts.items() if name not in (default, *screened))
    if screened:
        others += (
            ("; " if others else "")
            + "screened on the 12-layer language model alone: "
            + ", ".join(
                f"`{name}` {scores[name]['lm12']['verdict']} (d = {claim_text(scores[name]['lm12']['claims'][0])})"
                for name in screened
            )
        )
    meta = study["run"]
    lines = [
        f"**Default reading: `{default}`** ({choices}), {study['default']['why']}: it agrees with "
        f"{counts[default]} of the paper's {total} fingerprints at laptop scale; {others} "
        f"([the reading study]({report_link}): {len(meta['seeds'])} seeds, 2-SE rule, "
        f"{timing(meta)} on {meta['machine']['cpu_count']} CPUs). Differences are d ± 2 se.",
        "",
        f"| fingerprint | paper | `{default}` | the state's own effect (alpha' = 0.5 against 0) |",
        "|---|---|---|---|",
    ]
    for fingerprint in FINGERPRINTS:
        result = scores[default].get(fingerprint.key)
        if result is None:
            continue
        diffs = ", ".join(claim_text(claim) for claim in result["claims"])
        lines.append(f"| {fingerprint.title} | {fingerprint.paper} | {MARK[result['verdict']]}: d = {diffs} | "
                     f"{state_effects(result)} |")  # fmt: skip
    lines += ["", state_sentence(scores, default)]
    if study.get("long"):
        long = study["long"]["readings"]
        said = "; ".join(f"`{name}` {MARK[scored['lm12']['verdict']].split(' ', 1)[1]} "
                         f"(d = {claim_text(scored['lm12']['claims'][0])})" for name, scored in long.items())  # fmt: skip
        ran = f" ({timing(study['long']['run'])})" if study["long"].get("run") else ""
        lines += ["", f"At four times the steps ({study['long']['budget']}, {len(study['long']['seeds'])} seeds"
                      f"{ran}) the 12-layer language model gives: {said}."]  # fmt: skip
    return "\n".join(lines) + "\n"


def state_sentence(scores: Mapping, default: str) -> str:
    """Where the hidden state itself matters: the controls (alpha' = 0) under the default and over every reading."""

    def tally(names) -> tuple[int, int, int]:
        measured = [c for name in names for r in scores[name].values() for c in r["controls"] if c["state"]]
        state = sum(1 for c in measured if c["state"]["counts"])
        residual = sum(1 for c in measured if c["residual"]["counts"])
        return len(measured), state, residual

    n, state, residual = tally([default])
    n_all, state_all, residual_all = tally(scores)
    return (f"The hidden state itself (alpha' = 0.5 against 0 in the same reading) differs beyond 2 se in {state} of "
            f"the {n} controlled comparisons under `{default}`, and in {state_all} of {n_all} over all readings; the "
            f"residual (the control against softmax) in {residual} of {n} and {residual_all} of {n_all}.")  # fmt: skip


def write_report(study: Mapping, markdown_path: str | Path, figure_path: str | Path) -> list[Path]:
    markdown_path, figure_path = Path(markdown_path), Path(figure_path)
    markdown_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(markdown_path) as handle:
        handle.write(render_markdown(study))
    figure = verdict_grid(study)
    figure_path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(figure_path, dpi=120)
    plt.close(figure)
    return [markdown_path, figure_path]
