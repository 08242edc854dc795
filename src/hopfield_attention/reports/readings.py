"""The reading study: which reading of the paper's open choices reproduces the paper's own numbers.

Each fingerprint is a claim the paper's tables make (a direction, not a number: the scale differs), written as
claims of the form "the difference A - B lies in an interval". One rule, stated once, turns our runs into a
verdict: with d the difference of the two arms' means and se = sqrt(s_A^2 / n_A + s_B^2 / n_B) (sample stds),
the claim **agrees** when [d - 2 se, d + 2 se] lies inside the interval, **disagrees** when it lies wholly
outside, and is **inconclusive** otherwise (also when an arm has fewer than two seeds). A fingerprint of several
claims agrees when all agree and disagrees when any disagrees.

Controls say what causes a difference from softmax: the same reading with alpha' = 0 (no state), run only where
the reading's MHA differs from softmax (beyond 2 se). Where a control computes softmax itself (no state, and the
reading's residual is the backbone's: e.g. no skip at all without skip connections), the softmax runs are its runs.
The state's effect is MHA - control, the residual's control - softmax; each counts where beyond 2 se of zero.

Arms are experiment files (configs/experiment/); a run is an arm's run when its recorded cell definition equals
the definition `train experiment=<arm> reading=<reading>` composes (seed aside), so softmax runs, which no reading
changes, serve every reading, and runs of different readings never mix.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..attention.residual import Residual
from ..attention.variants import build_attention
from ..config.resolvers import register_resolvers
from ..runs.cell import reference_definition
from .collect import metric_value
from .tables import not_filed_because

RULE = (
    "A claim 'A - B lies in (lo, hi)' agrees when [d - 2 se, d + 2 se] lies inside the interval, disagrees when it "
    "lies wholly outside, and is inconclusive otherwise (d: difference of the means; se = sqrt(s_A^2/n_A + "
    "s_B^2/n_B), sample stds over seeds; an arm with fewer than 2 seeds: inconclusive). A fingerprint of several "
    "claims agrees when all agree and disagrees when any disagrees. Attribution: the state's effect is MHA - "
    "control (the same reading at alpha' = 0), the residual's is control - softmax; an effect counts when beyond "
    "2 se of zero."
)
INF = math.inf
LM = "laptop_lm_depth12"
DEPTHS = (1, 2, 4, 8)
CHANCE = 10.0  # Fashion-MNIST's 10 balanced classes: a constant prediction scores exactly this


@dataclass(frozen=True)
class Claim:
    a: str  # experiment of arm A
    b: str | float  # experiment of arm B, or a constant (chance)
    low: float
    high: float


def above(a, b) -> Claim:
    return Claim(a, b, 0.0, INF)


def below(a, b) -> Claim:
    return Claim(a, b, -INF, 0.0)


@dataclass(frozen=True)
class Fingerprint:
    key: str
    title: str  # the claim, as the column heading says it
    paper: str  # what the paper reports behind it
    metric: str
    claims: tuple[Claim, ...]
    # (MHA arm, control arm, softmax arm) triples whose effects are attributed
    controls: tuple[tuple[str, str, str], ...] = ()


def depth(d: int, kind: str) -> str:
    return f"laptop_depth{d}_control" if kind == "control" else f"laptop_depth{d}_{kind}"


FINGERPRINTS = (
    Fingerprint("lm12", "12-layer LM: MHA lower ppl", "GPT-2 Small 22.87 -> 20.70, Medium 20.85 -> 19.61 (Table 1)",
                "ppl", (below(f"{LM}_mha", f"{LM}_softmax"),),
                ((f"{LM}_mha", "laptop_lm_depth12_control", f"{LM}_softmax"),)),
    Fingerprint("t7_depth1", "Table 7, depth 1: MHA above softmax", "65.41 vs 55.08 (CIFAR-10)", "top1",
                (above(depth(1, "mha"), depth(1, "softmax")),),
                ((depth(1, "mha"), depth(1, "control"), depth(1, "softmax")),)),
    Fingerprint("t7_deep", "Table 7, depths 2-8: MHA above softmax", "16-29 points above at 2, 4, 8 (CIFAR-10)",
                "top1", tuple(above(depth(d, "mha"), depth(d, "softmax")) for d in (2, 4, 8)),
                tuple((depth(d, "mha"), depth(d, "control"), depth(d, "softmax")) for d in (2, 4, 8))),
    Fingerprint("t7_best4", "Table 7: MHA best at depth 4", "85.74 at 4; 65.41, 79.75, 80.34 at 1, 2, 8", "top1",
                tuple(above(depth(4, "mha"), depth(d, "mha")) for d in (1, 2, 8))),
    Fingerprint("t6a_best", "Table 6a: alpha' = 0.2 best", "72.29 vs 71.16 (0) and 66.10 (1.0)", "top1",
                (above("laptop_ablation_ap0.2", "laptop_ablation_ap0.0"),
                 above("laptop_ablation_ap0.2", "laptop_ablation_ap1.0"))),
    Fingerprint("t6a_worst", "Table 6a: alpha' = 1.0 worst", "66.10, about 6 points below", "top1",
                (below("laptop_ablation_ap1.0", "laptop_ablation_ap0.0"),
                 below("laptop_ablation_ap1.0", "laptop_ablation_ap0.2"))),
    Fingerprint("t6b_best", "Table 6b: alpha = 0.6 best", "72.66 vs 69.89 (0) and 1.00 (1.0)", "top1",
                (above("laptop_alpha_a0.6", "laptop_alpha_a0.0"),
                 above("laptop_alpha_a0.6", "laptop_alpha_a1.0"))),
    Fingerprint("t6b_chance", "Table 6b: alpha = 1.0 at chance", "1.00 on CIFAR-100: the attention branch removed",
                "top1", (Claim("laptop_alpha_a1.0", CHANCE, -1.0, 1.0),)),
    Fingerprint("t3", "Table 3: MHA slightly below softmax (< 3 points)", "ViT-Tiny 72.03 vs 73.08", "top1",
                (Claim("laptop_ablation_ap0.5", "laptop_ablation_softmax", -3.0, 0.0),),
                (("laptop_ablation_ap0.5", "laptop_ablation_ap0.0", "laptop_ablation_softmax"),)),
)  # fmt: skip
FINGERPRINT_KEYS = tuple(f.key for f in FINGERPRINTS)
DECIDING = "lm12"  # ties between readings are broken by the deep language model


def arms_of(fingerprints: Iterable[Fingerprint] = FINGERPRINTS) -> list[str]:
    """Every experiment the fingerprints read, in order of first use."""
    seen: dict[str, None] = {}
    for fingerprint in fingerprints:
        for claim in fingerprint.claims:
            seen.setdefault(claim.a)
            if isinstance(claim.b, str):
                seen.setdefault(claim.b)
        for triple in fingerprint.controls:
            for arm in triple:
                seen.setdefault(arm)
    return list(seen)


# --- statistics --------------------------------------------------------------------------------------------------


@dataclass
class Arm:
    values: list[float] = field(default_factory=list)
    seeds: list = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if self.n >= 2 else None

    def summary(self) -> dict:
        return {"mean": self.mean, "std": self.std, "n": self.n, "seeds": self.seeds, "values": self.values}


def difference(a: Arm, b: Arm | float) -> dict:
    """d = mean(a) - mean(b) and its standard error (None where an arm has fewer than two seeds)."""
    if a.n == 0 or (isinstance(b, Arm) and b.n == 0):
        return {"d": None, "se": None}
    if isinstance(b, Arm):
        d = a.mean - b.mean
        se = math.sqrt(a.std**2 / a.n + b.std**2 / b.n) if a.n >= 2 and b.n >= 2 else None
    else:
        d = a.mean - b
        se = a.std / math.sqrt(a.n) if a.n >= 2 else None
    return {"d": d, "se": se}


def verdict(d: float | None, se: float | None, low: float, high: float) -> str:
    """The rule (RULE) for one claim."""
    if d is None or se is None:
        return "inconclusive"
    lo, hi = d - 2 * se, d + 2 * se
    if low < lo and hi < high:
        return "agrees"
    if hi <= low or lo >= high:
        return "disagrees"
    return "inconclusive"


def combined(verdicts: Iterable[str]) -> str:
    verdicts = list(verdicts)
    if verdicts and all(v == "agrees" for v in verdicts):
        return "agrees"
    return "disagrees" if "disagrees" in verdicts else "inconclusive"


def effect(a: Arm, b: Arm) -> dict:
    """a - b, and whether it lies beyond 2 se of zero."""
    diff = difference(a, b)
    counts = diff["se"] is not None and abs(diff["d"]) > 2 * diff["se"]
    return {**diff, "counts": bool(counts)}


def attribution(state: dict, residual: dict) -> str:
    return {(True, True): "state and residual", (True, False): "state", (False, True): "residual",
            (False, False): "neither"}[(state["counts"], residual["counts"])]  # fmt: skip


# --- from runs to verdicts ---------------------------------------------------------------------------------------


def definition_key(definition: Mapping) -> str:
    return json.dumps({k: v for k, v in definition.items() if k != "seed"}, sort_keys=True, default=str)


def index_runs(records: Iterable[Mapping]) -> dict[str, list[Mapping]]:
    """Finished runs that are their cell's runs, by definition (seed aside)."""
    index: dict[str, list[Mapping]] = {}
    for record in records:
        if record.get("status") != "finished" or not_filed_because(record) is not None:
            continue
        index.setdefault(definition_key(record["cell"]["definition"]), []).append(record)
    return index


def arm_definition(experiment: str, reading: str, budget: str | None) -> dict:
    """The definition `train experiment=<experiment> reading=<reading> [budget=<budget>]` composes."""
    register_resolvers()  # the recipes' ${ha.*} resolvers, for composing outside the train command
    overrides = [f"experiment={experiment}", f"reading={reading}"] + ([f"budget={budget}"] if budget else [])
    reference = reference_definition(overrides)
    if reference is None:
        raise ValueError(f"the reading study reads experiment {experiment!r}, which configs/experiment/ lacks")
    return reference


def computes_softmax(experiment: str, reading: str) -> bool:
    """Whether the experiment, under the reading, is softmax attention with the backbone's own block: no state
    (alpha' = 0) and the residual weights of the stock block with the same skip connections."""
    facts = arm_definition(experiment, reading, None)
    attention = {key.split(".", 1)[1]: value for key, value in facts.items() if key.startswith("attention.")}
    attention.pop("implementation", None)
    variant = build_attention(**attention)
    skip = bool(facts.get("model.skip_connections", True))
    no_state = not variant.carries_state or getattr(variant, "alpha_prime", None) == 0.0
    return no_state and variant.block_residual(skip).weights == Residual(skip_connections=skip).weights


def finished_seeds(index, experiment: str, reading: str, budget: str | None) -> set:
    """The seeds with a finished run of what `train experiment=<experiment> reading=<reading>` computes, whichever
    sweep ran it: a pipeline trains only the others."""
    return {record.get("seed") for record in index.get(definition_key(arm_definition(experiment, reading, budget)), [])}


def arm_runs(index, experiment: str, reading: str, budget: str | None, metric: str) -> Arm:
    reference = arm_definition(experiment, reading, budget)
    latest: dict = {}  # one run per seed: a seed run again (a new directory) counts once, its newest run
    for record in sorted(index.get(definition_key(reference), []), key=lambda r: str(r.get("ended_at"))):
        latest[record.get("seed")] = record
    arm = Arm()
    for _, record in sorted(latest.items(), key=lambda item: str(item[0])):
        value, split = metric_value(record, metric)
        if value is not None and split == "test":
            arm.values.append(value)
            arm.seeds.append(record.get("seed"))
    return arm


def score_reading(index, reading: str, budget: str | None = None,
                  fingerprints: Iterable[Fingerprint] = FINGERPRINTS) -> dict:  # fmt: skip
    """Every fingerprint's arms, claims, verdict and attribution under one reading."""
    out: dict = {}
    for fingerprint in fingerprints:
        arms = {name: arm_runs(index, name, reading, budget, fingerprint.metric) for name in arms_of([fingerprint])}
        claims = []
        for claim in fingerprint.claims:
            diff = difference(arms[claim.a], arms[claim.b] if isinstance(claim.b, str) else claim.b)
            claims.append({"a": claim.a, "b": claim.b, "interval": [bound(claim.low), bound(claim.high)], **diff,
                           "verdict": verdict(diff["d"], diff["se"], claim.low, claim.high)})  # fmt: skip
        controls = []
        for mha, control, softmax in fingerprint.controls:
            is_softmax = computes_softmax(control, reading)
            if is_softmax:  # the control is the softmax model itself: its runs are softmax's
                arms[control] = arms[softmax]
            differs = effect(arms[mha], arms[softmax])
            entry = {"mha": mha, "control": control, "softmax": softmax, "control_is_softmax": is_softmax,
                     "mha_vs_softmax": differs}  # fmt: skip
            if arms[control].n:
                state, residual = effect(arms[mha], arms[control]), effect(arms[control], arms[softmax])
                entry.update(state=state, residual=residual, cause=attribution(state, residual))
            else:
                entry.update(state=None, residual=None, cause="not run" if differs["counts"] else
                             "no difference from softmax to attribute")  # fmt: skip
            controls.append(entry)
        out[fingerprint.key] = {
            "verdict": combined(c["verdict"] for c in claims),
            "claims": claims,
            "controls": controls,
            "arms": {name: arm.summary() for name, arm in arms.items()},
        }
    return out


def needed_controls(scored: Mapping) -> list[str]:
    """The control experiments a reading still needs: where its MHA differs from softmax, unless the control is
    softmax itself or has runs already."""
    needed: dict[str, None] = {}
    for result in scored.values():
        for control in result["controls"]:
            if control["mha_vs_softmax"]["counts"] and control["state"] is None:
                needed.setdefault(control["control"])
    return list(needed)


def bound(value: float) -> float | None:
    """An interval's end for JSON: None where it is unbounded."""
    return None if math.isinf(value) else value


def agreements(scored: Mapping) -> int:
    return sum(1 for fingerprint in scored.values() if fingerprint["verdict"] == "agrees")


DECIDING_ORDER = {"agrees": 2, "inconclusive": 1, "disagrees": 0}


def choose_default(scores: Mapping[str, Mapping], incumbent: str) -> dict:
    """The reading agreeing with the most fingerprints, ties broken by the deep language model; the incumbent
    stays unless another does strictly better by that order."""

    def rank(name: str) -> tuple[int, int]:
        # the deep language model breaks a tie by its verdict's order: agrees > inconclusive > disagrees (or not
        # run). An agrees-or-not flag left a tie between an inconclusive and a disagreeing reading to list order.
        return agreements(scores[name]), DECIDING_ORDER.get(scores[name][DECIDING]["verdict"], 0)

    order = sorted(scores, key=lambda name: (rank(name), name == incumbent), reverse=True)
    chosen = order[0] if rank(order[0]) > rank(incumbent) else incumbent
    # the two readings the choice was between: the chosen one and the incumbent, or the runner-up
    between = [chosen, incumbent] if chosen != incumbent else [chosen, *[n for n in order if n != chosen][:1]]
    return {"reading": chosen, "incumbent": incumbent, "between": between,
            "rank": {name: list(rank(name)) for name in scores},
            "why": ("agrees with the most fingerprints" if chosen != incumbent else
                    "no reading does better than the incumbent")}  # fmt: skip
