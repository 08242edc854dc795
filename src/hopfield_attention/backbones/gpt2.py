"""GPT-2 (transformers `GPT2LMHeadModel`, `GPT2Model`)."""

from __future__ import annotations

from transformers import GPT2LMHeadModel, GPT2Model
from transformers.models.gpt2.modeling_gpt2 import GPT2Block

from ..attention.variants import AttentionVariant
from .hf import convert_transformers
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


@register_backbone(GPT2LMHeadModel, GPT2Model)
def convert_gpt2(model, variant: AttentionVariant, skip_connections: bool) -> None:
    base = model.transformer if isinstance(model, GPT2LMHeadModel) else model
    if base.config.add_cross_attention:
        raise ValueError("convert_model supports decoder-only GPT-2; got a config with add_cross_attention=True")
    convert_transformers(model, base, base.h, HopfieldGPT2Block, variant, skip_connections)
