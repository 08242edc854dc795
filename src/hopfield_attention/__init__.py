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

# The backbones import transformers and timm (seconds): loaded on first use, not with the package.
_BACKBONE_EXPORTS = ("convert_model", "record_attention")


def __getattr__(name: str):
    if name in _BACKBONE_EXPORTS:
        from . import backbones

        return getattr(backbones, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ATTENTION_VARIANTS",
    "AttentionVariant",
    "build_attention",
    "carried_score_attention",
    "convert_model",
    "modern_hopfield_attention",
    "record_attention",
    "register_attention",
]
