"""Converted GPT-2, LLaMA and ViT equal the written-out equations (support/backbones.py) end to end."""

from __future__ import annotations

import copy

import pytest
import torch

from hopfield_attention import convert_model

from support.backbones import (
    BUILDERS,
    READINGS,
    REFERENCES,
    SETTINGS,
    example_input,
    logits,
    mha_rule,
    reading_rule,
)

TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize("family", list(BUILDERS))
def test_converted_model_matches_transcription(family, setting):
    attention, params, rule = SETTINGS[setting]
    stock = BUILDERS[family]()
    model = convert_model(copy.deepcopy(stock), attention, **params)
    inputs = example_input(family)
    with torch.no_grad():
        expected = REFERENCES[family](stock, inputs, rule)
        torch.testing.assert_close(logits(model, inputs), expected, **TOL)
        # and the transcription is sharp enough to see the variant at all
        assert not torch.allclose(logits(stock, inputs), expected, atol=1e-3)


@pytest.mark.parametrize("family", list(BUILDERS))
@pytest.mark.parametrize("attention", ["softmax", "mha"])
def test_without_skip_connections_matches_transcription(family, attention):
    """Paper Table 7: the backbone's skip connections gone; MHA keeps its own alpha-weighted term where the
    default reading says so (skipless_residual), softmax keeps none."""
    params = dict(alpha=0.5, alpha_prime=0.5) if attention == "mha" else {}
    rule = mha_rule(0.5, 0.5, skip=False) if attention == "mha" else mha_rule(None, 0.0, skip=False)
    stock = BUILDERS[family]()
    model = convert_model(copy.deepcopy(stock), attention, skip_connections=False, **params)
    inputs = example_input(family)
    with torch.no_grad():
        torch.testing.assert_close(logits(model, inputs), REFERENCES[family](stock, inputs, rule), **TOL)


@pytest.mark.parametrize("skip", [True, False])
@pytest.mark.parametrize("implementation", ["explicit", "fused", "stacked"])
@pytest.mark.parametrize("reading", list(READINGS))
@pytest.mark.parametrize("family", list(BUILDERS))
def test_every_reading_matches_its_transcription_in_every_implementation(family, reading, implementation, skip):
    """configs/reading/: with and without skip connections (Table 7), alpha = 0.6 so that no placement is the
    backbone's own residual by accident."""
    rule = reading_rule(READINGS[reading], 0.6, 0.5, skip=skip)
    stock = BUILDERS[family]()
    model = convert_model(copy.deepcopy(stock), "mha", alpha=0.6, alpha_prime=0.5, implementation=implementation,
                          skip_connections=skip, **READINGS[reading])  # fmt: skip
    inputs = example_input(family)
    with torch.no_grad():
        expected = REFERENCES[family](stock, inputs, rule)
        torch.testing.assert_close(logits(model, inputs), expected, rtol=1e-4, atol=1e-4)
        other = reading_rule(READINGS["update" if reading != "update" else "pinned"], 0.6, 0.5, skip=skip)
        assert not torch.allclose(REFERENCES[family](stock, inputs, other), expected, atol=1e-3)


@pytest.mark.parametrize("family", ["gpt2", "vit"])
def test_fused_implementation_matches_transcription(family):
    attention, params, rule = SETTINGS["mha-0.7-0.2-zeros"]
    stock = BUILDERS[family]()
    model = convert_model(copy.deepcopy(stock), attention, implementation="fused", **params)
    inputs = example_input(family)
    with torch.no_grad():
        torch.testing.assert_close(logits(model, inputs), REFERENCES[family](stock, inputs, rule), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("family", list(BUILDERS))
def test_gradients_match_transcription_and_flow_through_the_state(family, monkeypatch):
    """Gradients of the converted model equal the transcription's; cutting the carried state between layers
    changes the first layer's query/key gradients, so the state's gradient path is real."""
    attention, params, rule = SETTINGS["mha-0.5"]
    stock = BUILDERS[family]()
    model = convert_model(copy.deepcopy(stock), attention, **params)
    inputs = example_input(family)

    def first_qk_grad(m, forward):
        m.zero_grad()
        forward(m).square().mean().backward()
        if family == "gpt2":
            return m.transformer.h[0].attn.c_attn.weight.grad[:, : 2 * 32].clone()
        if family == "llama":
            att = m.model.layers[0].self_attn
            return torch.cat([att.q_proj.weight.grad, att.k_proj.weight.grad]).clone()
        return m.blocks[0].attn.qkv.weight.grad[: 2 * 32].clone()

    expected = first_qk_grad(stock, lambda m: REFERENCES[family](m, inputs, rule))
    got = first_qk_grad(model, lambda m: logits(m, inputs))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)

    from hopfield_attention.backbones.state import CarriedState

    read = CarriedState.read
    monkeypatch.setattr(CarriedState, "read", lambda self, layer: None if layer == 0 else read(self, layer).detach())
    cut = first_qk_grad(model, lambda m: logits(m, inputs))
    assert not torch.allclose(cut, got, rtol=1e-3, atol=1e-6)
