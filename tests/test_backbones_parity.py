"""Converted backbones are drop-ins: the stock model where the maths says so, the same parameters, clear errors."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers.models.gpt2.modeling_gpt2 import GPT2Block

from hopfield_attention import convert_model
from hopfield_attention.attention.residual import Residual
from hopfield_attention.backbones.gpt2 import HopfieldGPT2Block
from hopfield_attention.backbones.llama import HopfieldLlamaDecoderLayer

from support.backbones import BUILDERS, example_input, logits, tiny_gpt2, tiny_llama

FAMILIES = list(BUILDERS)


@pytest.mark.parametrize("family", FAMILIES)
def test_softmax_leaves_the_model_bit_for_bit_untouched(family):
    stock = BUILDERS[family]()
    model = copy.deepcopy(stock)
    modules_before = [(name, type(m)) for name, m in model.named_modules()]
    assert convert_model(model, "softmax") is model
    # transformers models become the Hopfield subclass of their class, which config.json's `architectures` names
    assert issubclass(type(model), modules_before[0][1])
    assert [(name, type(m)) for name, m in model.named_modules()][1:] == modules_before[1:]
    assert not any(m._forward_pre_hooks for m in model.modules())
    if family != "vit":
        assert model.config._attn_implementation == stock.config._attn_implementation
    inputs = example_input(family)
    assert torch.equal(logits(model, inputs), logits(stock, inputs))
    assert model.hopfield_attention.name == "softmax"


@pytest.mark.parametrize("family", FAMILIES)
def test_mha_without_memory_or_alpha_is_the_stock_model(family):
    stock = BUILDERS[family]()
    model = convert_model(copy.deepcopy(stock), "mha", alpha=None, alpha_prime=0.0)
    inputs = example_input(family)
    torch.testing.assert_close(logits(model, inputs), logits(stock, inputs), rtol=1e-5, atol=1e-5)
    # the same model at alpha' = 0.5 is not: the test can tell
    other = convert_model(copy.deepcopy(stock), "mha", alpha=None, alpha_prime=0.5)
    assert not torch.allclose(logits(other, inputs), logits(stock, inputs), atol=1e-3)


@pytest.mark.parametrize(
    "build, block_class",
    [(tiny_gpt2, HopfieldGPT2Block), (tiny_llama, HopfieldLlamaDecoderLayer)],
)
def test_block_subclass_with_stock_residual_is_bit_for_bit(build, block_class):
    stock = build()
    model = copy.deepcopy(stock)
    blocks = model.transformer.h if hasattr(model, "transformer") else model.model.layers
    for block in blocks:
        block.__class__ = block_class
        block.hopfield_residual = Residual()
    ids = example_input("gpt2")
    assert torch.equal(model(ids).logits, stock(ids).logits)
    mask = torch.ones_like(ids)
    mask[0, :3] = 0
    assert torch.equal(model(ids, attention_mask=mask).logits, stock(ids, attention_mask=mask).logits)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(
    "attention, params",
    [
        ("mha", dict(alpha=0.5)),
        ("realformer", {}),
        ("softmax", dict(skip_connections=False)),
        ("mha", dict(alpha=0.7, skip_connections=False)),
    ],
)
def test_state_dict_round_trip_and_parameter_count(family, attention, params):
    stock = BUILDERS[family]()
    stock_state = {k: v.clone() for k, v in stock.state_dict().items()}
    model = convert_model(BUILDERS[family](seed=5), attention, **params)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in stock.parameters())
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in stock.named_parameters()]
    converted_state = model.state_dict()
    # a converted ViT's state dict records its conversion (so timm's stock routes refuse it, never load it as stock)
    record = [key for key in converted_state if key not in stock_state]
    assert record == (["hopfield_vit"] if family == "vit" else [])
    assert [key for key in converted_state if key not in record] == list(stock_state)
    model.load_state_dict(stock_state, strict=True)  # stock -> converted
    back = BUILDERS[family](seed=7)
    if record:
        with pytest.raises(RuntimeError, match="hopfield_vit"):
            back.load_state_dict(model.state_dict(), strict=True)  # converted -> stock: refused, not silently stock
    back.load_state_dict({k: v for k, v in model.state_dict().items() if k not in record}, strict=True)
    for key, value in back.state_dict().items():
        assert torch.equal(value, stock_state[key]), key


def test_unsupported_model_type_raises_naming_the_supported_ones():
    supported = "VisionTransformer.*GPT2LMHeadModel.*GPT2Model.*LlamaForCausalLM.*LlamaModel"
    with pytest.raises(TypeError, match=f"supports .*{supported}; got torch.nn.modules.linear.Linear"):
        convert_model(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match=f"supports .*{supported}; got .*GPT2DoubleHeadsModel"):
        from transformers import (
            GPT2DoubleHeadsModel,  # in no Auto mapping, so not converted
        )

        convert_model(GPT2DoubleHeadsModel(tiny_gpt2().config))


@pytest.mark.parametrize(
    "params, named",
    [
        (dict(attention="hopfield"), "attention must be one of"),
        (dict(alpha=1.2), "alpha"),
        (dict(alpha=0.5, alpha_prime=-0.5), "alpha_prime"),
        (dict(first_layer="previous"), "first_layer"),
        (dict(gamma=0.5), "gamma"),
        (dict(skip_connections="no"), "skip_connections"),
    ],
)
def test_bad_conversion_arguments_raise_naming_them(params, named):
    model = tiny_gpt2()
    with pytest.raises(ValueError, match=named):
        convert_model(model, **params)
    assert type(model.transformer.h[0]) is GPT2Block  # nothing was half converted


def test_converting_twice_raises_but_a_softmax_model_may_be_converted():
    model = convert_model(tiny_gpt2(), "mha", alpha=0.5)
    with pytest.raises(ValueError, match="already converted"):
        convert_model(model, "realformer")
    softmax = convert_model(tiny_gpt2(), "softmax")
    assert convert_model(softmax, "mha", alpha=None, alpha_prime=0.0).hopfield_attention.name == "mha"


@pytest.mark.parametrize("family", FAMILIES)
def test_deepcopy_and_pickle_of_a_converted_model_stand_alone(family):
    """Copies (the analysis converts copies; Lightning may pickle) compute the same and hold their own state
    source, which reads the copy's own flags (training, checkpointing)."""
    import io

    model = convert_model(BUILDERS[family](), "mha", alpha=0.5)
    inputs = example_input(family)
    with torch.no_grad():
        logits(model, inputs)  # leave per-forward bookkeeping behind, as in real use
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    for twin in (copy.deepcopy(model), torch.load(buffer, weights_only=False)):
        source = next(m.hopfield_states for m in twin.modules() if getattr(m, "hopfield_states", None) is not None)
        assert any(source.root is m for m in twin.modules())
        assert all(any(b is m for m in twin.modules()) for b in source.blocks)
        with torch.no_grad():
            assert torch.equal(logits(twin, inputs), logits(model, inputs))


def test_convert_model_takes_a_variant_built_once():
    from hopfield_attention import build_attention

    variant = build_attention("mha", alpha=0.7, alpha_prime=0.2)
    model = convert_model(tiny_gpt2(), variant)
    assert model.hopfield_attention is variant
    by_name = convert_model(tiny_gpt2(), "mha", alpha=0.7, alpha_prime=0.2)
    ids = example_input("gpt2")
    assert torch.equal(model(ids).logits, by_name(ids).logits)
    with pytest.raises(ValueError, match="give one or the other"):
        convert_model(tiny_gpt2(), variant, alpha=0.5)
