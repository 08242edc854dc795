"""The functional core and the variant registry against a plain transcription of the equations, and bad input."""

from __future__ import annotations

import math

import pytest
import torch

from hopfield_attention import build_attention, modern_hopfield_attention
from hopfield_attention.attention.functional import carried_score_attention

B, NH, T, HD, C, LAYERS = 2, 3, 6, 4, 12, 4


def chain_weights(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [
        {name: torch.randn(C, C, generator=gen) / math.sqrt(C) for name in ("q", "k", "v", "o")} for _ in range(LAYERS)
    ]


def split(x):
    return x.view(B, T, NH, HD).transpose(1, 2)  # (B, NH, T, HD)


def merge(x):
    return x.transpose(1, 2).reshape(B, T, C)  # (B, T, C)


def transcription(x, weights, *, decay, gain, alpha, first_layer, causal):
    """Paper eq. 10 written out: H_n = decay H_{n-1} + gain S_n, x = alpha x + (1 - alpha) softmax(H_n) V_n W_O."""
    keep = torch.ones(T, T, dtype=torch.bool).tril() if causal else torch.ones(T, T, dtype=torch.bool)
    hidden, states = None, []
    for w in weights:
        q, k, v = split(x @ w["q"]), split(x @ w["k"]), split(x @ w["v"])
        scores = torch.einsum("bhqd,bhkd->bhqk", q, k) / math.sqrt(HD)
        if hidden is None:
            hidden = scores if first_layer == "scores" else gain * scores
        else:
            hidden = decay * hidden + gain * scores
        probs = torch.exp(hidden.masked_fill(~keep, float("-inf")))
        probs = probs / probs.sum(-1, keepdim=True)
        a = merge(probs @ v) @ w["o"]
        x = x + a if alpha is None else alpha * x + (1 - alpha) * a
        states.append(hidden)
    return x, states


def core_chain(x, weights, attend, *, alpha, causal):
    hidden, states = None, []
    for w in weights:
        out, hidden = attend(split(x @ w["q"]), split(x @ w["k"]), split(x @ w["v"]), hidden, causal)
        a = merge(out) @ w["o"]
        x = x + a if alpha is None else alpha * x + (1 - alpha) * a
        states.append(hidden)
    return x, states


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize(
    "alpha, alpha_prime, first_layer",
    [(0.5, 0.5, "scores"), (0.7, 0.2, "zeros"), (None, 0.0, "scores"), (0.3, 1.0, "zeros")],
)
def test_modern_hopfield_chain_matches_transcription(alpha, alpha_prime, first_layer, causal):
    x = torch.randn(B, T, C, generator=torch.Generator().manual_seed(3))
    weights = chain_weights()

    def attend(q, k, v, hidden, is_causal):
        return modern_hopfield_attention(
            q, k, v, hidden, alpha_prime=alpha_prime, first_layer=first_layer, is_causal=is_causal
        )

    expected, expected_states = transcription(
        x, weights, decay=alpha_prime, gain=1 - alpha_prime, alpha=alpha, first_layer=first_layer, causal=causal
    )
    got, got_states = core_chain(x, weights, attend, alpha=alpha, causal=causal)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    for got_state, expected_state in zip(got_states, expected_states):  # the state handed on is unmasked
        torch.testing.assert_close(got_state, expected_state, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "name, params, decay, gain, alpha",
    [
        ("mha", dict(alpha=0.5), 0.5, 0.5, 0.5),  # alpha_prime defaults to alpha
        ("mha", dict(alpha=0.7, alpha_prime=0.2, first_layer="zeros"), 0.2, 0.8, 0.7),
        ("realformer", {}, 1.0, 1.0, None),
    ],
)
def test_registered_variants_match_transcription(name, params, decay, gain, alpha):
    variant = build_attention(name, **params, **({"residual": "attention"} if name == "mha" else {}))
    expected_weights = (1.0, 1.0) if alpha is None else (alpha, 1 - alpha)
    assert variant.block_residual().attention_weights == expected_weights  # the core chain's alpha x + (1 - alpha) a
    assert variant.block_residual().mlp_weights == (1.0, 1.0)
    x = torch.randn(B, T, C, generator=torch.Generator().manual_seed(4))
    weights = chain_weights(seed=1)

    def attend(q, k, v, hidden, is_causal):
        return variant.attend(q, k, v, hidden, scale=1 / math.sqrt(HD), is_causal=is_causal)

    first_layer = params.get("first_layer", "scores")
    expected, _ = transcription(x, weights, decay=decay, gain=gain, alpha=alpha, first_layer=first_layer, causal=True)
    got, _ = core_chain(x, weights, attend, alpha=alpha, causal=True)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_float64_inputs_give_a_float64_chain_to_float64_precision():
    """The state is float64 for float64 inputs (not fp32): the chain equals the float64 transcription to
    1e-12, where an fp32 state would be off by about 1e-7."""
    x = torch.randn(B, T, C, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    weights = [{name: w.double() for name, w in layer.items()} for layer in chain_weights(seed=2)]

    def attend(q, k, v, hidden, is_causal):
        return modern_hopfield_attention(q, k, v, hidden, alpha_prime=0.5, is_causal=is_causal)

    expected, expected_states = transcription(
        x, weights, decay=0.5, gain=0.5, alpha=0.5, first_layer="scores", causal=True
    )
    got, got_states = core_chain(x, weights, attend, alpha=0.5, causal=True)
    assert all(state.dtype == torch.float64 for state in got_states)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    for got_state, expected_state in zip(got_states, expected_states):
        torch.testing.assert_close(got_state, expected_state, rtol=1e-12, atol=1e-12)


def test_alpha_prime_zero_is_ordinary_attention():
    q, k, v = (torch.randn(B, NH, T, HD, generator=torch.Generator().manual_seed(i)) for i in range(3))
    hidden = torch.randn(B, NH, T, T)
    out, _ = modern_hopfield_attention(q, k, v, hidden, alpha_prime=0.0, is_causal=True)
    torch.testing.assert_close(out, torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True))


def test_decode_row_equals_full_pass_row():
    """Causal masks align bottom-right: the last query alone with its own state row gives the full pass's row."""
    q, k, v = (torch.randn(B, NH, T, HD, generator=torch.Generator().manual_seed(i)) for i in range(3))
    hidden = torch.randn(B, NH, T, T)
    full, full_state = modern_hopfield_attention(q, k, v, hidden, alpha_prime=0.4, is_causal=True)
    last, last_state = modern_hopfield_attention(q[:, :, -1:], k, v, hidden[:, :, -1:], alpha_prime=0.4, is_causal=True)
    torch.testing.assert_close(last, full[:, :, -1:])
    torch.testing.assert_close(last_state, full_state[:, :, -1:])


def test_masked_entries_do_not_accumulate():
    q, k, v = (torch.randn(1, 1, 3, 2, generator=torch.Generator().manual_seed(i)) for i in range(3))
    _, state = modern_hopfield_attention(q, k, v, alpha_prime=0.5, is_causal=True)
    assert torch.isfinite(state).all()
    torch.testing.assert_close(state, (q @ k.transpose(-1, -2)) / math.sqrt(2))


def test_state_is_fp32_under_bf16_autocast():
    q, k, v = (torch.randn(B, NH, T, HD) for _ in range(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, first = carried_score_attention(q, k, v, None, decay=0.5, gain=0.5)
        _, second = carried_score_attention(q, k, v, first, decay=0.5, gain=0.5)
    assert first.dtype == torch.float32 and second.dtype == torch.float32


@pytest.mark.parametrize(
    "params, named",
    [
        (dict(alpha=-0.1), "alpha"),
        (dict(alpha=1.5), "alpha"),
        (dict(alpha=0.5, alpha_prime=1.01), "alpha_prime"),
        (dict(alpha=0.5, alpha_prime=-1), "alpha_prime"),
        (dict(alpha=None), "alpha_prime"),
        (dict(alpha="0.5"), "alpha"),
        (dict(first_layer="ones"), "first_layer"),
        (dict(beta=0.1), "beta"),
    ],
)
def test_bad_mha_parameters_raise_naming_them(params, named):
    with pytest.raises(ValueError, match=named):
        build_attention("mha", **params)


def test_unknown_attention_name_raises():
    with pytest.raises(ValueError, match="attention must be one of .*'mha'.*got 'hopfield'"):
        build_attention("hopfield")


def test_bad_functional_input_raises_naming_it():
    q, k, v = torch.randn(B, NH, T, HD), torch.randn(B, NH, T + 1, HD), torch.randn(B, NH, T + 1, HD)
    with pytest.raises(ValueError, match="alpha_prime"):
        modern_hopfield_attention(q, k, v, alpha_prime=2.0)
    with pytest.raises(ValueError, match="first_layer"):
        modern_hopfield_attention(q, k, v, alpha_prime=0.5, first_layer="none")
    with pytest.raises(ValueError, match="hidden must have shape"):
        modern_hopfield_attention(q, k, v, torch.randn(B, NH, T, T), alpha_prime=0.5)
    with pytest.raises(ValueError, match="key must be"):
        modern_hopfield_attention(q, k[..., :-1], v, alpha_prime=0.5)
    with pytest.raises(ValueError, match="key must be"):
        modern_hopfield_attention(q, k, v[:, :, :-1], alpha_prime=0.5)
    with pytest.raises(ValueError, match="4-d"):
        modern_hopfield_attention(q[0], k, v, alpha_prime=0.5)
