"""Modern Hopfield Attention (Masumura & Taki, NeurIPS 2025): self-attention with a hidden state carried
from layer to layer.

Importing the package registers what a saved converted model loads as (transformers' Auto classes, timm's
`hopfield_vit` architecture), so it imports transformers and timm; and it warns once when torch,
transformers or timm is outside the range this release was tested with (versions.py).
"""

from .versions import warn_if_untested

warn_if_untested()

from .attention import (  # noqa: E402  (after the version check, which names what the imports may trip on)
    ATTENTION_VARIANTS,
    AttentionVariant,
    build_attention,
    carried_score_attention,
    modern_hopfield_attention,
    register_attention,
)
from .backbones import (  # noqa: E402
    HopfieldGPT2Config,
    HopfieldGPT2LMHeadModel,
    HopfieldGPT2Model,
    HopfieldLlamaConfig,
    HopfieldLlamaForCausalLM,
    HopfieldLlamaModel,
    LayerAttention,
    convert_model,
    load_vit,
    record_attention,
    save_vit,
)

__all__ = [
    "ATTENTION_VARIANTS",
    "AttentionVariant",
    "HopfieldGPT2Config",
    "HopfieldGPT2LMHeadModel",
    "HopfieldGPT2Model",
    "HopfieldLlamaConfig",
    "HopfieldLlamaForCausalLM",
    "HopfieldLlamaModel",
    "LayerAttention",
    "build_attention",
    "carried_score_attention",
    "convert_model",
    "load_vit",
    "modern_hopfield_attention",
    "record_attention",
    "register_attention",
    "save_vit",
]
