"""LLaMA (transformers `LlamaForCausalLM`, `LlamaModel`); grouped-query attention keeps its state on the
query heads."""

from __future__ import annotations

from transformers import LlamaForCausalLM, LlamaModel
from transformers.models.llama.modeling_llama import LlamaDecoderLayer

from ..attention.variants import AttentionVariant
from .hf import convert_transformers
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


@register_backbone(LlamaForCausalLM, LlamaModel)
def convert_llama(model, variant: AttentionVariant, skip_connections: bool) -> None:
    base = model.model if isinstance(model, LlamaForCausalLM) else model
    convert_transformers(model, base, base.layers, HopfieldLlamaDecoderLayer, variant, skip_connections)
