"""Backbones: how an attention variant enters GPT-2, LLaMA and timm ViT models, converted in place.

Each family registers its converter for its model classes (registry.py); `convert_model` looks the model
up there and applies the variant built by `build_attention`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from ..attention.variants import build_attention
from . import gpt2, llama, vit  # noqa: F401  (each registers its model classes)
from .registry import BACKBONES, converter_for, register_backbone
from .state import CarriedState, StateSource


def convert_model(model: nn.Module, attention: str = "mha", *, skip_connections: bool = True, **params) -> nn.Module:
    """Convert `model` in place to the registered attention variant `attention` and return it.

    params go to `build_attention(attention, **params)` (mha: alpha, alpha_prime, first_layer, ...).
    skip_connections=False removes the skip connections of both sub-blocks of every block (paper Table 7).
    Parameter names and counts do not change; "softmax" with skip connections leaves the model untouched.
    The variant is recorded as `model.hopfield_attention`.
    """
    converter = converter_for(model)  # TypeError for unsupported models, before anything else
    if not isinstance(skip_connections, bool):
        raise ValueError(f"skip_connections must be True or False, got {skip_connections!r}")
    variant = build_attention(attention, **params)
    previous = getattr(model, "hopfield_attention", None)
    if previous is not None and not (previous.name == "softmax" and model.hopfield_skip_connections):
        raise ValueError(
            f"model is already converted to {previous!r} (skip_connections={model.hopfield_skip_connections}); "
            "convert a fresh copy of the stock model instead"
        )
    converter(model, variant, skip_connections)
    model.hopfield_attention = variant
    model.hopfield_skip_connections = skip_connections
    return model


@contextlib.contextmanager
def record_attention(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Within the block, every forward pass of the converted (mha / realformer) `model` appends, layer by
    layer, its attention probabilities softmax(mask(H_n)) of shape (B, H, Tq, Tk) to the yielded list."""
    sources = {id(m.hopfield_states): m.hopfield_states for m in model.modules()
               if getattr(m, "hopfield_states", None) is not None}  # fmt: skip
    if len(sources) != 1:
        raise ValueError(
            "record_attention needs a model converted to a variant with a carried state (mha, realformer); "
            f"{type(model).__name__} has none"
        )
    (source,) = sources.values()
    records: list[torch.Tensor] = []
    previous, source.records = source.records, records
    try:
        yield records
    finally:
        source.records = previous


__all__ = [
    "BACKBONES",
    "CarriedState",
    "StateSource",
    "convert_model",
    "converter_for",
    "record_attention",
    "register_backbone",
]
