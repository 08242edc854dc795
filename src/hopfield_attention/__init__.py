"""Modern Hopfield Attention (Masumura & Taki, NeurIPS 2025): self-attention with a hidden state carried
from layer to layer."""

from .attention import (
    ATTENTION_VARIANTS,
    AttentionVariant,
    build_attention,
    carried_score_attention,
    modern_hopfield_attention,
    register_attention,
)

__all__ = [
    "ATTENTION_VARIANTS",
    "AttentionVariant",
    "build_attention",
    "carried_score_attention",
    "modern_hopfield_attention",
    "register_attention",
]
