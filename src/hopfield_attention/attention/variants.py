"""The registry of attention variants: each variant is one registration here, never an edit in a backbone.

A variant says two things a backbone needs: how one layer attends given the state carried from the layer
below (`attend`), and the skip connections of its blocks (`block_residual`, residual.py; the base class keeps
the backbone's own `x + branch`). Backbones ask nothing else.

A variant is a frozen dataclass, validated once when it is built (`build_attention`) and then passed around
as an object; `as_dict()` is what a saved model records and `build_attention(**as_dict())` rebuilds it.
Every registered variant builds with no arguments (its defaults), and `softmax_limit` names the parameters,
if any, at which it is ordinary softmax attention with the backbone's residual: the tests sweep the registry
with both (tests/test_backbones_registry.py), so a new variant is covered without editing them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch

from .functional import check_first_layer, check_unit_interval
from .paths import carried_attention, check_implementation
from .residual import Residual, check_placement, check_skipless

ATTENTION_VARIANTS: dict[str, type[AttentionVariant]] = {}


def register_attention(name: str) -> Callable[[type[AttentionVariant]], type[AttentionVariant]]:
    def register(cls: type[AttentionVariant]) -> type[AttentionVariant]:
        if name in ATTENTION_VARIANTS:
            raise ValueError(f"attention variant {name!r} is already registered")
        cls.name = name
        ATTENTION_VARIANTS[name] = cls
        return cls

    return register


def build_attention(name: str, **params) -> AttentionVariant:
    """The variant registered as `name`, built from `params`; bad names and parameters raise ValueError."""
    if name not in ATTENTION_VARIANTS:
        raise ValueError(f"attention must be one of {sorted(ATTENTION_VARIANTS)}, got {name!r}")
    cls = ATTENTION_VARIANTS[name]
    allowed = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"attention {name!r} takes parameters {allowed}, got unknown {unknown}")
    return cls(**params)


# The open choices as they were computed before they became options: a saved variant that lacks them (a model or
# checkpoint written then) was trained under these, so a later change of default never changes what it computes.
PINNED_READING = {"mha": {"first_layer": "scores", "residual": "attention", "skipless_residual": "none"}}


def restore_attention(saved: Mapping) -> AttentionVariant:
    """The variant a saved model or checkpoint recorded (`as_dict()`), its missing open choices filled with
    PINNED_READING: what it was computed with."""
    saved = dict(saved)
    return build_attention(**{**PINNED_READING.get(saved.get("name"), {}), **saved})


@dataclass(frozen=True)
class AttentionVariant:
    name: ClassVar[str]
    carries_state: ClassVar[bool] = True
    # Parameters at which the variant is the backbone's softmax attention and residual; None if there are none.
    softmax_limit: ClassVar[dict | None] = None

    def as_dict(self) -> dict:
        """{"name": ..., **parameters}: JSON-ready, and `build_attention(**as_dict())` gives an equal variant."""
        return {"name": self.name, **dataclasses.asdict(self)}

    def block_residual(self, skip_connections: bool = True) -> Residual:
        """The skip connections of a block converted to this variant (skip_connections=False: paper Table 7)."""
        return Residual(skip_connections=skip_connections)

    def attend(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        hidden,
        *,
        scale: float,
        is_causal: bool = False,
        attn_mask: torch.Tensor | None = None,
        dropout_p: float = 0.0,
    ) -> tuple[torch.Tensor, object]:
        """q (B, H, Tq, D), k and v (B, H_kv, Tk, D) with H_kv dividing H, and the state the layer below handed
        on (None at the first layer) -> (output (B, H, Tq, D), the state to hand on: a T x T tensor or stacked
        queries and keys, attention/paths.py)."""
        raise NotImplementedError


@register_attention("softmax")
@dataclass(frozen=True)
class Softmax(AttentionVariant):
    """The backbone's own attention and residual, untouched: converting to it changes nothing."""

    carries_state: ClassVar[bool] = False
    softmax_limit: ClassVar[dict | None] = {}


@register_attention("mha")
@dataclass(frozen=True)
class ModernHopfield(AttentionVariant):
    """Modern Hopfield Attention (Masumura & Taki 2025, eq. 10).

    alpha: weight of the stream against the attention branch, x = alpha x + (1 - alpha) attn(norm(x)) where
        `residual` puts it; None keeps the backbone's residual.
    alpha_prime: memory of past scores, H_n = alpha' H_{n-1} + (1 - alpha') S_n; defaults to alpha.
    first_layer: "scores" (H_1 = S_1) or "zeros" (H_0 = 0).
    residual: where alpha acts, "attention", "both" or "stream" (residual.py).
    skipless_residual: without skip connections (Table 7), "none" (no skip at all) or "own" (the update keeps
        its alpha-weighted terms).
    implementation: "auto", "explicit", "fused" or "stacked" (attention/paths.py; "auto" chooses per layer).

    The open choices (first_layer, residual, skipless_residual) default to the reading the study chose
    (configs/reading/, docs: the specification notes).
    """

    softmax_limit: ClassVar[dict | None] = {"alpha": None, "alpha_prime": 0.0}

    alpha: float | None = 0.5
    alpha_prime: float | None = None
    first_layer: str = "scores"
    residual: str = "stream"
    skipless_residual: str = "own"
    implementation: str = "auto"

    def __post_init__(self):
        check_placement(self.residual)
        check_skipless(self.skipless_residual)
        if self.alpha is not None:
            check_unit_interval("alpha", self.alpha)
        if self.alpha_prime is None:
            if self.alpha is None:
                raise ValueError("alpha_prime must be given (a number in [0, 1]) when alpha is None")
            object.__setattr__(self, "alpha_prime", self.alpha)
        check_unit_interval("alpha_prime", self.alpha_prime)
        check_first_layer(self.first_layer)
        check_implementation(self.implementation)

    def block_residual(self, skip_connections: bool = True) -> Residual:
        alpha = None if self.alpha is None else float(self.alpha)
        return Residual(alpha, self.residual, skip_connections, self.skipless_residual)

    def attend(self, query, key, value, hidden, *, scale, is_causal=False, attn_mask=None, dropout_p=0.0):
        return carried_attention(
            self.implementation, query, key, value, hidden,
            decay=float(self.alpha_prime), gain=1.0 - float(self.alpha_prime),
            scale=scale, is_causal=is_causal, attn_mask=attn_mask,
            first_layer=self.first_layer, dropout_p=dropout_p,
        )  # fmt: skip


@register_attention("realformer")
@dataclass(frozen=True)
class RealFormer(AttentionVariant):
    """RealFormer (He et al. 2021): an undamped running sum of scores, H_n = H_{n-1} + S_n; ordinary residual.

    implementation: "auto", "explicit", "fused" or "stacked" (attention/paths.py; "auto" chooses per layer).
    """

    implementation: str = "auto"

    def __post_init__(self):
        check_implementation(self.implementation)

    def attend(self, query, key, value, hidden, *, scale, is_causal=False, attn_mask=None, dropout_p=0.0):
        return carried_attention(
            self.implementation, query, key, value, hidden,
            decay=1.0, gain=1.0,
            scale=scale, is_causal=is_causal, attn_mask=attn_mask, dropout_p=dropout_p,
        )  # fmt: skip
