"""The backbone registry: model class -> how to convert such a model in place, and how to make a tiny one.

A new family is one `@register_backbone(ModelClass, ..., tiny=...)` on its converter, in its own module.
`tiny(model_class)` returns a small random instance of that class and keyword inputs for its forward: the
tests sweep the registry with it (tests/test_backbones_registry.py), so a new family is tested as it lands.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..attention.variants import AttentionVariant

Converter = Callable[[nn.Module, AttentionVariant, bool], None]
TinyFactory = Callable[[type], tuple[nn.Module, dict[str, torch.Tensor]]]


@dataclass(frozen=True)
class Backbone:
    convert: Converter
    tiny: TinyFactory


BACKBONES: dict[type, Backbone] = {}


def register_backbone(*model_classes: type, tiny: TinyFactory) -> Callable[[Converter], Converter]:
    def register(converter: Converter) -> Converter:
        for cls in model_classes:
            if cls in BACKBONES:
                raise ValueError(f"a backbone converter for {cls.__name__} is already registered")
            BACKBONES[cls] = Backbone(converter, tiny)
        return converter

    return register


def converter_for(model: nn.Module) -> Converter:
    for cls in type(model).__mro__:
        if cls in BACKBONES:
            return BACKBONES[cls].convert
    supported = ", ".join(sorted(f"{c.__module__.split('.')[0]}.{c.__name__}" for c in BACKBONES))
    raise TypeError(f"convert_model supports {supported}; got {type(model).__module__}.{type(model).__name__}")
