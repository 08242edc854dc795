"""Backbones: how an attention variant enters GPT-2, LLaMA and timm ViT models, converted in place.

Each family registers its converter and a tiny-model factory for its model classes (registry.py);
`convert_model` looks the model up there and applies the variant. Importing this package also registers
the classes a saved converted model loads as: transformers' Auto classes (HopfieldGPT2*, HopfieldLlama*)
and timm's `hopfield_vit` architecture.
"""

from __future__ import annotations

from . import gpt2, llama, vit  # noqa: F401  (each registers its model classes)
from .convert import convert_model, record_attention
from .gpt2 import HopfieldGPT2Config, HopfieldGPT2LMHeadModel, HopfieldGPT2Model
from .llama import HopfieldLlamaConfig, HopfieldLlamaForCausalLM, HopfieldLlamaModel
from .registry import BACKBONES, converter_for, register_backbone
from .state import CarriedState, LayerAttention, StateSource
from .vit import load_vit, save_vit

__all__ = [
    "BACKBONES",
    "CarriedState",
    "HopfieldGPT2Config",
    "HopfieldGPT2LMHeadModel",
    "HopfieldGPT2Model",
    "HopfieldLlamaConfig",
    "HopfieldLlamaForCausalLM",
    "HopfieldLlamaModel",
    "LayerAttention",
    "StateSource",
    "convert_model",
    "converter_for",
    "record_attention",
    "load_vit",
    "register_backbone",
    "save_vit",
]
