"""timm `VisionTransformer`: each block's attention becomes `HopfieldAttention` (the same submodules, so
weights load unchanged) and each block a `HopfieldBlock` (the skip connections of `Residual`)."""

from __future__ import annotations

import weakref

import torch
from timm.layers import Attention, use_reentrant_ckpt
from timm.models.vision_transformer import Block, VisionTransformer

from ..attention.variants import AttentionVariant
from .registry import register_backbone
from .residual import Residual
from .state import CarriedState, StateSource


class TokenStreamStates(StateSource):
    """timm calls a block with the token stream alone, so the state rides along with it: each block tags
    its output tensor with the forward pass's state, and the next block looks its input up. A checkpointed
    block is re-run on its original input tensor, so the re-run finds the original state."""

    def __init__(self, variant: AttentionVariant, root: VisionTransformer, blocks):
        super().__init__(variant, root, blocks)
        self._tags: dict[int, tuple[weakref.ref, CarriedState]] = {}

    def __getstate__(self):  # tags are per forward pass and hold weak references: never copied
        return {**self.__dict__, "_tags": {}}

    @torch.compiler.disable
    def state_for(self, layer: int, x: torch.Tensor) -> CarriedState:
        tag = self._tags.get(id(x))
        rerun = torch._C._current_graph_task_id() != -1  # inside a backward pass: checkpointing re-runs a block
        if tag is not None and tag[0]() is x and (layer != 0 or rerun):
            return tag[1]  # a later block of this pass, or a block re-run for the backward pass
        if layer != 0:
            raise RuntimeError(
                f"block {layer} got a token stream that block {layer - 1} of this model did not produce; the "
                "blocks of a converted ViT must run in order inside one forward pass"
            )
        if self.root.grad_checkpointing and self.root.training and use_reentrant_ckpt():
            raise RuntimeError(
                "reentrant activation checkpointing (timm.layers.set_reentrant_ckpt(True)) would cut the "
                "carried state's gradient path; use timm's default, use_reentrant=False"
            )
        state = self.new_state()  # the first block outside a backward pass: a new pass begins
        self.tag(x, state)
        return state

    @torch.compiler.disable
    def tag(self, x: torch.Tensor, state: CarriedState) -> None:
        key = id(x)
        self._tags[key] = (weakref.ref(x), state)
        weakref.finalize(x, self._tags.pop, key, None)


class HopfieldAttention(Attention):
    """timm's Attention with a carried score state; `layer_idx` is set at conversion."""

    layer_idx: int

    def forward(self, x, attn_mask=None, is_causal=False, *, state: CarriedState):
        B, N, _ = x.shape
        gate = self.gate(x).sigmoid() if getattr(self, "gate", None) is not None else None
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B, H, N, D) each
        q, k = self.q_norm(q), self.k_norm(k)
        x = state.attend(
            self.layer_idx, q, k, v,
            scale=self.scale, attn_mask=attn_mask, is_causal=is_causal,
            dropout_p=self.attn_drop.p if self.training else 0.0,
        )  # fmt: skip
        x = self.norm(x.transpose(1, 2).reshape(B, N, self.num_heads * self.head_dim))  # (B, N, C)
        if gate is not None:
            x = x * gate
        return self.proj_drop(self.proj(x))


class HopfieldBlock(Block):
    """timm's Block with the skip connections of `self.hopfield_residual`; `self.hopfield_states` is None
    for a variant without a state (softmax without skip connections)."""

    def forward(self, x, attn_mask=None, is_causal=False):
        states: TokenStreamStates | None = self.hopfield_states
        state = {} if states is None else {"state": states.state_for(self.attn.layer_idx, x)}
        attn = self.attn(self.norm1(x), attn_mask=attn_mask, is_causal=is_causal, **state)
        x = self.hopfield_residual.attention(x, self.drop_path1(self.ls1(attn)))
        x = self.hopfield_residual.mlp(x, self.drop_path2(self.ls2(self.mlp(self.norm2(x)))))
        if states is not None:
            states.tag(x, state["state"])
        return x


@register_backbone(VisionTransformer)
def convert_vit(model: VisionTransformer, variant: AttentionVariant, skip_connections: bool) -> None:
    for block in model.blocks:
        if type(block) is not Block or type(block.attn) is not Attention:
            raise TypeError(
                "convert_model supports timm VisionTransformer built from timm's Block and Attention; got "
                f"{type(block).__name__} with {type(block.attn).__name__}"
            )
    residual = Residual(variant.residual_alpha, skip_connections)
    if residual.is_stock and not variant.carries_state:
        return
    states = TokenStreamStates(variant, root=model, blocks=model.blocks) if variant.carries_state else None
    model.hopfield_states = states
    for layer, block in enumerate(model.blocks):
        block.__class__ = HopfieldBlock
        block.hopfield_residual = residual
        block.hopfield_states = states
        if states is not None:
            block.attn.__class__ = HopfieldAttention
            block.attn.layer_idx = layer
