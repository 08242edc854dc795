"""The carried score state: what layer n hands to layer n + 1 within one forward pass.

One `CarriedState` lives for one forward pass of one model. Layer n reads the state that layer n - 1 wrote
in this same pass (layer 0 starts fresh, per the variant's `first_layer`), attends, and writes its own.

Activation checkpointing re-runs a layer in the backward pass, and the re-run must read the very tensor the
forward read. So while checkpointing is active every written state is kept (the first write wins; a re-run
never overwrites) until this object dies with the autograd graph. Otherwise a state is dropped as soon as
the next layer has read it and the last layer's is never stored, so no T x T tensor outlives the forward
beyond what autograd itself saves.

Reentrant checkpointing (`use_reentrant=True`) runs the forward under `no_grad`, which would cut the
state's gradient path silently; it is detected and refused.
"""

from __future__ import annotations

import torch

from ..attention.functional import masked_scores
from ..attention.variants import AttentionVariant


class CarriedState:
    def __init__(
        self,
        variant: AttentionVariant,
        num_layers: int,
        *,
        keep_for_recompute: bool,
        records: list[torch.Tensor] | None = None,
    ):
        self.variant = variant
        self.num_layers = num_layers
        self.keep_for_recompute = keep_for_recompute
        self.records = records
        self.grad_enabled = torch.is_grad_enabled()
        self.written: dict[int, torch.Tensor] = {}  # layer -> H_n (B, H, Tq, Tk), fp32
        self.recorded: set[int] = set()  # a checkpointed layer re-runs in backward: record it once

    def read(self, layer: int) -> torch.Tensor | None:
        if layer == 0:
            return None
        if layer - 1 not in self.written:
            raise RuntimeError(
                f"attention layer {layer} ran before layer {layer - 1} wrote its state in this forward pass; "
                "the layers of a converted model must run in order, once each, inside the model's forward"
            )
        if self.keep_for_recompute:
            return self.written[layer - 1]
        return self.written.pop(layer - 1)

    def write(self, layer: int, hidden: torch.Tensor) -> None:
        if layer + 1 < self.num_layers:  # nobody reads the last layer's state
            self.written.setdefault(layer, hidden)

    def attend(
        self,
        layer: int,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        *,
        scale: float,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        dropout_p: float = 0.0,
    ) -> torch.Tensor:
        """One layer's attention: q (B, H, Tq, D), k and v (B, H, Tk, D) -> output (B, H, Tq, D)."""
        if self.grad_enabled and not torch.is_grad_enabled():
            raise RuntimeError(
                "attention with a carried state ran under no_grad inside a forward pass that records gradients: "
                "this is reentrant activation checkpointing (use_reentrant=True), which would cut the state's "
                "gradient path between layers. Use use_reentrant=False (the default of transformers 5 and timm)"
            )
        output, hidden = self.variant.attend(
            query, key, value, self.read(layer),
            scale=scale, attn_mask=attn_mask, is_causal=is_causal, dropout_p=dropout_p,
        )  # fmt: skip
        self.write(layer, hidden)
        if self.records is not None and layer not in self.recorded:
            self.recorded.add(layer)
            probs = torch.softmax(masked_scores(hidden.detach(), attn_mask, is_causal), dim=-1)  # (B, H, Tq, Tk)
            self.records.append(probs)
        return output


class StateSource:
    """Per converted model: makes each forward pass's `CarriedState`, and holds record_attention's list.

    root: the model whose `training` flag counts; blocks: its transformer blocks. Checkpointing is active
    when the root trains with gradients on and it (timm: `grad_checkpointing`) or any block (transformers:
    `gradient_checkpointing`) checkpoints.
    """

    def __init__(self, variant: AttentionVariant, root: torch.nn.Module, blocks: torch.nn.ModuleList):
        self.variant = variant
        self.root = root
        self.blocks = blocks
        self.records: list[torch.Tensor] | None = None

    def checkpointing(self) -> bool:
        if not (self.root.training and torch.is_grad_enabled()):
            return False
        return bool(getattr(self.root, "grad_checkpointing", False)) or any(
            getattr(block, "gradient_checkpointing", False) for block in self.blocks
        )

    def new_state(self) -> CarriedState:
        return CarriedState(
            self.variant, len(self.blocks), keep_for_recompute=self.checkpointing(), records=self.records
        )
