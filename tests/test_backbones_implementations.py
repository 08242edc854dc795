"""Every registered implementation of carried-score attention inside every backbone: the same logits and gradients
as the explicit path, with padding and grouped-query attention; cached generation equal to a full pass; activation
checkpointing and torch.compile; the same recorded attention maps. A new implementation is covered on registering."""

from __future__ import annotations

import pytest
import torch

from hopfield_attention import convert_model, record_attention
from hopfield_attention.analysis.probe import transformer_blocks
from hopfield_attention.attention.paths import IMPLEMENTATION_CHOICES

from support.backbones import (
    BUILDERS,
    assert_cached_generation_equals_uncached,
    example_input,
    logits,
)

IMPLEMENTATIONS = [name for name in IMPLEMENTATION_CHOICES if name != "explicit"]  # "auto" mixes them per layer
TOL = dict(rtol=1e-4, atol=1e-5)


def model_with(family: str, implementation: str, variant: str = "mha"):
    params = dict(alpha=0.5, alpha_prime=0.3) if variant == "mha" else {}
    return convert_model(BUILDERS[family](), variant, implementation=implementation, **params)


def inputs_with_padding(family: str):
    x = example_input(family, batch=2, length=9, seed=7)
    if family == "vit":
        return {"x": x}
    mask = torch.ones_like(x)
    mask[1, :3] = 0  # left padding: rows and keys a layer must not see
    return {"input_ids": x, "attention_mask": mask}


def forward_and_grads(model, inputs):
    model.zero_grad()
    out = model(inputs["x"]) if "x" in inputs else model(**inputs).logits
    keep = inputs.get("attention_mask")
    loss = (out.square() * (1 if keep is None else keep[..., None])).mean()  # padded positions are not scored
    loss.backward()
    named = model.named_parameters()  # a compiled model prefixes its parameters with _orig_mod.
    return out.detach(), {name.removeprefix("_orig_mod."): p.grad.clone() for name, p in named if p.grad is not None}


@pytest.mark.parametrize("variant", ["mha", "realformer"])
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("family", list(BUILDERS))
def test_each_implementation_gives_the_explicit_paths_logits_and_gradients(family, implementation, variant):
    inputs = inputs_with_padding(family)
    want_out, want = forward_and_grads(model_with(family, "explicit", variant).train(), inputs)
    got_out, got = forward_and_grads(model_with(family, implementation, variant).train(), inputs)
    keep = inputs.get("attention_mask")
    rows = slice(None) if keep is None else keep.bool()
    torch.testing.assert_close(got_out[rows], want_out[rows], **TOL)
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_cached_generation_equals_a_full_pass(family, implementation):
    model = model_with(family, implementation).eval()
    prompts = example_input(family, batch=2, length=6, seed=4)
    mask = torch.ones_like(prompts)
    mask[1, :2] = 0
    assert_cached_generation_equals_uncached(model, prompts, mask, new_tokens=5)


@pytest.mark.filterwarnings("ignore:.*gradient_checkpointing_enable.*:FutureWarning")
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("family", list(BUILDERS))
def test_activation_checkpointing_keeps_the_gradients(family, implementation):
    inputs = inputs_with_padding(family)
    model = model_with(family, implementation).train()
    _, want = forward_and_grads(model, inputs)
    if family == "vit":
        model.set_grad_checkpointing(True)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    _, got = forward_and_grads(model, inputs)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("family", list(BUILDERS))
def test_torch_compile_gives_the_same_forward_and_backward(family, implementation):
    inputs = inputs_with_padding(family)
    model = model_with(family, implementation).train()
    want_out, want = forward_and_grads(model, inputs)
    compiled = torch.compile(model, backend="aot_eager")  # dynamo and AOT autograd; no C++ build on 2 cores
    got_out, got = forward_and_grads(compiled, inputs)
    torch.testing.assert_close(got_out, want_out, **TOL)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("family", list(BUILDERS))
def test_recorded_attention_is_the_explicit_paths(family, implementation):
    inputs = inputs_with_padding(family)
    maps = {}
    for name in ("explicit", implementation):
        model = model_with(family, name).eval()
        with torch.no_grad(), record_attention(model) as probs:
            logits(model, inputs["x"]) if "x" in inputs else model(**inputs)
        maps[name] = probs
    assert len(maps[implementation]) == len(maps["explicit"]) == len(transformer_blocks(model))
    for got, want in zip(maps[implementation], maps["explicit"]):
        torch.testing.assert_close(got, want, **TOL)
