"""LLaMA (transformers `LlamaForCausalLM`, `LlamaModel`), and the classes a saved converted LLaMA loads as.
Grouped-query attention keeps its state on the query heads."""

from __future__ import annotations

import torch
from huggingface_hub.dataclasses import strict
from transformers import LlamaConfig, LlamaForCausalLM, LlamaModel
from transformers.models.llama.modeling_llama import LlamaDecoderLayer

from ..attention.variants import AttentionVariant
from .hf import HopfieldConfig, convert_from_config, convert_transformers, register_auto_classes
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


class HopfieldLlamaModel(LlamaModel):
    """What AutoModel builds for a saved converted LlamaModel: the stock model, converted as its config says."""

    config_class = HopfieldLlamaConfig

    def __init__(self, config: HopfieldLlamaConfig):
        super().__init__(config)
        convert_from_config(self)


class HopfieldLlamaForCausalLM(LlamaForCausalLM):
    """What AutoModelForCausalLM builds for a saved converted LlamaForCausalLM."""

    config_class = HopfieldLlamaConfig

    def __init__(self, config: HopfieldLlamaConfig):
        super().__init__(config)
        convert_from_config(self)


register_auto_classes(HopfieldLlamaConfig, model=HopfieldLlamaModel, causal_lm=HopfieldLlamaForCausalLM)


def tiny_llama(model_class: type) -> tuple[LlamaModel, dict[str, torch.Tensor]]:
    """A 2-layer, 32-wide LLaMA of `model_class` (4 query heads on 2 key/value heads) and token ids for it."""
    config = LlamaConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=4, num_key_value_heads=2,
                         intermediate_size=64, vocab_size=61, max_position_embeddings=32,
                         initializer_range=0.2)  # fmt: skip
    return model_class(config), {"input_ids": torch.randint(0, 61, (2, 7))}


@register_backbone(LlamaForCausalLM, LlamaModel, tiny=tiny_llama)
def convert_llama(model, variant: AttentionVariant, skip_connections: bool) -> None:
    base = model.model if isinstance(model, LlamaForCausalLM) else model
    convert_transformers(model, base, base.layers, HopfieldLlamaDecoderLayer, HopfieldLlamaConfig, variant,
                         skip_connections)  # fmt: skip
