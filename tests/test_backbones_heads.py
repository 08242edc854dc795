"""Every Auto class transformers offers for GPT-2 and LLaMA, read from transformers' own mappings, loads a saved
converted model of that head as a converted model, or refuses naming the head and what is supported."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
)

from hopfield_attention import convert_model
from hopfield_attention.backbones import (
    BACKBONES,
    HopfieldGPT2Config,
    HopfieldLlamaConfig,
)
from hopfield_attention.backbones.hf import refusing_class

from support.backbones import auto_heads

FAMILIES = {GPT2Config: HopfieldGPT2Config, LlamaConfig: HopfieldLlamaConfig}
HEADS = [(auto, stock, FAMILIES[config]) for config in FAMILIES for auto, stock in auto_heads(config).items()]


def first_output(model, inputs):
    with torch.no_grad():
        return model(**inputs)[0]


@pytest.mark.parametrize("auto, stock, config_class", HEADS, ids=lambda c: c.__name__)
def test_every_auto_head_loads_a_converted_checkpoint_or_refuses(auto, stock, config_class, tmp_path):
    if stock not in BACKBONES:  # a head transformers offers that the package does not convert
        with pytest.raises(ValueError, match=rf"{auto.__name__} \({stock.__name__}\) is not supported.*supported:"):
            auto.from_config(config_class(hopfield_attention={"name": "mha"}))
        return
    torch.manual_seed(0)
    model, inputs = BACKBONES[stock].tiny(stock)
    stock_out = first_output(model.eval(), inputs)
    convert_model(model, "mha", alpha=0.5, alpha_prime=0.3).save_pretrained(tmp_path)
    loaded = auto.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, stock) and type(loaded).__name__ == f"Hopfield{stock.__name__}"
    assert loaded.hopfield_attention == model.hopfield_attention
    assert torch.equal(first_output(loaded, inputs), first_output(model, inputs))
    assert not torch.allclose(first_output(loaded, inputs), stock_out, atol=1e-4)  # not the stock model


def test_a_causal_lm_checkpoint_loads_into_another_head_converted(tmp_path):
    torch.manual_seed(0)
    model, _ = BACKBONES[GPT2LMHeadModel].tiny(GPT2LMHeadModel)
    convert_model(model, "mha", alpha=0.5).save_pretrained(tmp_path)
    classifier = AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=3)
    assert type(classifier).__name__ == "HopfieldGPT2ForSequenceClassification"
    assert classifier.hopfield_attention == model.hopfield_attention
    assert torch.equal(classifier.transformer.h[0].attn.c_attn.weight, model.transformer.h[0].attn.c_attn.weight)


def test_an_unsupported_head_refuses_naming_it_and_what_is_supported():
    supported = HopfieldGPT2Config.hopfield_heads
    refusing = refusing_class("AutoModelForSomething", GPT2LMHeadModel, HopfieldGPT2Config, supported)
    with pytest.raises(ValueError) as error:
        refusing(HopfieldGPT2Config(n_layer=1, n_embd=8, n_head=2))
    message = str(error.value)
    assert message.startswith("AutoModelForSomething (GPT2LMHeadModel) is not supported for a hopfield_gpt2")
    assert "AutoModelForCausalLM (HopfieldGPT2LMHeadModel)" in message
    assert "AutoModelForSequenceClassification (HopfieldGPT2ForSequenceClassification)" in message
