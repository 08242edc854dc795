"""Every registered attention variant on every registered backbone, by iteration over the registries.

A new variant (attention/variants.py) or backbone class (backbones/registry.py) is covered here without
editing this file: each variant builds from its defaults and declares its `softmax_limit`; each backbone
class registers a `tiny` factory that makes a small instance and inputs for it.
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from hopfield_attention import ATTENTION_VARIANTS, build_attention, convert_model
from hopfield_attention.attention.paths import IMPLEMENTATION_CHOICES
from hopfield_attention.backbones import BACKBONES

MODEL_CLASSES = sorted(BACKBONES, key=lambda cls: f"{cls.__module__}.{cls.__name__}")
VARIANTS = sorted(ATTENTION_VARIANTS)
WITH_SOFTMAX_LIMIT = [name for name in VARIANTS if ATTENTION_VARIANTS[name].softmax_limit is not None]
WITH_IMPLEMENTATIONS = [
    name for name in VARIANTS if "implementation" in {f.name for f in dataclasses.fields(ATTENTION_VARIANTS[name])}
]


def class_id(cls: type) -> str:
    return cls.__name__


def tiny(model_class: type, seed: int = 0):
    torch.manual_seed(seed)
    model, inputs = BACKBONES[model_class].tiny(model_class)
    assert type(model) is model_class
    return model.eval(), inputs


def output(model, inputs) -> torch.Tensor:
    """The model's main output: logits, the last hidden state, or the class scores of a ViT."""
    out = model(**inputs)
    return out if isinstance(out, torch.Tensor) else out[0]


@pytest.mark.parametrize("skip_connections", [True, False])
@pytest.mark.parametrize("model_class", MODEL_CLASSES, ids=class_id)
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_trains_every_backbone(variant, model_class, skip_connections):
    """Build, convert with the variant's defaults, forward and backward: every parameter gets a finite gradient."""
    model, inputs = tiny(model_class)
    built = build_attention(variant)
    assert convert_model(model, built, skip_connections=skip_connections) is model
    assert model.hopfield_attention is built and model.hopfield_skip_connections is skip_connections
    model.train()
    out = output(model, inputs)
    assert torch.isfinite(out).all()
    out.float().square().mean().backward()
    without = [name for name, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not without, f"parameters without a finite gradient: {without}"


@pytest.mark.parametrize("model_class", MODEL_CLASSES, ids=class_id)
def test_softmax_is_the_stock_model_bit_for_bit(model_class):
    stock, inputs = tiny(model_class)
    model = convert_model(copy.deepcopy(stock), "softmax")
    with torch.no_grad():
        assert torch.equal(output(model, inputs), output(stock, inputs))


@pytest.mark.parametrize("model_class", MODEL_CLASSES, ids=class_id)
@pytest.mark.parametrize("variant", WITH_SOFTMAX_LIMIT)
def test_softmax_limit_is_the_stock_model(variant, model_class):
    """At its `softmax_limit` a variant is ordinary attention with the backbone's residual: outputs and
    gradients of the stock model."""
    stock, inputs = tiny(model_class)
    model = convert_model(copy.deepcopy(stock), variant, **ATTENTION_VARIANTS[variant].softmax_limit)
    results = []
    for m in (stock, model):
        out = output(m, inputs)
        out.square().mean().backward()
        results.append((out.detach(), {name: p.grad for name, p in m.named_parameters()}))
    (want, want_grads), (got, got_grads) = results
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    for name, grad in want_grads.items():
        torch.testing.assert_close(got_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("implementation", [name for name in IMPLEMENTATION_CHOICES if name != "explicit"])
@pytest.mark.parametrize("model_class", MODEL_CLASSES, ids=class_id)
@pytest.mark.parametrize("variant", WITH_IMPLEMENTATIONS)
def test_every_implementation_matches_explicit_in_every_backbone(variant, model_class, implementation):
    stock, inputs = tiny(model_class)
    results = {}
    for name in ("explicit", implementation):
        model = convert_model(copy.deepcopy(stock), variant, implementation=name)
        out = output(model, inputs)
        out.square().mean().backward()
        results[name] = (out.detach(), {n: p.grad for n, p in model.named_parameters()})
    (want, want_grads), (got, got_grads) = results["explicit"], results[implementation]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    for name, grad in want_grads.items():
        torch.testing.assert_close(got_grads[name], grad, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_round_trips_its_dict(variant):
    built = build_attention(variant)
    assert build_attention(**built.as_dict()) == built
