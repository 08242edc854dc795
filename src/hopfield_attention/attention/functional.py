"""The mathematics of attention with a carried score state, in one place.

Masumura & Taki (NeurIPS 2025), eq. 10, per head:

    S_n = scale * Q_n K_n^T
    H_n = decay * H_{n-1} + gain * S_n          (H_0 per `first_layer`)
    out = softmax(mask(H_n)) V_n

Modern Hopfield Attention is decay = alpha', gain = 1 - alpha'; RealFormer (He et al. 2021) is
decay = gain = 1. The mask is applied to a copy: the state handed on is unmasked, so masked entries never
accumulate. The state is kept in `state_dtype`: at least float32 (so fp32 under bf16 or fp16 autocast),
float64 for float64 inputs, so that `torch.autograd.gradcheck` can check every path in double precision.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

FIRST_LAYER_CHOICES = ("scores", "zeros")


def state_dtype(*tensors: torch.Tensor | None) -> torch.dtype:
    """The dtype of the carried state: the promotion of the inputs' dtypes with float32 (bf16, fp16 and
    fp32 compute give fp32, float64 gives float64)."""
    dtype = torch.float32
    for tensor in tensors:
        if tensor is not None:
            dtype = torch.promote_types(dtype, tensor.dtype)
    return dtype


def check_unit_interval(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")


def check_first_layer(first_layer: str) -> None:
    if first_layer not in FIRST_LAYER_CHOICES:
        raise ValueError(f"first_layer must be one of {FIRST_LAYER_CHOICES}, got {first_layer!r}")


def check_shapes(query, key, value, hidden) -> None:
    if query.dim() != 4 or key.dim() != 4 or value.dim() != 4:
        raise ValueError(
            "query, key and value must be 4-d (batch, heads, tokens, head_dim), got shapes "
            f"{tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}"
        )
    b, h, _, d = query.shape
    if key.shape[:2] != (b, h) or key.shape[-1] != d or value.shape[:3] != key.shape[:3]:
        raise ValueError(
            "key must be (batch, heads, keys, head_dim) matching query, and value (batch, heads, keys, *): got "
            f"query {tuple(query.shape)}, key {tuple(key.shape)}, value {tuple(value.shape)}"
        )
    expected = (b, h, query.shape[2], key.shape[2])
    if hidden is not None and tuple(hidden.shape) != expected:
        raise ValueError(
            f"hidden must have shape (batch, heads, queries, keys) = {expected}, got {tuple(hidden.shape)}"
        )


def causal_mask(q_len: int, k_len: int, device: torch.device) -> torch.Tensor:
    """Boolean (q_len, k_len) mask, True = attend, aligned bottom-right as in cached decoding:
    query i sees keys up to i + k_len - q_len."""
    return torch.ones(q_len, k_len, dtype=torch.bool, device=device).tril(diagonal=k_len - q_len)


def masked_scores(scores: torch.Tensor, attn_mask: torch.Tensor | None, is_causal: bool) -> torch.Tensor:
    """A masked copy of `scores` for the softmax; `scores` itself is left as it is."""
    if is_causal:
        keep = causal_mask(scores.shape[-2], scores.shape[-1], scores.device)
        scores = scores.masked_fill(~keep, float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask.to(scores.dtype)
    return scores


def carried_score_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    hidden: torch.Tensor | None = None,
    *,
    decay: float,
    gain: float,
    scale: float | None = None,
    is_causal: bool = False,
    attn_mask: torch.Tensor | None = None,
    first_layer: str = "scores",
    dropout_p: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Explicit path: H = decay * hidden + gain * scale * q k^T; returns (softmax(mask(H)) v, H).

    q (B, H, Tq, D), k and v (B, H, Tk, D); hidden (B, H, Tq, Tk) or None at the first layer, where
    `first_layer="scores"` gives H_1 = S_1 and `"zeros"` gives H_1 = gain * S_1.
    """
    check_first_layer(first_layer)
    check_shapes(query, key, value, hidden)
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale

    dtype = state_dtype(query, key, hidden)
    with torch.autocast(query.device.type, enabled=False):  # else autocast runs this matmul in bf16
        scores = torch.matmul(query.to(dtype), key.to(dtype).transpose(-2, -1)) * scale  # (B, H, Tq, Tk)
    if hidden is None:
        state = scores if first_layer == "scores" else gain * scores
    else:
        state = decay * hidden.to(dtype) + gain * scores

    probs = torch.softmax(masked_scores(state, attn_mask, is_causal), dim=-1).to(value.dtype)
    if dropout_p > 0.0:
        probs = F.dropout(probs, p=dropout_p, training=True)
    return torch.matmul(probs, value), state  # (B, H, Tq, D), (B, H, Tq, Tk)


def modern_hopfield_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    hidden: torch.Tensor | None = None,
    *,
    alpha_prime: float,
    scale: float | None = None,
    is_causal: bool = False,
    attn_mask: torch.Tensor | None = None,
    first_layer: str = "scores",
    dropout_p: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Modern Hopfield Attention: H_n = alpha' H_{n-1} + (1 - alpha') S_n, output softmax(H_n) V_n.

    Returns the attention output (B, H, Tq, D) and the new, unmasked hidden state (B, H, Tq, Tk) in
    `state_dtype` (fp32, or float64 for float64 inputs).
    `attn_mask` is boolean (True = attend) or additive float, broadcastable to (B, H, Tq, Tk); `is_causal`
    is aligned bottom-right. alpha' = 0 is ordinary attention.
    """
    check_unit_interval("alpha_prime", alpha_prime)
    return carried_score_attention(
        query,
        key,
        value,
        hidden,
        decay=float(alpha_prime),
        gain=1.0 - float(alpha_prime),
        scale=scale,
        is_causal=is_causal,
        attn_mask=attn_mask,
        first_layer=first_layer,
        dropout_p=dropout_p,
    )
