"""GPT-2 (transformers `GPT2LMHeadModel`, `GPT2Model`), and the classes a saved converted GPT-2 loads as."""

from __future__ import annotations

import torch
from huggingface_hub.dataclasses import strict
from transformers import GPT2Config, GPT2LMHeadModel, GPT2Model
from transformers.models.gpt2.modeling_gpt2 import GPT2Block

from ..attention.variants import AttentionVariant
from .hf import HopfieldConfig, convert_from_config, convert_transformers, register_auto_classes
from .registry import register_backbone


class HopfieldGPT2Block(GPT2Block):
    """GPT2Block with the skip connections of `self.hopfield_residual`; with the stock residual it computes
    exactly what GPT2Block does (tested bit for bit)."""

    def forward(self, hidden_states, cache=None, attention_mask=None, encoder_hidden_states=None,
                encoder_attention_mask=None, use_cache=False, **kwargs):  # fmt: skip
        attn_output, _ = self.attn(
            self.ln_1(hidden_states), cache=cache, attention_mask=attention_mask, use_cache=use_cache, **kwargs
        )
        hidden_states = self.hopfield_residual.attention(hidden_states, attn_output)
        return self.hopfield_residual.mlp(hidden_states, self.mlp(self.ln_2(hidden_states)))


@strict
class HopfieldGPT2Config(HopfieldConfig, GPT2Config):
    """GPT2Config of a converted model (hf.HopfieldConfig): config.json says `model_type: hopfield_gpt2`."""

    model_type = "hopfield_gpt2"

    hopfield_attention: dict | None = None
    hopfield_skip_connections: bool = True


class HopfieldGPT2Model(GPT2Model):
    """What AutoModel builds for a saved converted GPT2Model: the stock model, converted as its config says."""

    config_class = HopfieldGPT2Config

    def __init__(self, config: HopfieldGPT2Config):
        super().__init__(config)
        convert_from_config(self)


class HopfieldGPT2LMHeadModel(GPT2LMHeadModel):
    """What AutoModelForCausalLM builds for a saved converted GPT2LMHeadModel."""

    config_class = HopfieldGPT2Config

    def __init__(self, config: HopfieldGPT2Config):
        super().__init__(config)
        convert_from_config(self)


register_auto_classes(HopfieldGPT2Config, model=HopfieldGPT2Model, causal_lm=HopfieldGPT2LMHeadModel)


def tiny_gpt2(model_class: type) -> tuple[GPT2Model, dict[str, torch.Tensor]]:
    """A 2-layer, 32-wide GPT-2 of `model_class` with random weights, and token ids for it."""
    config = GPT2Config(n_layer=2, n_embd=32, n_head=4, n_positions=32, vocab_size=61,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, initializer_range=0.2,
                        bos_token_id=0, eos_token_id=0)  # fmt: skip
    return model_class(config), {"input_ids": torch.randint(0, 61, (2, 7))}


@register_backbone(GPT2LMHeadModel, GPT2Model, tiny=tiny_gpt2)
def convert_gpt2(model, variant: AttentionVariant, skip_connections: bool) -> None:
    base = model.transformer if isinstance(model, GPT2LMHeadModel) else model
    if base.config.add_cross_attention:
        raise ValueError("convert_model supports decoder-only GPT-2; got a config with add_cross_attention=True")
    convert_transformers(model, base, base.h, HopfieldGPT2Block, HopfieldGPT2Config, variant, skip_connections)
