"""The mathematics: the functional core and the registry of attention variants."""

from .functional import carried_score_attention, modern_hopfield_attention
from .variants import (
    ATTENTION_VARIANTS,
    AttentionVariant,
    build_attention,
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
