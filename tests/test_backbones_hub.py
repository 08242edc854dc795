"""A converted model saves, loads and reports as a transformers / timm model does: the Hub format round trip,
stock classes refusing an MHA checkpoint, output_attentions, and an attention choice that cannot be undone."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaForCausalLM,
)

from hopfield_attention import (
    ATTENTION_VARIANTS,
    build_attention,
    convert_model,
    record_attention,
)
from hopfield_attention.backbones import BACKBONES
from hopfield_attention.backbones.vit import HOPFIELD_ARCHITECTURE

from support.backbones import auto_heads

TRANSFORMERS_CLASSES = [cls for cls in BACKBONES if cls.__module__.startswith("transformers.")]
STATEFUL = [name for name in sorted(ATTENTION_VARIANTS) if ATTENTION_VARIANTS[name].carries_state]
# (variant, params, skip_connections): every registered variant, and the no-skip model of paper Table 7
CONVERSIONS = [(name, {}, True) for name in sorted(ATTENTION_VARIANTS)] + [
    ("softmax", {}, False),
    ("mha", dict(alpha=0.7, alpha_prime=0.2, first_layer="zeros", implementation="fused"), False),
]


def tiny(model_class, seed=0):
    torch.manual_seed(seed)
    model, inputs = BACKBONES[model_class].tiny(model_class)
    return model.eval(), inputs


def output(model, inputs):
    with torch.no_grad():
        out = model(**inputs)
    return out if isinstance(out, torch.Tensor) else out[0]


def auto_class(model):
    """The Auto class that transformers maps the model's stock class to (AutoModelForCausalLM for a causal LM)."""
    stock = next(cls for cls in type(model).__mro__ if cls in BACKBONES)
    autos = [auto for auto, head in auto_heads(stock.config_class).items() if head is stock]
    return AutoModelForCausalLM if AutoModelForCausalLM in autos else autos[0]


# --- transformers: save_pretrained, then the Auto classes --------------------------------------------------


@pytest.mark.parametrize("conversion", CONVERSIONS, ids=lambda c: f"{c[0]}-skip{c[2]}")
@pytest.mark.parametrize("model_class", TRANSFORMERS_CLASSES, ids=lambda cls: cls.__name__)
def test_auto_classes_load_the_converted_model(model_class, conversion, tmp_path):
    attention, params, skip = conversion
    model, inputs = tiny(model_class)
    convert_model(model, attention, skip_connections=skip, **params)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == model.config.model_type == f"hopfield_{model_class.config_class.model_type}"
    assert saved["hopfield_attention"] == model.hopfield_attention.as_dict()
    assert saved["hopfield_skip_connections"] is skip

    loaded = auto_class(model).from_pretrained(tmp_path).eval()
    assert isinstance(loaded, model_class) and type(loaded).__name__.startswith("Hopfield")
    assert loaded.hopfield_attention == model.hopfield_attention
    assert loaded.hopfield_skip_connections is skip
    assert loaded.config._attn_implementation == model.config._attn_implementation
    assert torch.equal(output(loaded, inputs), output(model, inputs))
    # the class's own from_pretrained gives the same model
    again = type(loaded).from_pretrained(tmp_path).eval()
    assert torch.equal(output(again, inputs), output(model, inputs))


def test_the_converted_model_is_not_the_stock_model_in_the_round_trip(tmp_path):
    """The round trip is sharp: the stock model's logits differ from what comes back."""
    stock, inputs = tiny(GPT2LMHeadModel)
    model = convert_model(copy.deepcopy(stock), "mha", alpha=0.5)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert torch.equal(output(loaded, inputs), output(model, inputs))
    assert not torch.allclose(output(loaded, inputs), output(stock, inputs), atol=1e-3)


@pytest.mark.parametrize("conversion", [c for c in CONVERSIONS if not (c[0] == "softmax" and c[2])],
                         ids=lambda c: f"{c[0]}-skip{c[2]}")  # fmt: skip
@pytest.mark.parametrize("model_class", [GPT2LMHeadModel, LlamaForCausalLM], ids=lambda cls: cls.__name__)
def test_a_stock_class_refuses_a_converted_checkpoint_saying_how_to_load_it(model_class, conversion, tmp_path):
    attention, params, skip = conversion
    model, inputs = tiny(model_class)
    convert_model(model, attention, skip_connections=skip, **params).save_pretrained(tmp_path)
    stock = model_class.from_pretrained(tmp_path)
    with pytest.raises(RuntimeError, match=r"AutoModelForCausalLM\.from_pretrained\(path\).*import hopfield_attention"):
        stock(**inputs)


def test_a_saved_softmax_model_with_skips_is_the_stock_model_for_a_stock_class(tmp_path):
    model, inputs = tiny(GPT2LMHeadModel)
    convert_model(model, "softmax").save_pretrained(tmp_path)
    assert "attn_implementation" not in json.loads((tmp_path / "config.json").read_text())
    assert torch.equal(output(GPT2LMHeadModel.from_pretrained(tmp_path).eval(), inputs), output(model, inputs))


def test_attn_implementation_hopfield_on_a_stock_class_fails_saying_how_to_load(tmp_path):
    stock, inputs = tiny(GPT2LMHeadModel)
    stock.save_pretrained(tmp_path)
    model = GPT2LMHeadModel.from_pretrained(tmp_path, attn_implementation="hopfield")
    with pytest.raises(RuntimeError, match=r"convert_model.*does not convert it"):
        model(**inputs)


def test_conversion_leaves_the_callers_config_object_alone():
    config = GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=61, bos_token_id=0, eos_token_id=0)
    model = GPT2LMHeadModel(config)
    stock_attention = config._attn_implementation  # what the stock model set (sdpa)
    convert_model(model, "mha", alpha=0.5)
    assert type(config) is GPT2Config and config._attn_implementation == stock_attention != "hopfield"
    assert not hasattr(config, "hopfield_attention")
    assert all(m.config is model.config for m in model.modules() if "config" in m.__dict__)
    twin = GPT2LMHeadModel(config)  # a second model of the same config is stock, and runs
    assert twin(torch.randint(0, 61, (1, 5))).logits.shape == (1, 5, 61)


def test_auto_config_builds_a_converted_model_from_scratch():
    config = AutoConfig.for_model(
        "hopfield_gpt2", n_layer=2, n_embd=32, n_head=4, vocab_size=61, bos_token_id=0, eos_token_id=0,
        hopfield_attention=build_attention("realformer").as_dict(),
    )  # fmt: skip
    model = AutoModelForCausalLM.from_config(config)
    assert model.hopfield_attention.name == "realformer" and model.config._attn_implementation == "hopfield"


# --- output_attentions -------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", STATEFUL)
@pytest.mark.parametrize("model_class", TRANSFORMERS_CLASSES, ids=lambda cls: cls.__name__)
def test_output_attentions_returns_the_probabilities_each_layer_used(model_class, variant):
    model, inputs = tiny(model_class)
    convert_model(model, variant)
    mask = torch.ones_like(inputs["input_ids"])
    mask[1, :2] = 0  # left padding: the mask reaches the maps
    with torch.no_grad(), record_attention(model) as recorded:
        out = model(**inputs, attention_mask=mask, output_attentions=True)
    layers = model.config.num_hidden_layers
    b, t = inputs["input_ids"].shape
    assert len(out.attentions) == len(recorded) == layers
    for got, want in zip(out.attentions, recorded):
        assert got.shape == (b, model.config.num_attention_heads, t, t)
        assert torch.equal(got, want)
        assert torch.all(got[0].triu(1) == 0) and torch.all(got[1, :, 2:, :2] == 0)  # causal, and the padding
    with torch.no_grad():
        assert output(model, inputs) is not None and model(**inputs).attentions is None  # only when asked


@pytest.mark.parametrize("model_class", [GPT2LMHeadModel, LlamaForCausalLM], ids=lambda cls: cls.__name__)
def test_output_attentions_at_the_softmax_limit_equals_the_stock_eager_maps(model_class):
    stock, inputs = tiny(model_class)
    stock.set_attn_implementation("eager")
    model = convert_model(copy.deepcopy(stock), "mha", alpha=None, alpha_prime=0.0)
    with torch.no_grad():
        want = stock(**inputs, output_attentions=True).attentions
        got = model(**inputs, output_attentions=True).attentions
    assert len(got) == len(want) == stock.config.num_hidden_layers
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)


def test_output_attentions_from_the_config_and_through_generate(tmp_path):
    model, inputs = tiny(GPT2LMHeadModel)
    convert_model(model, "mha", alpha=0.5).save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path, output_attentions=True).eval()
    with torch.no_grad():
        assert len(loaded(**inputs).attentions) == 2
    loaded.config.output_attentions = False
    with torch.no_grad():
        assert loaded(**inputs).attentions is None
        run = loaded.generate(inputs["input_ids"], max_new_tokens=2, do_sample=False, output_attentions=True,
                              return_dict_in_generate=True, pad_token_id=0)  # fmt: skip
    assert [len(step) for step in run.attentions] == [2, 2]
    assert run.attentions[1][0].shape[-2:] == (1, inputs["input_ids"].shape[1] + 1)  # the decoded token's row


# --- the attention implementation cannot be switched away from what runs ---------------------------------


def test_switching_a_carried_state_model_to_stock_attention_raises():
    model, inputs = tiny(GPT2LMHeadModel)
    convert_model(model, "mha", alpha=0.5)
    before = output(model, inputs)
    for switch in (
        lambda: model.set_attn_implementation("sdpa"),
        lambda: model.transformer.set_attn_implementation("eager"),
        lambda: setattr(model.config, "_attn_implementation", "sdpa"),
    ):
        with pytest.raises(ValueError, match="carried score state.*silently drop the state"):
            switch()
    assert model.hopfield_attention.name == "mha" and model.config._attn_implementation == "hopfield"
    assert torch.equal(output(model, inputs), before)


def test_loading_a_carried_state_model_with_another_attention_raises(tmp_path):
    model, _ = tiny(LlamaForCausalLM)
    convert_model(model, "realformer").save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="only the 'hopfield' attention implementation"):
        AutoModelForCausalLM.from_pretrained(tmp_path, attn_implementation="sdpa")


def test_a_softmax_model_switches_among_stock_implementations_but_not_to_hopfield():
    model, inputs = tiny(GPT2LMHeadModel)
    convert_model(model, "softmax", skip_connections=False)
    sdpa = output(model, inputs)
    model.set_attn_implementation("eager")
    # Two kernels, so float32 rounding differs by host (1.2e-6 seen on an Intel Xeon): torch's float32 tolerances.
    torch.testing.assert_close(output(model, inputs), sdpa)
    with pytest.raises(ValueError, match="needs a variant with a carried state"):
        model.set_attn_implementation("hopfield")
    assert model.config._attn_implementation == "eager"


# --- timm: save_for_hf, then create_model("local-dir:...") -----------------------------------------------


def timm_vit(seed=0):
    torch.manual_seed(seed)
    return timm.create_model(
        "vit_tiny_patch16_224", img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=4, num_classes=7
    ).eval()  # fmt: skip


@pytest.mark.parametrize("conversion", CONVERSIONS, ids=lambda c: f"{c[0]}-skip{c[2]}")
def test_timm_save_route_round_trips_a_converted_vit(conversion, tmp_path):
    attention, params, skip = conversion
    stock = timm_vit()
    model = convert_model(copy.deepcopy(stock), attention, skip_connections=skip, **params)
    timm.models.save_for_hf(model, tmp_path, safe_serialization=True)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["architecture"] == HOPFIELD_ARCHITECTURE
    assert saved["model_args"]["base"] == "vit_tiny_patch16_224"
    assert saved["model_args"]["attention"] == model.hopfield_attention.as_dict()
    loaded = timm.create_model(f"local-dir:{tmp_path}", pretrained=True).eval()
    assert loaded.hopfield_attention == model.hopfield_attention and loaded.hopfield_skip_connections is skip
    images = torch.randn(2, 3, 16, 16)
    assert torch.equal(output(loaded, {"x": images}), output(model, {"x": images}))
    if (attention, skip) != ("softmax", True):
        assert not torch.allclose(output(loaded, {"x": images}), output(stock, {"x": images}), atol=1e-4)
    again = Path(tmp_path) / "again"  # the loaded model saves the same way
    timm.models.save_for_hf(loaded, again)
    assert (
        json.loads((again / "config.json").read_text())["model_args"]["attention"] == saved["model_args"]["attention"]
    )


def test_timm_refuses_a_converted_vit_without_the_package(tmp_path):
    timm.models.save_for_hf(convert_model(timm_vit(), "mha", alpha=0.5), tmp_path)
    script = f"import timm; timm.create_model('local-dir:{tmp_path}', pretrained=True)"
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode != 0 and f"Unknown model ({HOPFIELD_ARCHITECTURE})" in run.stderr


def test_the_listed_hopfield_vit_name_alone_says_what_to_call():
    assert HOPFIELD_ARCHITECTURE in timm.list_models()
    with pytest.raises(ValueError, match=r"needs base=.*attention=.*local-dir:<dir>.*convert_model"):
        timm.create_model(HOPFIELD_ARCHITECTURE)
    model = timm.create_model(HOPFIELD_ARCHITECTURE, base="vit_tiny_patch16_224", attention={"name": "mha"},
                              img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=4)  # fmt: skip
    assert model.hopfield_attention.name == "mha"
