"""The stacked path: the carried scores as concatenated queries and keys, on stock attention kernels.

The state is a weighted sum of the score matrices of the layers so far, and a sum of products is one
product of concatenations along the head dim:

    H_n = sum_{m<=n} w_{n,m} Q_m K_m^T = [w_{n,1} Q_1 | ... | w_{n,n} Q_n] [K_1 | ... | K_n]^T
    w_{n,n} = gain * scale,   w_{n,m} = decay * w_{n-1,m}   (layer 1 per `first_layer`)

so softmax(mask(H_n)) V_n is scaled_dot_product_attention of the stacked queries and keys (head dim
n * D) with V_n (head dim D). No T x T tensor exists and no bias needs a gradient: the gradient reaches
earlier layers through the concatenation. The state handed on, `StackedScores`, holds the per-layer q and
k with their weights; `StackedScores.dense()` forms H_n on request (attention maps, tests).

Kernels. The CPU flash kernel needs one head dim for q, k and v (else SDPA silently takes its math
fallback, which keeps the T x T probabilities), so on the CPU v is zero-padded to n * D and the output's
extra columns, exactly zero, are cut off. CUDA's memory-efficient kernel takes a v head dim of its own
and gets v as it is. Dropout on the CPU takes the math fallback whatever the widths (the CPU flash
kernel has no dropout). See notes/stacked-kernels.md.

Kept for backward: the SDPA node would keep the stacked q, k (and on the CPU the padded v and output),
n times the per-layer tensors. saved_tensors_hooks box them while SDPA runs and swap each for a recipe
that rebuilds it in backward from the per-layer q, k, v and output, which the model keeps anyway; only
SDPA's logsumexp (B, H, Tq) is kept beside them. Inside non-reentrant activation checkpointing these
inner hooks take precedence for SDPA's tensors (only the innermost pair applies), so a checkpointed layer
keeps its v, output and logsumexp instead of recomputing them (no T x T tensor either way).

Precision: SDPA runs in the compute dtype (the autocast dtype, else that of the inputs). Under bf16
autocast each w_{n,m} / w_{n,n} Q_m is rounded to bf16 once, exact when the ratio is a power of two
(alpha' = 0.5, RealFormer); the logits accumulate in fp32 inside the kernel. `dense()` forms the state in
fp32 (fp64 for fp64 inputs) from the per-layer tensors, as the explicit path does.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .functional import causal_mask, check_first_layer


@dataclass(frozen=True, eq=False)
class StackedScores:
    """H = sum_m weights[m] * queries[m] @ keys[m]^T, per head: the carried state, never formed unless asked.

    queries[m] (B, H, Tq, D_m) and keys[m] (B, H_kv, Tk, D_m) are layer m's own q and k (grouped-query
    attention: query head h reads key head h // (H / H_kv), as SDPA's enable_gqa); weights[m] includes
    the layer's scale and the decay since. Terms whose weight is exactly 0 are dropped, so the stack may
    be empty (H = 0). shape is (B, H, Tq, Tk).
    """

    queries: tuple[torch.Tensor, ...] = field(repr=False)
    keys: tuple[torch.Tensor, ...] = field(repr=False)
    weights: tuple[float, ...]
    shape: tuple[int, int, int, int]
    device: torch.device

    @property
    def width(self) -> int:
        """The head dim of the stacked queries and keys, sum_m D_m."""
        return sum(q.shape[-1] for q in self.queries)

    @property
    def key_heads(self) -> int | None:
        return self.keys[0].shape[1] if self.keys else None

    def detach(self) -> StackedScores:
        """The same state cut from the autograd graph, as Tensor.detach for a dense state."""
        return dataclasses.replace(self, queries=tuple(q.detach() for q in self.queries),
                                   keys=tuple(k.detach() for k in self.keys))  # fmt: skip

    def dense(self) -> torch.Tensor:
        """H (B, H, Tq, Tk) in fp32 (fp64 if any term is), differentiable; one T x T tensor."""
        if not self.queries:
            return torch.zeros(self.shape, device=self.device)
        dtype = _state_dtype(self.queries + self.keys)
        with torch.autocast(self.device.type, enabled=False):
            stacked_q = torch.cat([q.to(dtype) * w for q, w in zip(self.queries, self.weights)], dim=-1)
            stacked_k = torch.cat([k.to(dtype) for k in self.keys], dim=-1)  # (B, H_kv, Tk, E)
            groups = self.shape[1] // stacked_k.shape[1]
            if groups > 1:  # the one place keys are repeated: a T x T tensor is formed here anyway
                stacked_k = stacked_k.repeat_interleave(groups, dim=1)
            return torch.matmul(stacked_q, stacked_k.transpose(-2, -1))  # (B, H, Tq, Tk)


def stacked_carried_score_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    hidden: StackedScores | None = None,
    *,
    decay: float,
    gain: float,
    scale: float | None = None,
    is_causal: bool = False,
    attn_mask: torch.Tensor | None = None,
    first_layer: str = "scores",
    dropout_p: float = 0.0,
) -> tuple[torch.Tensor, StackedScores]:
    """`functional.carried_score_attention` with the state as stacked queries and keys.

    q (B, H, Tq, D); k (B, H_kv, Tk, D) and v (B, H_kv, Tk, D_v) with H_kv dividing H (grouped-query
    attention without repeating keys); hidden: the `StackedScores` the previous layer returned, or None
    at the first layer (`first_layer="scores"`: H_1 = S_1, `"zeros"`: H_1 = gain * S_1). Returns
    (softmax(mask(H)) v (B, H, Tq, D_v), the new StackedScores); `.dense()` of it equals the explicit
    path's state.
    """
    check_first_layer(first_layer)
    for name, number in (("decay", decay), ("gain", gain)):
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
            raise ValueError(f"{name} must be a finite number, got {number!r}")
    _check_inputs(query, key, value, hidden, attn_mask)
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else float(scale)

    state = _stack(hidden, query, key, decay=float(decay), gain=float(gain), scale=scale, first_layer=first_layer)
    return _attend(state, value, is_causal=is_causal, attn_mask=attn_mask, dropout_p=dropout_p), state


def _check_inputs(query, key, value, hidden, attn_mask) -> None:
    if query.dim() != 4 or key.dim() != 4 or value.dim() != 4:
        raise ValueError(
            "query, key and value must be 4-d (batch, heads, tokens, head_dim), got shapes "
            f"{tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}"
        )
    b, h, q_len, d = query.shape
    kv_heads = key.shape[1]
    if key.shape[0] != b or key.shape[-1] != d or value.shape[:3] != key.shape[:3] or h % kv_heads != 0:
        raise ValueError(
            "key must be (batch, kv_heads, keys, head_dim) and value (batch, kv_heads, keys, *) with kv_heads "
            f"dividing the query heads: got query {tuple(query.shape)}, key {tuple(key.shape)}, "
            f"value {tuple(value.shape)}"
        )
    if attn_mask is not None and attn_mask.requires_grad:
        raise ValueError("attn_mask must not require grad: the stacked path gives masks no gradient")
    if hidden is None:
        return
    if not isinstance(hidden, StackedScores):
        raise TypeError(
            "hidden must be the StackedScores returned by the previous stacked layer, or None at the first "
            f"layer; got {type(hidden).__name__}. A dense (B, H, Tq, Tk) state belongs to the 'explicit' and "
            "'fused' implementations"
        )
    expected = (b, h, q_len, key.shape[2])
    if hidden.shape != expected or hidden.device != query.device:
        raise ValueError(
            f"hidden must hold scores of shape (batch, heads, queries, keys) = {expected} on {query.device}, "
            f"got {hidden.shape} on {hidden.device}"
        )
    if hidden.key_heads is not None and hidden.key_heads != kv_heads:
        raise ValueError(f"hidden was stacked from keys with {hidden.key_heads} heads, this layer's have {kv_heads}")


def _stack(hidden, query, key, *, decay, gain, scale, first_layer) -> StackedScores:
    """H_n's terms: the earlier ones decayed, this layer's with weight gain * scale; zero weights dropped."""
    if hidden is None:
        terms = [(query, key, scale if first_layer == "scores" else gain * scale)]
    else:
        terms = [(q, k, decay * w) for q, k, w in zip(hidden.queries, hidden.keys, hidden.weights)]
        terms.append((query, key, gain * scale))
    terms = [term for term in terms if term[2] != 0.0]
    b, h, q_len, _ = query.shape
    return StackedScores(
        queries=tuple(t[0] for t in terms),
        keys=tuple(t[1] for t in terms),
        weights=tuple(t[2] for t in terms),
        shape=(b, h, q_len, key.shape[2]),
        device=query.device,
    )


# Dynamo does not trace saved_tensors_hooks: one graph break per layer, where this runs eagerly. (Traced
# without the hooks, the compiled graph keeps the concatenations for backward: measured, notes.)
@torch.compiler.disable
def _attend(state: StackedScores, value, *, is_causal, attn_mask, dropout_p) -> torch.Tensor:
    """softmax(mask(H)) v through SDPA on the stacked q and k; only what the model keeps anyway is kept."""
    device = value.device
    autocast = torch.is_autocast_enabled(device.type)
    dtype = torch.get_autocast_dtype(device.type) if autocast else _compute_dtype(state, value)
    b, h, q_len, k_len = state.shape
    kv_heads, v_width = value.shape[1], value.shape[-1]
    if state.queries:
        sdpa_scale = state.weights[-1]  # this layer's weight; the other terms are scaled relative to it
        factors = [w / sdpa_scale for w in state.weights]
        width = state.width
    else:  # H = 0: zero queries and keys say so exactly
        sdpa_scale, factors, width = 1.0, [], v_width
    # The CPU flash kernel wants one head dim for q, k and v; without dropout it runs, so pad to one.
    common = max(width, v_width) if device.type == "cpu" and dropout_p == 0.0 else None
    qk_pad = 0 if common is None else common - width
    v_pad = 0 if common is None else common - v_width

    def build_queries(queries):  # (B, H, Tq, E')
        if not queries:
            return torch.zeros(b, h, q_len, width + qk_pad, dtype=dtype, device=device)
        return _concat([q if f == 1.0 else q * f for q, f in zip(queries, factors)], dtype, qk_pad)

    def build_keys(keys):  # (B, H_kv, Tk, E')
        if not keys:
            return torch.zeros(b, kv_heads, k_len, width + qk_pad, dtype=dtype, device=device)
        return _concat(keys, dtype, qk_pad)

    build_mask = _sdpa_mask(is_causal, q_len, k_len, dtype, device)
    rebuild = _RebuildInBackward(device)
    with torch.autocast(device.type, enabled=False):
        stacked_q, stacked_k = build_queries(state.queries), build_keys(state.keys)
        values = _concat([value], dtype, v_pad)  # (B, H_kv, Tk, E')
        mask, causal_flag = build_mask(attn_mask)
        with torch.autograd.graph.saved_tensors_hooks(rebuild.pack, rebuild.unpack):
            out_sdpa = F.scaled_dot_product_attention(
                stacked_q, stacked_k, values, attn_mask=mask, dropout_p=dropout_p, is_causal=causal_flag,
                scale=sdpa_scale, enable_gqa=h != kv_heads,
            )  # fmt: skip  # (B, H, Tq, E')
        # The padded columns are exactly 0; a copy of the rest, so that the padded output can be freed.
        out = out_sdpa[..., :v_width].contiguous() if v_pad else out_sdpa  # (B, H, Tq, D_v)

    if rebuild.boxes:  # SDPA saved tensors for backward (grad mode, inputs that need a gradient)
        # Recipes from detached per-layer tensors: a recipe that held the graph would make it hold itself.
        queries, keys = [_kept(q) for q in state.queries], [_kept(k) for k in state.keys]
        value_kept = _kept(value)
        caller_mask = (lambda: None) if attn_mask is None else _kept(attn_mask)
        rebuild.replace(stacked_q, lambda: build_queries([q() for q in queries]))
        rebuild.replace(stacked_k, lambda: build_keys([k() for k in keys]))
        rebuild.replace(values, lambda: _concat([value_kept()], dtype, v_pad))
        if mask is not None and mask is not attn_mask:
            rebuild.replace(mask, lambda: build_mask(caller_mask())[0])
        if v_pad:
            out_kept = _kept(out)
            rebuild.replace(out_sdpa, lambda: _concat([out_kept()], dtype, v_pad))
    return out if autocast else out.to(value.dtype)


def _kept(tensor: torch.Tensor) -> Callable[[], torch.Tensor]:
    """A detached reference for a recipe, which refuses, as autograd does for what it saves, a tensor
    changed in place since forward (`_version` is autograd's own counter; there is no public accessor)."""
    detached, version = tensor.detach(), tensor._version

    def get() -> torch.Tensor:
        if detached._version != version:
            raise RuntimeError(
                f"one of the variables needed for gradient computation has been modified by an inplace operation: "
                f"a {tuple(detached.shape)} tensor of the stacked scores is at version {detached._version}, "
                f"expected version {version}"
            )
        return detached

    return get


def _concat(parts: list[torch.Tensor], dtype: torch.dtype, pad: int) -> torch.Tensor:
    """The parts side by side along the head dim in `dtype`, then `pad` zero columns."""
    parts = [p.to(dtype) for p in parts]
    joined = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
    return F.pad(joined, (0, pad)) if pad else joined


def _sdpa_mask(is_causal, q_len, k_len, dtype, device) -> Callable:
    """A function of the caller's mask giving SDPA's (attn_mask, is_causal): SDPA's own causal flag where it
    means ours (Tq == Tk, no other mask), the caller's mask where it is additive in the compute dtype, else
    one additive mask of ours in that dtype, causal aligned bottom-right. Ours can be rebuilt in backward
    rather than kept (SDPA would turn a boolean mask into a float copy of its own and keep that)."""

    def build(mask):
        if mask is None and (not is_causal or q_len == k_len):
            return None, is_causal
        if mask is not None and not is_causal and mask.dtype == dtype:
            return mask, False  # the caller's tensor, shared by every layer
        if mask is None:
            additive = torch.zeros(q_len, k_len, dtype=dtype, device=device)
        elif mask.dtype == torch.bool:
            additive = torch.zeros(mask.shape, dtype=dtype, device=device).masked_fill_(~mask, float("-inf"))
        else:
            additive = mask.to(dtype)
        if is_causal:
            additive = additive.masked_fill(~causal_mask(q_len, k_len, device), float("-inf"))  # (.., Tq, Tk)
        return additive, False

    return build


def _compute_dtype(state: StackedScores, value: torch.Tensor) -> torch.dtype:
    dtype = value.dtype
    for t in state.queries + state.keys:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def _state_dtype(tensors) -> torch.dtype:
    dtype = torch.float32
    for t in tensors:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype


class _RebuildInBackward:
    """saved_tensors_hooks for one SDPA call: each saved tensor goes into a box; after the call, the boxes
    of the tensors we built, or of views of them, are emptied and given the recipe that rebuilds them in
    backward.

    A saved tensor is matched to one we built by its storage; a view (CUDA's memory-efficient path keeps
    the mask expanded to (B, H, Tq, Tk)) is taken again from the rebuilt tensor. One that matches nothing
    (SDPA's logsumexp, a copy a kernel made) stays in its box, detached.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.boxes: list[_SavedBox] = []

    def pack(self, tensor: torch.Tensor) -> _SavedBox:
        box = _SavedBox(tensor.detach(), self.device)
        self.boxes.append(box)
        return box

    @staticmethod
    def unpack(box: _SavedBox) -> torch.Tensor:
        if box.recipe is None:
            return box.tensor
        with torch.autocast(box.device.type, enabled=False):  # as in forward, whatever surrounds backward
            return box.recipe()

    def replace(self, built: torch.Tensor, recipe: Callable[[], torch.Tensor]) -> None:
        for box in self.boxes:
            saved = box.tensor
            if box.recipe is not None or saved.untyped_storage().data_ptr() != built.untyped_storage().data_ptr():
                continue
            if _same_geometry(saved, built):
                box.tensor, box.recipe = None, recipe
            elif built.is_contiguous() and built.storage_offset() == 0 and saved.dtype == built.dtype:
                # a view of ours: the rebuilt tensor is laid out as ours was, so the same view applies
                box.tensor, box.recipe = None, _view_of(recipe, saved.shape, saved.stride(), saved.storage_offset())


def _view_of(recipe: Callable[[], torch.Tensor], size, stride, offset) -> Callable[[], torch.Tensor]:
    """The recipe of a view: bound per box here, since a lambda in the loop would see the last box's geometry."""
    return lambda: recipe().as_strided(size, stride, offset)


class _SavedBox:
    __slots__ = ("tensor", "device", "recipe")

    def __init__(self, tensor: torch.Tensor, device: torch.device):
        self.tensor: torch.Tensor | None = tensor
        self.device = device
        self.recipe: Callable[[], torch.Tensor] | None = None


def _same_geometry(a: torch.Tensor, b: torch.Tensor) -> bool:
    same_layout = a.shape == b.shape and a.stride() == b.stride() and a.storage_offset() == b.storage_offset()
    return same_layout and a.dtype == b.dtype
