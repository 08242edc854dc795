"""`convert_model` and `record_attention`: the two calls a user of the backbones makes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from ..attention.variants import AttentionVariant, build_attention
from .registry import converter_for
from .state import RecordProbabilities


def convert_model(
    model: nn.Module, attention: str | AttentionVariant = "mha", *, skip_connections: bool = True, **params
) -> nn.Module:
    """Convert `model` in place to an attention variant and return it.

    `attention` is a registered name, built with `params` (mha: alpha, alpha_prime, first_layer, ...), or a
    variant built already (`build_attention`), which is used as it is. skip_connections=False removes the
    skip connections of both sub-blocks of every block (paper Table 7). Parameter names and counts do not
    change; "softmax" with skip connections computes exactly what the stock model does. The variant is
    `model.hopfield_attention`, and transformers models record it in their config (save_pretrained keeps it).
    """
    converter = converter_for(model)  # TypeError for unsupported models, before anything else
    if not isinstance(skip_connections, bool):
        raise ValueError(f"skip_connections must be True or False, got {skip_connections!r}")
    if isinstance(attention, AttentionVariant):
        if params:
            raise ValueError(
                f"got a built variant {attention!r} and parameters {sorted(params)}: give one or the other"
            )
        variant = attention
    else:
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
    layer, its attention probabilities softmax(mask(H_n)) of shape (B, H, Tq, Tk), detached, to the yielded
    list (once per layer, also when checkpointing re-runs a layer)."""
    sources = {id(m.hopfield_states): m.hopfield_states for m in model.modules()
               if getattr(m, "hopfield_states", None) is not None}  # fmt: skip
    if len(sources) != 1:
        raise ValueError(
            "record_attention needs a model converted to a variant with a carried state (mha, realformer); "
            f"{type(model).__name__} has none"
        )
    (source,) = sources.values()
    records: list[torch.Tensor] = []
    observer = RecordProbabilities(records)
    source.observers.append(observer)
    try:
        yield records
    finally:
        source.observers.remove(observer)
