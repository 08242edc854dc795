"""LLaMA (transformers `LlamaModel` and its heads: causal LM, sequence and token classification, question
answering), and the classes a saved converted LLaMA loads as.
Grouped-query attention keeps its state on the query heads."""

from __future__ import annotations

import torch
from huggingface_hub.dataclasses import strict
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForQuestionAnswering,
    LlamaForSequenceClassification,
    LlamaForTokenClassification,
    LlamaModel,
)
from transformers.models.llama.modeling_llama import LlamaDecoderLayer

from ..attention.variants import AttentionVariant
from .hf import (
    HopfieldConfig,
    convert_transformers,
    hopfield_model_class,
    register_auto_classes,
)
from .registry import register_backbone


class HopfieldLlamaDecoderLayer(LlamaDecoderLayer):
    """LlamaDecoderLayer with the skip connections of `self.hopfield_residual`; with the stock residual it
    computes exactly what LlamaDecoderLayer does (tested bit for bit)."""

    def forward(self, hidden_states, attention_mask=None, position_ids=None, cache=None, use_cache=False,
                position_embeddings=None, **kwargs):  # fmt: skip
        attn_output, _ = self.self_attn(
            hidden_states=self.input_layernorm(hidden_states),
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=use_cache,
            position_embeddings=position_embeddings,
            **kwargs,
        )
        hidden_states = self.hopfield_residual.attention(hidden_states, attn_output)
        return self.hopfield_residual.mlp(hidden_states, self.mlp(self.post_attention_layernorm(hidden_states)))


@strict
class HopfieldLlamaConfig(HopfieldConfig, LlamaConfig):
    """LlamaConfig of a converted model (hf.HopfieldConfig): config.json says `model_type: hopfield_llama`."""

    model_type = "hopfield_llama"

    hopfield_attention: dict | None = None
    hopfield_skip_connections: bool = True


# The classes a converted model becomes and a saved one loads as (each stock class with hf.HopfieldModel).
HopfieldLlamaModel = hopfield_model_class(LlamaModel, HopfieldLlamaConfig, __name__)
HopfieldLlamaForCausalLM = hopfield_model_class(LlamaForCausalLM, HopfieldLlamaConfig, __name__)
HopfieldLlamaForSequenceClassification = hopfield_model_class(
    LlamaForSequenceClassification, HopfieldLlamaConfig, __name__
)
HopfieldLlamaForTokenClassification = hopfield_model_class(LlamaForTokenClassification, HopfieldLlamaConfig, __name__)
HopfieldLlamaForQuestionAnswering = hopfield_model_class(LlamaForQuestionAnswering, HopfieldLlamaConfig, __name__)

register_auto_classes(HopfieldLlamaConfig, LlamaConfig)


def tiny_llama(model_class: type) -> tuple[LlamaModel, dict[str, torch.Tensor]]:
    """A 2-layer, 32-wide LLaMA of `model_class` (4 query heads on 2 key/value heads) and token ids for it."""
    config = LlamaConfig(
        num_hidden_layers=2,
        hidden_size=32,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=64,
        vocab_size=61,
        max_position_embeddings=32,
        initializer_range=0.2,
        pad_token_id=0,
    )  # fmt: skip (pad: classification of a batch)
    return model_class(config), {"input_ids": torch.randint(0, 61, (2, 7))}


@register_backbone(LlamaForCausalLM, LlamaModel, LlamaForSequenceClassification, LlamaForTokenClassification,
                   LlamaForQuestionAnswering, tiny=tiny_llama)  # fmt: skip
def convert_llama(model, variant: AttentionVariant, skip_connections: bool) -> None:
    base = model.base_model  # the LlamaModel: the model itself, or a head's `model`
    convert_transformers(model, base, base.layers, HopfieldLlamaDecoderLayer, HopfieldLlamaConfig, variant,
                         skip_connections)  # fmt: skip
