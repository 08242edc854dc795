"""timm `VisionTransformer`: each block's attention becomes `HopfieldAttention` (the same submodules, so
weights load unchanged) and each block a `HopfieldBlock` (the skip connections of the variant's `Residual`).

How the state reaches the blocks. timm calls every block with the token stream alone: `blk(x)` in
forward_features and forward_intermediates, `checkpoint(blk, x)` and `checkpoint_seq(blocks, x)` under grad
checkpointing, whose backward re-run calls the block again on the very input tensor it saved. No keyword
reaches a block, and a model-level hook or attribute cannot tell which of several forward passes a
re-running block belongs to (two passes before one backward are common: gradient accumulation, EMA
teachers). timm's seams do not help: `block_fn` and `attn_layer` build the modules (what the class swaps
below amount to) but pass nothing per call. So the state rides with the token stream itself: a forward
hook on `norm_pre` (the last module before the blocks on every path) starts each pass by tagging the
stream with a fresh state for block 0; each block looks up the state of its input and tags its output
with it for the next block. A re-run finds its input's tag, so it reads the state of its own pass. One
case stays ambiguous: block 0 called again on a tensor it has read before (model.blocks(t) twice on one
norm_pre output) is a checkpoint re-run inside a backward pass and a new pass outside one; only there is
the autograd engine asked which (a private call; torch.utils.checkpoint asks the same).

Saving and loading: a converted model built by `timm.create_model` records `architecture: hopfield_vit`
in its `pretrained_cfg`, with the stock architecture, the variant and skip_connections as model args, so
timm's own route round-trips it: `timm.models.save_for_hf(model, dir)` (or `push_to_hf_hub`) then
`timm.create_model("local-dir:<dir>" or "hf-hub:<repo>", pretrained=True)` after `import hopfield_attention`.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import timm
import torch
from timm.layers import Attention
from timm.models import get_model_args, register_model
from timm.models._input import update_model_args
from timm.models.vision_transformer import Block, VisionTransformer

from ..attention.variants import AttentionVariant, restore_attention
from .registry import register_backbone
from .state import CarriedState, StateSource

HOPFIELD_ARCHITECTURE = "hopfield_vit"


@dataclass
class StreamTag:
    stream: weakref.ref  # the token tensor, weakly: a tag never keeps activations alive
    state: CarriedState
    layer: int  # the block that reads this tensor
    read: bool = False


class TokenStreamStates(StateSource):
    """The states of a converted ViT's forward passes, found by the token stream they ride with."""

    def __init__(self, variant: AttentionVariant, root: VisionTransformer, blocks):
        super().__init__(variant, root, blocks)
        self._tags: dict[int, StreamTag] = {}  # id(x) -> its tag

    def __getstate__(self):  # tags are per forward pass and hold weak references: never copied
        return {**self.__dict__, "_tags": {}}

    @torch.compiler.disable
    def state_for(self, layer: int, x: torch.Tensor) -> CarriedState:
        tag = self._tags.get(id(x))
        if tag is not None and tag.stream() is x and tag.layer == layer:
            if layer != 0 or not tag.read:
                tag.read = True
                return tag.state  # the state of this stream's pass, also for a block re-run by checkpointing
            if torch._C._current_graph_task_id() != -1:  # inside a backward pass: a re-run of block 0
                return tag.state
        if layer == 0:  # the blocks called on their own (model.blocks(x), or again on x): a new pass
            return self.new_state()
        raise RuntimeError(
            f"block {layer} got a token stream that block {layer - 1} of this model did not produce; the "
            "blocks of a converted ViT must run in order inside one forward pass"
        )

    @torch.compiler.disable
    def tag(self, x: torch.Tensor, state: CarriedState, layer: int) -> None:
        """`x` is the input of block `layer` in the pass of `state`."""
        key = id(x)
        self._tags[key] = StreamTag(weakref.ref(x), state, layer)
        weakref.finalize(x, self._tags.pop, key, None)


class StartPass:
    """Forward hook of `norm_pre`: its output, the blocks' input, starts a pass with a fresh state (a class,
    so deepcopy and pickle follow it)."""

    def __init__(self, states: TokenStreamStates):
        self.states = states

    def __call__(self, module, args, output: torch.Tensor) -> None:
        self.states.tag(output, self.states.new_state(), 0)


class HopfieldAttention(Attention):
    """timm's Attention with a carried score state; `layer_idx` is set at conversion."""

    layer_idx: int

    def forward(self, x, attn_mask=None, is_causal=False, *, state: CarriedState):
        B, N, _ = x.shape
        gate = self.gate(x).sigmoid() if getattr(self, "gate", None) is not None else None
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B, H, N, D) each
        q, k = self.q_norm(q), self.k_norm(k)
        x, _ = state.attend(
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
            states.tag(x, state["state"], self.attn.layer_idx + 1)
        return x


def record_architecture(model: VisionTransformer, variant: AttentionVariant, skip_connections: bool) -> None:
    """What timm's save_for_hf / push_to_hf_hub write, so that timm.create_model rebuilds the converted model.
    A model built without timm.create_model has no pretrained_cfg, and timm cannot save it that way."""
    pretrained_cfg = getattr(model, "pretrained_cfg", None)
    if pretrained_cfg is None:
        return
    architecture = pretrained_cfg.get("architecture")
    base = get_model_args(model)["base"] if architecture == HOPFIELD_ARCHITECTURE else architecture
    model.pretrained_cfg = model.default_cfg = {**pretrained_cfg, "architecture": HOPFIELD_ARCHITECTURE}
    # timm's own record of reconstruction arguments (what create_model keeps); it has no public setter.
    update_model_args(model, base=base, attention=variant.as_dict(), skip_connections=skip_connections)


@register_model
def hopfield_vit(
    pretrained: bool = False,
    *,
    base: str | None = None,
    attention: dict | None = None,
    skip_connections: bool = True,
    pretrained_cfg_overlay: dict | None = None,
    **kwargs,
) -> VisionTransformer:
    """The timm model `base` (e.g. "vit_base_patch16_224") converted to `attention` (a variant's as_dict()):
    the architecture a converted ViT records, which timm.create_model("local-dir:..." / "hf-hub:...") builds."""
    from .convert import (
        convert_model,  # convert imports the families, this module among them
    )

    if base is None or attention is None:  # listed by timm.list_models, but no model of its own
        raise ValueError(
            f"{HOPFIELD_ARCHITECTURE} is a converted timm ViT and needs base= (a timm ViT name) and attention= (a "
            "variant's as_dict()), e.g. timm.create_model('hopfield_vit', base='vit_tiny_patch16_224', "
            "attention={'name': 'mha'}); a saved one loads with timm.create_model('local-dir:<dir>', "
            "pretrained=True); or convert a model: hopfield_attention.convert_model(timm.create_model(name), 'mha')"
        )

    overlay = {**(pretrained_cfg_overlay or {}), "architecture": base}  # the weights are the stock model's
    model = timm.create_model(base, pretrained=pretrained, pretrained_cfg_overlay=overlay, **kwargs)
    return convert_model(model, restore_attention(attention), skip_connections=skip_connections)


def tiny_vit(model_class: type) -> tuple[VisionTransformer, dict[str, torch.Tensor]]:
    """A 2-block, 32-wide ViT of `model_class` on 16 x 16 images (16 patches and a class token), and images."""
    model = model_class(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=4, num_classes=7,
                        init_values=0.5)  # fmt: skip  (init_values: LayerScale in the path)
    return model, {"x": torch.randn(2, 3, 16, 16)}


@register_backbone(VisionTransformer, tiny=tiny_vit)
def convert_vit(model: VisionTransformer, variant: AttentionVariant, skip_connections: bool) -> None:
    for block in model.blocks:
        if type(block) is not Block or type(block.attn) is not Attention:
            raise TypeError(
                "convert_model supports timm VisionTransformer built from timm's Block and Attention; got "
                f"{type(block).__name__} with {type(block.attn).__name__}"
            )
    record_architecture(model, variant, skip_connections)
    residual = variant.block_residual(skip_connections)
    if residual.is_stock and not variant.carries_state:
        return
    states = TokenStreamStates(variant, root=model, blocks=model.blocks) if variant.carries_state else None
    model.hopfield_states = states
    if states is not None:
        model.norm_pre.register_forward_hook(StartPass(states))
    for layer, block in enumerate(model.blocks):
        block.__class__ = HopfieldBlock
        block.hopfield_residual = residual
        block.hopfield_states = states
        if states is not None:
            block.attn.__class__ = HopfieldAttention
            block.attn.layer_idx = layer
