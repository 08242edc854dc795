"""The backbone registry: model class -> the function that converts such a model in place.

A new family is one `@register_backbone(ModelClass, ...)` on its converter, in its own module.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from ..attention.variants import AttentionVariant

Converter = Callable[[nn.Module, AttentionVariant, bool], None]
BACKBONES: dict[type, Converter] = {}


def register_backbone(*model_classes: type) -> Callable[[Converter], Converter]:
    def register(converter: Converter) -> Converter:
        for cls in model_classes:
            if cls in BACKBONES:
                raise ValueError(f"a backbone converter for {cls.__name__} is already registered")
            BACKBONES[cls] = converter
        return converter

    return register


def converter_for(model: nn.Module) -> Converter:
    for cls in type(model).__mro__:
        if cls in BACKBONES:
            return BACKBONES[cls]
    supported = ", ".join(sorted(f"{c.__module__.split('.')[0]}.{c.__name__}" for c in BACKBONES))
    raise TypeError(f"convert_model supports {supported}; got {type(model).__module__}.{type(model).__name__}")
