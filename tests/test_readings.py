"""The readings of the paper's open choices: the rule that scores them, the default they choose, how a run records
its reading, and that a model saved before the choices existed keeps computing what it was trained with."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from hopfield_attention import build_attention, convert_model
from hopfield_attention.attention.variants import PINNED_READING, restore_attention
from hopfield_attention.config.readings import available_readings
from hopfield_attention.readings import check_options
from hopfield_attention.reports.readings import (
    FINGERPRINTS,
    Arm,
    arms_of,
    choose_default,
    combined,
    difference,
    verdict,
)
from hopfield_attention.runs.cell import cell_facts
from hopfield_attention.runs.definition import definition

from support.backbones import BUILDERS, example_input, logits
from support.commands import composed


def test_the_rule_reads_the_two_standard_error_interval_against_the_claim():
    assert verdict(-5.0, 1.0, -math.inf, 0.0) == "agrees"  # [-7, -3] inside (-inf, 0)
    assert verdict(-1.0, 1.0, -math.inf, 0.0) == "inconclusive"  # [-3, 1] straddles 0
    assert verdict(3.0, 1.0, -math.inf, 0.0) == "disagrees"  # [1, 5] wholly above
    assert verdict(-1.0, 0.4, -3.0, 0.0) == "agrees"  # slightly below: [-1.8, -0.2] inside (-3, 0)
    assert verdict(-8.0, 1.0, -3.0, 0.0) == "disagrees"  # far below is not slightly below
    assert verdict(0.0, 0.0, -1.0, 1.0) == "agrees"  # a point estimate (std 0) at chance
    assert verdict(2.0, None, 0.0, math.inf) == "inconclusive"  # one seed: no standard error


def test_the_difference_pools_both_arms_sample_variances():
    a, b = Arm([10.0, 12.0, 14.0]), Arm([1.0, 2.0, 3.0])
    diff = difference(a, b)
    assert diff["d"] == pytest.approx(10.0)
    assert diff["se"] == pytest.approx(math.sqrt(4.0 / 3 + 1.0 / 3))
    assert difference(a, 10.0) == {"d": pytest.approx(2.0), "se": pytest.approx(2.0 / math.sqrt(3))}
    assert difference(Arm([1.0]), b)["se"] is None and difference(Arm(), b)["d"] is None


def test_a_fingerprint_agrees_only_when_every_claim_does():
    assert combined(["agrees", "agrees"]) == "agrees"
    assert combined(["agrees", "inconclusive"]) == "inconclusive"
    assert combined(["inconclusive", "disagrees", "agrees"]) == "disagrees"


def scored(*verdicts: str) -> dict:
    return {f.key: {"verdict": v} for f, v in zip(FINGERPRINTS, verdicts)}


def test_the_default_is_the_reading_with_most_agreements_ties_broken_by_the_language_model():
    scores = {
        "pinned": scored("disagrees", "agrees"),
        "stream": scored("inconclusive", "agrees", "agrees"),
        "update": scored("agrees", "agrees", "inconclusive"),
    }
    chosen = choose_default(scores, incumbent="pinned")
    assert chosen["reading"] == "update" and chosen["between"] == ["update", "pinned"]  # tie: lm12 decides
    kept = choose_default({"pinned": scored("agrees"), "stream": scored("inconclusive", "agrees")}, "pinned")
    assert kept["reading"] == "pinned" and kept["between"] == ["pinned", "stream"]  # not better: the pin stays


@pytest.mark.parametrize("order", [["pinned", "update", "stream"], ["pinned", "stream", "update"]])
def test_a_tie_goes_to_the_reading_whose_language_model_verdict_is_better_whatever_the_list_order(order):
    """Equal agreements, neither agreeing on the language model: inconclusive beats disagrees, in either order."""
    by_name = {
        "pinned": scored("disagrees", "agrees"),
        "update": scored("disagrees", "agrees", "agrees", "agrees"),
        "stream": scored("inconclusive", "agrees", "agrees", "agrees"),
    }
    chosen = choose_default({name: by_name[name] for name in order}, incumbent="pinned")
    assert chosen["reading"] == "stream" and chosen["rank"]["stream"] > chosen["rank"]["update"]


def test_every_arm_of_the_study_is_an_experiment_file_and_every_reading_a_reading_file():
    from hopfield_attention.config.locations import CONFIG_DIR

    for arm in arms_of():
        assert (CONFIG_DIR / "experiment" / f"{arm}.yaml").is_file(), arm
    assert set(composed("readings", []).readings) <= set(available_readings())


@pytest.mark.parametrize(
    "overrides, says",
    [
        (["readings=[pinned,nope]"], "readings must name configs/reading/ files"),
        (["seeds=[]"], "seeds must name at least one seed"),
        (["stage=long", "quick=true"], "stage=long runs the full recipe"),
        (["stage=long", "long_readings=[zeros]", "readings=[pinned,stream]"], "long_readings within readings"),
        (["stage=longer"], "stage must be one of"),
    ],
)
def test_the_study_checks_its_options_before_any_work(overrides, says):
    with pytest.raises(ValueError, match=says):
        check_options(composed("readings", overrides))


def cell(overrides: list[str], choices: dict) -> dict:
    return cell_facts(composed("train", overrides), choices)


def test_a_reading_qualifies_a_cell_only_where_it_changes_what_the_run_computes():
    default = composed("train", []).reading.name
    other = next(name for name in available_readings() if name != default)
    mha = cell(["experiment=laptop_lm_depth12_mha", f"reading={other}"], {"reading": other})
    assert mha["qualifiers"] == {"reading": other} and mha["deviations"] == {}
    assert f"reading={other}" in mha["defined_by"]
    softmax = cell(["experiment=laptop_lm_depth12_softmax", f"reading={other}"], {"reading": other})
    assert softmax["qualifiers"] == {} and softmax["deviations"] == {}  # every reading shares softmax runs
    plain = cell(["experiment=laptop_lm_depth12_mha", f"reading={default}"], {"reading": default})
    assert plain["qualifiers"] == {}
    assert mha["definition"] != plain["definition"]  # so tables never mix readings


def test_a_reading_sets_the_open_choices_and_a_direct_override_still_wins():
    for name in available_readings():
        cfg = composed("train", ["attention=mha", f"reading={name}"])
        variant = build_attention(**cfg.attention)
        assert {k: getattr(variant, k) for k in ("first_layer", "residual", "skipless_residual")} == {
            k: cfg.reading[k] for k in ("first_layer", "residual", "skipless_residual")
        }
    cfg = composed("train", ["attention=mha", "reading=pinned", "attention.residual=both"])
    assert definition(cfg)["attention.residual"] == "both"


@pytest.mark.parametrize("family", list(BUILDERS))
def test_a_model_saved_before_the_readings_keeps_the_reading_it_was_trained_under(family):
    """An as_dict() without the open choices (saved before they existed) restores PINNED_READING, whatever the
    default is now: the restored model computes exactly what the pinned one does."""
    saved = {"name": "mha", "alpha": 0.5, "alpha_prime": 0.5, "first_layer": "scores", "implementation": "explicit"}
    restored = restore_attention(saved)
    assert {k: getattr(restored, k) for k in PINNED_READING["mha"]} == PINNED_READING["mha"]
    stock = BUILDERS[family]()
    params = {key: value for key, value in {**saved, **PINNED_READING["mha"]}.items() if key != "name"}
    pinned = convert_model(copy.deepcopy(stock), "mha", **params)
    other = convert_model(copy.deepcopy(stock), restored)
    inputs = example_input(family)
    with torch.no_grad():
        torch.testing.assert_close(logits(other, inputs), logits(pinned, inputs), rtol=0, atol=0)


def test_bad_reading_values_are_refused_naming_what_is_allowed():
    with pytest.raises(ValueError, match=r"residual must be one of \['attention', 'both', 'stream'\]"):
        build_attention("mha", residual="everywhere")
    with pytest.raises(ValueError, match=r"skipless_residual must be one of \['none', 'own'\]"):
        build_attention("mha", skipless_residual="some")


def test_the_api_default_is_the_configs_default_reading():
    """convert_model(model, "mha") and `attention=mha` compute the same reading: the variant's defaults are the
    reading configs/train.yaml chooses."""
    reading = composed("train", []).reading
    variant = build_attention("mha")
    assert {k: getattr(variant, k) for k in ("first_layer", "residual", "skipless_residual")} == {
        k: reading[k] for k in ("first_layer", "residual", "skipless_residual")
    }


def test_the_default_reading_is_what_train_composes():
    from hopfield_attention.config.readings import default_reading

    assert default_reading() == composed("train", []).reading.name


def test_tables_file_a_run_under_the_reading_it_computed_not_the_default_of_its_day():
    """A run recorded when another reading was the default carries no reading qualifier; the tables read its
    reading from its definition, so it never joins today's default's cells. Softmax stays shared."""
    from hopfield_attention.config.readings import default_reading
    from hopfield_attention.reports.tables import table_key

    default = default_reading()
    other = next(name for name in available_readings() if name != default)

    def record(overrides, qualifiers):
        facts = cell(overrides, {})
        return {"paper": {"table": "laptop-lm"}, "cell": {**facts, "qualifiers": qualifiers}}

    old_default = record(["experiment=laptop_lm_depth12_mha", f"reading={other}"], {})
    assert table_key(old_default) == f"laptop-lm (reading {other})"
    today = record(["experiment=laptop_lm_depth12_mha", f"reading={default}"], {"reading": default})
    assert table_key(today) == "laptop-lm"
    softmax = record(["experiment=laptop_lm_depth12_softmax", f"reading={other}"], {})
    assert table_key(softmax) == "laptop-lm"
    quick = record(["experiment=laptop_lm_depth12_mha", f"reading={other}", "budget=quick"], {"budget": "quick"})
    assert table_key(quick) == f"laptop-lm (budget quick, reading {other})"
    custom = record(["experiment=laptop_lm_depth12_mha", "attention.residual=both", "attention.first_layer=zeros"], {})
    assert table_key(custom) == "laptop-lm (reading residual=both, first_layer=zeros, skipless_residual=own)"
    before = {"paper": {"table": "laptop-lm"}, "cell": {"qualifiers": {}, "definition": {"attention.name": "mha"}}}
    assert table_key(before) == ("laptop-lm (reading pinned)" if default != "pinned" else "laptop-lm")
