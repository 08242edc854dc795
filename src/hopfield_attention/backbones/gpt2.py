"""GPT-2 (transformers `GPT2Model` and its heads: causal LM, sequence and token classification, question
answering), and the classes a saved converted GPT-2 loads as."""

from __future__ import annotations

import torch
from huggingface_hub.dataclasses import strict
from transformers import (
    GPT2Config,
    GPT2ForQuestionAnswering,
    GPT2ForSequenceClassification,
    GPT2ForTokenClassification,
    GPT2LMHeadModel,
    GPT2Model,
)
from transformers.models.gpt2.modeling_gpt2 import GPT2Block

from ..attention.variants import AttentionVariant
from .hf import (
    HopfieldConfig,
    convert_transformers,
    hopfield_model_class,
    register_auto_classes,
)
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


# The classes a converted model becomes and a saved one loads as (each stock class with hf.HopfieldModel).
HopfieldGPT2Model = hopfield_model_class(GPT2Model, HopfieldGPT2Config, __name__)
HopfieldGPT2LMHeadModel = hopfield_model_class(GPT2LMHeadModel, HopfieldGPT2Config, __name__)
HopfieldGPT2ForSequenceClassification = hopfield_model_class(
    GPT2ForSequenceClassification, HopfieldGPT2Config, __name__
)
HopfieldGPT2ForTokenClassification = hopfield_model_class(GPT2ForTokenClassification, HopfieldGPT2Config, __name__)
HopfieldGPT2ForQuestionAnswering = hopfield_model_class(GPT2ForQuestionAnswering, HopfieldGPT2Config, __name__)

register_auto_classes(HopfieldGPT2Config, GPT2Config)


def tiny_gpt2(model_class: type) -> tuple[GPT2Model, dict[str, torch.Tensor]]:
    """A 2-layer, 32-wide GPT-2 of `model_class` with random weights, and token ids for it."""
    config = GPT2Config(
        n_layer=2,
        n_embd=32,
        n_head=4,
        n_positions=32,
        vocab_size=61,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        initializer_range=0.2,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )  # fmt: skip (pad: classification of a batch)
    return model_class(config), {"input_ids": torch.randint(0, 61, (2, 7))}


@register_backbone(GPT2LMHeadModel, GPT2Model, GPT2ForSequenceClassification, GPT2ForTokenClassification,
                   GPT2ForQuestionAnswering, tiny=tiny_gpt2)  # fmt: skip
def convert_gpt2(model, variant: AttentionVariant, skip_connections: bool) -> None:
    base = model.base_model  # the GPT2Model: the model itself, or a head's `transformer`
    if base.config.add_cross_attention:
        raise ValueError("convert_model supports decoder-only GPT-2; got a config with add_cross_attention=True")
    convert_transformers(model, base, base.h, HopfieldGPT2Block, HopfieldGPT2Config, variant, skip_connections)
