"""How a carried-state variant enters a transformers model (shared by GPT-2 and LLaMA).

The attention function is registered with `transformers.AttentionInterface` under one name and selected
with `set_attn_implementation`. A mask builder is registered under the same name: transformers builds
masks by implementation name, and a name without one silently gets no padding mask.

The forward pass's `CarriedState` travels as the keyword `hopfield_state`: a pre-hook on the base model
adds a fresh one to each call, and transformers hands keywords down through every decoder layer to the
attention function. Activation checkpointing binds a layer's keywords into its re-run, so the backward
re-run sees the same state object as the forward did.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, eager_mask
from transformers.models.llama.modeling_llama import repeat_kv

from ..attention.variants import AttentionVariant
from .residual import Residual
from .state import CarriedState, StateSource

ATTN_IMPLEMENTATION = "hopfield"
STATE_KEYWORD = "hopfield_state"


def hopfield_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    hopfield_state: CarriedState | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """transformers attention function: q (B, H, Tq, D), k and v (B, H_kv, Tk, D) -> ((B, Tq, H, D), None)."""
    if hopfield_state is None:
        raise RuntimeError(
            f"the {ATTN_IMPLEMENTATION!r} attention needs the forward pass's carried state; call the converted "
            "model (or its base model), not an attention module on its own"
        )
    groups = getattr(module, "num_key_value_groups", 1)
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)  # (B, H, Tk, D): the state lives on query heads
    output = hopfield_state.attend(
        module.layer_idx, query, key, value,
        scale=query.shape[-1] ** -0.5 if scaling is None else scaling,
        attn_mask=attention_mask,
        is_causal=attention_mask is None and getattr(module, "is_causal", True),
        dropout_p=dropout,
    )  # fmt: skip
    return output.transpose(1, 2).contiguous(), None  # (B, Tq, H, D)


AttentionInterface.register(ATTN_IMPLEMENTATION, hopfield_attention_forward)
AttentionMaskInterface.register(ATTN_IMPLEMENTATION, eager_mask)  # additive float mask, never None


class AddFreshState:
    """Forward pre-hook of the base model: each call gets its own state (a class, so deepcopy follows it)."""

    def __init__(self, states: StateSource):
        self.states = states

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        return args, {**kwargs, STATE_KEYWORD: self.states.new_state()}


def convert_transformers(
    model: nn.Module,
    base: nn.Module,
    blocks: nn.ModuleList,
    block_class: type[nn.Module],
    variant: AttentionVariant,
    skip_connections: bool,
) -> None:
    """Convert a transformers causal LM in place: `base` is its decoder, `blocks` the decoder layers,
    `block_class` the subclass whose forward applies `Residual`."""
    residual = Residual(variant.residual_alpha, skip_connections)
    if not residual.is_stock:
        for block in blocks:
            block.__class__ = block_class
            block.hopfield_residual = residual
    if variant.carries_state:
        base.hopfield_states = StateSource(variant, root=base, blocks=blocks)
        base.register_forward_pre_hook(AddFreshState(base.hopfield_states), with_kwargs=True)
        model.set_attn_implementation(ATTN_IMPLEMENTATION)
