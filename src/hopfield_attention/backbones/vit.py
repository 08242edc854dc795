"""timm `VisionTransformer`: each block's attention becomes `HopfieldAttention` (the same submodules, so
weights load unchanged), each block a `HopfieldBlock` (the skip connections of the variant's `Residual`),
and the model a `HopfieldVisionTransformer` (or the Hopfield class of its timm subclass).

How the state reaches the blocks: as an argument, as in GPT-2 and LLaMA. The converted class's
`forward_features` and `forward_intermediates` start each forward pass with a fresh `CarriedState` and hand
it to every block, `block(x, state=state)`. Under grad checkpointing a block is a function of the token stream
and the previous layer's state H_{n-1}, returning its output and H_n (`checkpointed_layer`): the pass's state
is read before and written after the checkpointed call, whose backward re-run gets those very arguments (the
state of its own pass, also with two passes before one backward) and touches nothing outside itself.
`model.blocks(x)` on its own is a pass of its own. Nothing is keyed on tensor identity, and `torch.compile`
traces a whole training pass without a graph break, with or without checkpointing (tests/test_backbones_vit_state.py).

What a checkpoint records: a converted ViT (other than softmax with skip connections, which is the stock
model) has a buffer `hopfield_vit`, its conversion as JSON bytes (variant, skip_connections, and the base
architecture where timm.create_model built it). So every state dict of it carries the record:
a stock ViT refuses it (torch: Unexpected key(s) in state_dict: "hopfield_vit"), `load_vit(path)` rebuilds
the converted model from it, and a converted model loads any weights of its architecture (parameter names do
not change) and keeps its own conversion. timm's own save route round-trips it too: the model records
`architecture: hopfield_vit` in its `pretrained_cfg`, with the base, the variant and skip_connections as model
args; `save_vit(model, dir)` writes safetensors and config.json, and `timm.create_model("local-dir:<dir>" or
"hf-hub:<repo>", pretrained=True)` rebuilds it after `import hopfield_attention`.

torch.jit.script refuses a converted ViT with one message (`__prepare_scriptable__`): the blocks take a Python
state object, which TorchScript cannot type. torch.compile and torch.export are the supported compilers.
"""

from __future__ import annotations

import json
from pathlib import Path

import timm
import torch
from timm.layers import Attention
from timm.models import checkpoint, get_model_args, load_pretrained, load_state_dict, register_model
from timm.models._features import feature_take_indices
from timm.models._input import update_model_args
from timm.models.deit import VisionTransformerDistilled
from timm.models.vision_transformer import Block, VisionTransformer, checkpoint_filter_fn
from torch import nn

from ..attention.variants import AttentionVariant, restore_attention
from .registry import register_backbone
from .state import CarriedState, StateSource, refuse_reentrant

HOPFIELD_ARCHITECTURE = "hopfield_vit"
RECORD = HOPFIELD_ARCHITECTURE  # the state dict key of the conversion record (a buffer of the model)

NOT_SCRIPTABLE = (
    "torch.jit.script cannot compile a converted ViT: its blocks take the carried attention state, a Python "
    "object TorchScript cannot type; use torch.compile (or torch.export) instead"
)


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
    """timm's Block with the skip connections of `self.hopfield_residual`. `state` is the forward pass's
    CarriedState (a LayerStep inside a checkpointed block); `self.hopfield_states` is None for a variant without
    a state (softmax without skip connections), and `state` then stays None."""

    def forward(self, x, attn_mask=None, is_causal=False, state: CarriedState | None = None):
        if self.hopfield_states is not None and state is None:
            raise RuntimeError(
                "a block of a converted ViT needs its forward pass's carried state: run the model (forward, "
                "forward_features, forward_intermediates) or all its blocks, model.blocks(x)"
            )
        carried = {} if state is None else {"state": state}
        attn = self.attn(self.norm1(x), attn_mask=attn_mask, is_causal=is_causal, **carried)
        x = self.hopfield_residual.attention(x, self.drop_path1(self.ls1(attn)))
        return self.hopfield_residual.mlp(x, self.drop_path2(self.ls2(self.mlp(self.norm2(x)))))

    def __prepare_scriptable__(self):
        raise RuntimeError(NOT_SCRIPTABLE)


class HopfieldBlocks(nn.Sequential):
    """`model.blocks` of a converted ViT: called on its own, a forward pass of its own (a fresh state)."""

    def forward(self, x, attn_mask=None, is_causal=False):
        state = new_pass(self)
        for block in self:
            x = block(x, attn_mask=attn_mask, is_causal=is_causal, state=state)
        return x


class LayerStep:
    """The state a checkpointed block attends with: H_{n-1} in, H_n kept for the caller to return."""

    def __init__(self, variant: AttentionVariant, previous, grad_enabled: bool):
        self.variant, self.previous, self.grad_enabled = variant, previous, grad_enabled
        self.hidden = None

    def attend(self, layer: int, query, key, value, *, scale, attn_mask=None, is_causal=False, dropout_p=0.0):
        refuse_reentrant(self.grad_enabled)
        output, self.hidden = self.variant.attend(
            query, key, value, self.previous,
            scale=scale, attn_mask=attn_mask, is_causal=is_causal, dropout_p=dropout_p,
        )  # fmt: skip
        return output, None


def checkpointed_layer(block, x, previous, variant, grad_enabled, attn_mask, is_causal):
    """One block as a function of the token stream and H_{n-1}: (its output, H_n)."""
    step = LayerStep(variant, previous, grad_enabled)
    x = block(x, attn_mask=attn_mask, is_causal=is_causal, state=step)
    return x, step.hidden


def new_pass(blocks: nn.Sequential) -> CarriedState | None:
    """A fresh state for one forward pass through `blocks`, None for a variant without a state."""
    source: StateSource | None = blocks[0].hopfield_states if len(blocks) else None
    return None if source is None else source.new_state()


class HopfieldViT:
    """Mixed into a timm ViT class (before it): forward_features and forward_intermediates run the blocks
    with one carried state per pass. The rest (embedding, pooling, head) is timm's."""

    def run_block(self, block: nn.Module, x, state: CarriedState | None, attn_mask, is_causal) -> torch.Tensor:
        if not (self.grad_checkpointing and torch.is_grad_enabled()):
            return block(x, attn_mask=attn_mask, is_causal=is_causal, state=state)
        if state is None:
            return checkpoint(block, x, attn_mask, is_causal, None)
        # The checkpointed function reads H_{n-1} and returns H_n: the pass's state is read and written out
        # here, so the block re-run in backward (with these very arguments) touches nothing outside itself.
        layer = block.attn.layer_idx
        x, hidden = checkpoint(checkpointed_layer, block, x, state.read(layer), state.variant, state.grad_enabled,
                               attn_mask, is_causal)  # fmt: skip
        state.record(layer, hidden, attn_mask, is_causal)
        return x

    def forward_features(self, x, attn_mask=None, is_causal=False) -> torch.Tensor:
        x = self.norm_pre(self.patch_drop(self._pos_embed(self.patch_embed(x))))  # (B, N, C)
        state = new_pass(self.blocks)
        for block in self.blocks:
            x = self.run_block(block, x, state, attn_mask, is_causal)
        return self.norm(x)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices=None,
        return_prefix_tokens: bool = False,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
        output_dict: bool = False,
        attn_mask=None,
        is_causal: bool = False,
    ):
        """timm's forward_intermediates (the same arguments and outputs), the blocks run with the pass's state."""
        if output_fmt not in ("NCHW", "NLC"):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NLC', got {output_fmt!r}")
        take, last = feature_take_indices(len(self.blocks), indices)
        B, _, height, width = x.shape
        x = self.norm_pre(self.patch_drop(self._pos_embed(self.patch_embed(x))))  # (B, N, C)
        state = new_pass(self.blocks)
        intermediates = []
        for i, block in enumerate(self.blocks[: last + 1] if stop_early else self.blocks):
            x = self.run_block(block, x, state, attn_mask, is_causal)
            if i in take:
                intermediates.append(self.norm(x) if norm else x)
        prefix = [y[:, : self.num_prefix_tokens] for y in intermediates] if self.num_prefix_tokens else None
        intermediates = [y[:, self.num_prefix_tokens :] for y in intermediates]
        if output_fmt == "NCHW":
            H, W = self.patch_embed.dynamic_feat_size((height, width))
            intermediates = [y.reshape(B, H, W, -1).permute(0, 3, 1, 2).contiguous() for y in intermediates]
        if output_dict:
            result = {"image_intermediates": intermediates}
            if prefix is not None and return_prefix_tokens:
                result["image_intermediates_prefix"] = prefix
            if not intermediates_only:
                result["image_features"] = self.norm(x)
            return result
        if return_prefix_tokens and prefix is not None:
            intermediates = list(zip(intermediates, prefix))
        return intermediates if intermediates_only else (self.norm(x), intermediates)

    def prune_intermediate_layers(self, indices=1, prune_norm: bool = False, prune_head: bool = True):
        take = super().prune_intermediate_layers(indices, prune_norm=prune_norm, prune_head=prune_head)
        if getattr(self, "hopfield_states", None) is not None:
            self.hopfield_states.blocks = self.blocks  # the state spans the blocks that are left
        return take

    def __prepare_scriptable__(self):
        raise RuntimeError(NOT_SCRIPTABLE)


# stock ViT class -> its converted class; a class of its own per stock class so that timm's subclasses keep
# what they add (VisionTransformerDistilled: the distillation token and head). Named in this module: pickle.
HOPFIELD_CLASSES: dict[type, type] = {}


def hopfield_class(stock: type) -> type:
    if stock not in HOPFIELD_CLASSES:
        for method in ("forward_features", "forward_intermediates"):
            if getattr(stock, method) is not getattr(VisionTransformer, method):
                raise TypeError(
                    f"convert_model supports timm VisionTransformer classes that keep its {method}; "
                    f"{stock.__name__} overrides it"
                )
        name = f"Hopfield{stock.__name__}"
        doc = f"A converted {stock.__name__}: its blocks get the carried state as an argument."
        cls = type(name, (HopfieldViT, stock), {"__module__": __name__, "__doc__": doc})
        globals()[name] = cls
        HOPFIELD_CLASSES[stock] = cls
    return HOPFIELD_CLASSES[stock]


HopfieldVisionTransformer = hopfield_class(VisionTransformer)
HopfieldVisionTransformerDistilled = hopfield_class(VisionTransformerDistilled)


# --- what a checkpoint records ----------------------------------------------------------------------------


def conversion_record(model: VisionTransformer, variant: AttentionVariant, skip_connections: bool) -> dict:
    """The conversion, and the timm architecture it was made from where timm.create_model built the model. Not
    the model's arguments (image size, classes): those change with a new head or resolution, the conversion
    does not, so a probe or a fine-tune of the model keeps the record of its pretraining."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    base = cfg.get("architecture")
    if base == HOPFIELD_ARCHITECTURE:  # converted before (softmax) or rebuilt by hopfield_vit: a model arg
        base = get_model_args(model).get("base")
    return {
        "architecture": HOPFIELD_ARCHITECTURE,
        "base": base,
        "attention": variant.as_dict(),
        "skip_connections": skip_connections,
    }


def encode_record(record: dict) -> torch.Tensor:
    return torch.tensor(list(json.dumps(record, sort_keys=True).encode()), dtype=torch.uint8)


def decode_record(tensor: torch.Tensor) -> dict:
    return json.loads(bytes(tensor.cpu().tolist()).decode())


def keep_own_record(module, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
    """Load-state-dict pre-hook: weights of the stock model (no record) or of another conversion load into a
    converted model, which keeps its own conversion (and record)."""
    state_dict[prefix + RECORD] = getattr(module, RECORD).clone()


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


# --- building, saving and loading ---------------------------------------------------------------------------


@register_model
def hopfield_vit(
    pretrained: bool = False,
    *,
    base: str | None = None,
    attention: dict | None = None,
    skip_connections: bool = True,
    pretrained_cfg=None,
    pretrained_cfg_overlay: dict | None = None,
    cache_dir=None,
    **kwargs,
) -> VisionTransformer:
    """The timm model `base` (e.g. "vit_base_patch16_224") converted to `attention` (a variant's as_dict()):
    the architecture a converted ViT records, which timm.create_model("local-dir:..." / "hf-hub:...") builds.
    pretrained=True loads the weights into the converted model (a saved converted ViT's record loads there,
    never into a stock one), through timm's load_pretrained with the ViT checkpoint filter."""
    from .convert import (
        convert_model,  # convert imports the families, this module among them
    )

    if base is None or attention is None:  # listed by timm.list_models, but no model of its own
        raise ValueError(
            f"{HOPFIELD_ARCHITECTURE} is a converted timm ViT and needs base= (a timm ViT name) and attention= (a "
            "variant's as_dict()), e.g. timm.create_model('hopfield_vit', base='vit_tiny_patch16_224', "
            "attention={'name': 'mha'}); a saved one loads with timm.create_model('local-dir:<dir>', "
            "pretrained=True), a state dict of one with hopfield_attention.backbones.vit.load_vit(<file>); "
            "or convert a model: hopfield_attention.convert_model(timm.create_model(name), 'mha')"
        )

    overlay = {**(pretrained_cfg_overlay or {}), "architecture": base}  # the weights are the stock model's
    strict = kwargs.pop("pretrained_strict", True)
    model = timm.create_model(base, pretrained_cfg=pretrained_cfg, pretrained_cfg_overlay=overlay, **kwargs)
    convert_model(model, restore_attention(attention), skip_connections=skip_connections)
    if pretrained:
        in_chans = get_model_args(model).get("in_chans", kwargs.get("in_chans", 3))
        load_pretrained(model, num_classes=model.num_classes, in_chans=in_chans, filter_fn=checkpoint_filter_fn,
                        strict=strict, cache_dir=cache_dir)  # fmt: skip
    return model


def save_vit(model: VisionTransformer, save_directory: str | Path, **kwargs) -> None:
    """Write `model` (a converted ViT built by timm.create_model) as timm's save_for_hf does, the weights as
    model.safetensors: timm.create_model('local-dir:<dir>', pretrained=True) loads it."""
    if getattr(model, "pretrained_cfg", None) is None:
        raise ValueError(
            "save_vit needs a ViT built by timm.create_model (timm records its architecture there); build it "
            "with timm.create_model(name, ...) and convert it, or save its state_dict and load it with load_vit"
        )
    timm.models.save_for_hf(model, save_directory, safe_serialization=True, **kwargs)


def load_vit(checkpoint_path: str | Path, **kwargs) -> VisionTransformer:
    """The converted ViT a state dict file records (torch.save of model.state_dict(), or .safetensors; timm's EMA
    and wrapper keys read as timm.models.load_checkpoint reads them), built with timm.create_model('hopfield_vit')
    and loaded strictly. `kwargs` are the model's arguments where they differ from the base architecture's
    defaults (img_size=, num_classes=, ..., as for timm's checkpoint_path), and base= where none is recorded."""
    state_dict = load_state_dict(str(checkpoint_path))
    if RECORD not in state_dict:
        raise ValueError(
            f"{checkpoint_path} records no ViT conversion (no {RECORD!r} key): it is a stock ViT state dict; "
            "load it with timm.create_model(name, checkpoint_path=...) and convert with convert_model"
        )
    record = decode_record(state_dict[RECORD])
    args = {"base": record["base"], "attention": record["attention"], "skip_connections": record["skip_connections"]}
    args.update(kwargs)
    if args["base"] is None:
        raise ValueError(
            f"{checkpoint_path} was saved from a ViT not built by timm.create_model, so its architecture is not "
            "recorded: give it, load_vit(path, base=<timm ViT name>, img_size=..., ...)"
        )
    model = timm.create_model(HOPFIELD_ARCHITECTURE, **args)
    model.load_state_dict(state_dict, strict=True)
    return model


# --- conversion -----------------------------------------------------------------------------------------


def tiny_vit(model_class: type) -> tuple[VisionTransformer, dict[str, torch.Tensor]]:
    """A 2-block, 32-wide ViT of `model_class` on 16 x 16 images (16 patches and a class token), and images."""
    model = model_class(
        img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=4, num_classes=7, init_values=0.5
    )  # fmt: skip  (init_values: LayerScale in the path)
    return model, {"x": torch.randn(2, 3, 16, 16)}


@register_backbone(VisionTransformer, tiny=tiny_vit)
def convert_vit(model: VisionTransformer, variant: AttentionVariant, skip_connections: bool) -> None:
    for block in model.blocks:
        if type(block) is not Block or type(block.attn) is not Attention:
            raise TypeError(
                "convert_model supports timm VisionTransformer built from timm's Block and Attention; got "
                f"{type(block).__name__} with {type(block.attn).__name__}"
            )
    if not isinstance(model.blocks, nn.Sequential):
        raise TypeError(f"convert_model supports timm VisionTransformer with blocks in nn.Sequential; got "
                        f"{type(model.blocks).__name__}")  # fmt: skip
    residual = variant.block_residual(skip_connections)
    if residual.is_stock and not variant.carries_state:
        record_architecture(model, variant, skip_connections)
        return  # the stock model itself: saved and loaded as one
    model_class = hopfield_class(type(model))  # TypeError for a subclass with its own forward, before any change
    record = encode_record(conversion_record(model, variant, skip_connections))
    record_architecture(model, variant, skip_connections)
    states = StateSource(variant, root=model, blocks=model.blocks) if variant.carries_state else None
    model.__class__ = model_class
    model.blocks.__class__ = HopfieldBlocks
    model.hopfield_states = states
    model.register_buffer(RECORD, record.to(next(model.parameters()).device))  # where the model lives
    model.register_load_state_dict_pre_hook(keep_own_record)
    for layer, block in enumerate(model.blocks):
        block.__class__ = HopfieldBlock
        block.hopfield_residual = residual
        block.hopfield_states = states
        if states is not None:
            block.attn.__class__ = HopfieldAttention
            block.attn.layer_idx = layer
