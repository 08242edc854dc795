"""The carried score state: what layer n hands to layer n + 1 within one forward pass.

One `CarriedState` lives for one forward pass of one model. Layer n reads the state that layer n - 1 wrote
in this same pass (layer 0 starts fresh, per the variant's `first_layer`), attends, and writes its own.
That is its one job. Whoever wants to see the attention (`record_attention`, `output_attentions`) is an
observer: it is handed each layer's `LayerAttention` and computes the probabilities only if it asks.

Activation checkpointing re-runs a layer in the backward pass, and the re-run must read the very tensor the
forward read. So while checkpointing is active every written state is kept (the first write wins; a re-run
never overwrites) until this object dies with the autograd graph. Otherwise a state is dropped as soon as
the next layer has read it and the last layer's is never stored, so no T x T tensor outlives the forward
beyond what autograd itself saves. Observers see each layer once, not again when a re-run repeats it.

Reentrant checkpointing (`use_reentrant=True`) runs the forward under `no_grad`, which would cut the
state's gradient path silently; it is detected and refused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..attention.functional import masked_scores
from ..attention.stacked import StackedScores
from ..attention.variants import AttentionVariant


@dataclass(frozen=True)
class LayerAttention:
    """What one layer attended with: its state H_n, unmasked, in the form its implementation hands on (a
    (B, H, Tq, Tk) tensor, or stacked queries and keys that form it only on request), and the masks it applied."""

    layer: int
    state: torch.Tensor | StackedScores
    attn_mask: torch.Tensor | None
    is_causal: bool

    def scores(self) -> torch.Tensor:
        """H_n (B, H, Tq, Tk): the state itself, or formed from the stacked queries and keys (one T x T tensor)."""
        return self.state.dense() if isinstance(self.state, StackedScores) else self.state

    def probabilities(self) -> torch.Tensor:
        """softmax(mask(H_n)) (B, H, Tq, Tk) in the state's dtype: the probabilities the layer used."""
        return torch.softmax(masked_scores(self.scores(), self.attn_mask, self.is_causal), dim=-1)


Observer = Callable[[LayerAttention], None]


class CarriedState:
    def __init__(
        self,
        variant: AttentionVariant,
        num_layers: int,
        *,
        keep_for_recompute: bool,
        observers: Sequence[Observer] = (),
    ):
        self.variant = variant
        self.num_layers = num_layers
        self.keep_for_recompute = keep_for_recompute
        self.observers = tuple(observers)
        self.grad_enabled = torch.is_grad_enabled()
        self.written: dict[int, object] = {}  # layer -> H_n, as a (B, H, Tq, Tk) tensor or StackedScores
        self.observed: set[int] = set()  # a checkpointed layer re-runs in backward: observers see it once

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

    def write(self, layer: int, hidden) -> None:
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
    ) -> tuple[torch.Tensor, LayerAttention]:
        """One layer's attention: q (B, H, Tq, D), k and v (B, H_kv, Tk, D) -> output (B, H, Tq, D), and what
        the layer attended with (for the caller; observers have been handed it already)."""
        refuse_reentrant(self.grad_enabled)
        output, hidden = self.variant.attend(
            query, key, value, self.read(layer),
            scale=scale, attn_mask=attn_mask, is_causal=is_causal, dropout_p=dropout_p,
        )  # fmt: skip
        return output, self.record(layer, hidden, attn_mask, is_causal)

    def record(self, layer: int, hidden, attn_mask: torch.Tensor | None, is_causal: bool) -> LayerAttention:
        """Layer `layer` attended with state `hidden` (computed here by `attend`, or by the caller): keep it for
        the next layer and hand it to the observers (once per layer)."""
        self.write(layer, hidden)
        attended = LayerAttention(layer, hidden, attn_mask, is_causal)
        if self.observers and layer not in self.observed:
            self.observed.add(layer)
            for observe in self.observers:
                observe(attended)
        return attended


def refuse_reentrant(grad_enabled: bool) -> None:
    """Attention of a pass that began with gradients on (`grad_enabled`) running under no_grad is reentrant
    checkpointing: refused."""
    if grad_enabled and not torch.is_grad_enabled():
        raise RuntimeError(
            "attention with a carried state ran under no_grad inside a forward pass that records gradients: "
            "this is reentrant activation checkpointing (use_reentrant=True), which would cut the state's "
            "gradient path between layers. Use use_reentrant=False (the default of transformers 5 and timm)"
        )


class StateSource:
    """Per converted model: makes each forward pass's `CarriedState` and holds the model's observers.

    root: the model whose `training` flag counts; blocks: its transformer blocks. Checkpointing is active
    when the root trains with gradients on and it (timm: `grad_checkpointing`) or any block (transformers:
    `gradient_checkpointing`) checkpoints.
    """

    def __init__(self, variant: AttentionVariant, root: torch.nn.Module, blocks: torch.nn.ModuleList):
        self.variant = variant
        self.root = root
        self.blocks = blocks
        self.observers: list[Observer] = []

    def checkpointing(self) -> bool:
        if not (self.root.training and torch.is_grad_enabled()):
            return False
        return bool(getattr(self.root, "grad_checkpointing", False)) or any(
            getattr(block, "gradient_checkpointing", False) for block in self.blocks
        )

    def new_state(self) -> CarriedState:
        return CarriedState(
            self.variant, len(self.blocks), keep_for_recompute=self.checkpointing(), observers=self.observers
        )


class RecordProbabilities:
    """An observer that appends each layer's probabilities, detached, to `records` (record_attention)."""

    def __init__(self, records: list[torch.Tensor]):
        self.records = records

    def __call__(self, attended: LayerAttention) -> None:
        with torch.no_grad():
            self.records.append(attended.probabilities())
