"""The fused path: the carried state enters scaled_dot_product_attention as an additive bias.

Per head, with S_n = scale * q k^T and H_n = decay * H_{n-1} + gain * S_n (paper section 1):

    softmax(mask(H_n)) V = SDPA(q, k, v, attn_mask = decay * H_{n-1} + mask, scale = gain * scale)

At the first layer there is no bias: H_1 = S_1 (`first_layer="scores"`, scale = scale) or
H_1 = gain * S_1 (`"zeros"`, scale = gain * scale). With decay = 0 the bias is the mask alone, so the
backbone's own fused kernels (FlashAttention on CUDA, the flash kernel on the CPU) run unchanged. With
gain = 0 the logits are the bias alone (q k^T does not enter). The state handed on needs one more
q k^T, which keeps only q and k for backward, no T x T tensor.

What is kept for backward per layer, beyond q, k, v and the output: the bias, one T x T tensor in the
compute dtype, and no probabilities, no dropout mask, no boolean mask (masks are folded in additively).
The SDPA kernels take the bias in the dtype of q, so under bf16 autocast the bias is rounded to bf16
(relative error 2^-9 of the state's magnitude); the state handed on stays float32.

CUDA: the memory-efficient SDPA kernel takes a bias that needs a gradient and returns that gradient. The
CPU's flash kernel does not (SDPA would fall back to its unfused math, which keeps the probabilities), so
on the CPU a bias that needs a gradient goes through `_BiasedAttentionCPU`: the flash kernel forward, and a
backward that recomputes the probabilities one layer at a time. With dropout on the CPU, SDPA's math
fallback runs (the flash kernel has no dropout there).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .functional import _check_shapes, causal_mask, check_first_layer


def fused_carried_score_attention(
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
    """Same contract as `functional.carried_score_attention`: returns (softmax(mask(H)) v, H in fp32)."""
    check_first_layer(first_layer)
    _check_shapes(query, key, value, hidden)
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale

    if hidden is None:
        logit_scale = scale if first_layer == "scores" else gain * scale
        carried = None
    else:
        logit_scale = gain * scale
        carried = decay * hidden.float() if decay != 0.0 else None  # (B, H, Tq, Tk), fp32
    out = _biased_attention(query, key, value, carried, logit_scale, is_causal, attn_mask, dropout_p)

    # The state handed on, unmasked, in fp32 even under autocast (which would run this matmul in bf16).
    with torch.autocast(query.device.type, enabled=False):
        scores = torch.matmul(query.float(), key.float().transpose(-2, -1)) * scale  # (B, H, Tq, Tk)
    if hidden is None:
        state = scores if first_layer == "scores" else gain * scores
    else:
        state = decay * hidden.float() + gain * scores
    return out, state


def _biased_attention(query, key, value, carried, logit_scale, is_causal, attn_mask, dropout_p):
    """softmax(logit_scale * q k^T + carried + mask) v through SDPA; carried is fp32 or None."""
    q_len, k_len = query.shape[-2], key.shape[-2]
    if logit_scale == 0.0:
        # gain = 0: the logits are the bias alone. A zero query says so exactly (SDPA's CPU kernel turns
        # scale=0 with is_causal into NaN).
        query, logit_scale = torch.zeros_like(query), 1.0
    if carried is None and attn_mask is None and (not is_causal or q_len == k_len):
        # No bias at all: SDPA's own causal flag (top-left aligned, equal to ours when Tq == Tk).
        return F.scaled_dot_product_attention(
            query, key, value, dropout_p=dropout_p, is_causal=is_causal, scale=logit_scale
        )

    bias = _additive_mask(attn_mask, is_causal, q_len, k_len, query.device)  # broadcastable, fp32, or None
    if carried is not None:
        bias = carried if bias is None else carried + bias  # (B, H, Tq, Tk)
    bias = bias.to(query.dtype)  # (SDPA kernels want the mask in the dtype of q)

    if query.device.type == "cpu" and dropout_p == 0.0 and bias.requires_grad:
        return _BiasedAttentionCPU.apply(query, key.to(query.dtype), value.to(query.dtype), bias, logit_scale)
    return F.scaled_dot_product_attention(query, key, value, attn_mask=bias, dropout_p=dropout_p, scale=logit_scale)


def _additive_mask(attn_mask, is_causal, q_len, k_len, device) -> torch.Tensor | None:
    """Causal (bottom-right aligned) and padding masks as one additive fp32 mask of 0 / -inf.

    Additive, not boolean: adding a constant keeps nothing for backward, where masked_fill keeps its mask.
    """
    bias = None
    if is_causal:
        keep = causal_mask(q_len, k_len, device)  # (Tq, Tk)
        bias = torch.zeros(q_len, k_len, device=device).masked_fill_(~keep, float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            extra = torch.zeros(attn_mask.shape, device=device).masked_fill_(~attn_mask, float("-inf"))
        else:
            extra = attn_mask.float()
        bias = extra if bias is None else bias + extra
    return bias


class _BiasedAttentionCPU(torch.autograd.Function):
    """softmax(scale * q k^T + bias) v with a gradient for the bias, keeping no probabilities for backward.

    Forward: the CPU flash kernel (through SDPA, with a bias that needs no gradient there). Backward:
    P is recomputed from q, k and the bias, then dS = P * (dP - rowsum(dO * O)) gives the bias's
    gradient and, scaled, those of q and k. Backward runs in fp32 whatever the compute dtype.
    """

    @staticmethod
    def forward(ctx, query, key, value, bias, scale):
        with torch.no_grad():
            out = F.scaled_dot_product_attention(query, key, value, attn_mask=bias, scale=scale)  # (B, H, Tq, D)
        ctx.save_for_backward(query, key, value, bias, out)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx, grad_out):
        query, key, value, bias, out = ctx.saved_tensors
        scale = ctx.scale
        with torch.autocast("cpu", enabled=False):
            q, k, v, d_out = query.float(), key.float(), value.float(), grad_out.float()
            logits = torch.matmul(q, k.transpose(-2, -1)).mul_(scale).add_(bias.float())  # (B, H, Tq, Tk)
            probs = torch.softmax(logits, dim=-1)
            del logits
            grad_value = torch.matmul(probs.transpose(-2, -1), d_out)  # (B, H, Tk, D)
            row = (d_out * out.float()).sum(dim=-1, keepdim=True)  # (B, H, Tq, 1)
            grad_logits = torch.matmul(d_out, v.transpose(-2, -1)).sub_(row).mul_(probs)  # (B, H, Tq, Tk)
            del probs
            grad_query = torch.matmul(grad_logits, k).mul_(scale)  # (B, H, Tq, D)
            grad_key = torch.matmul(grad_logits.transpose(-2, -1), q).mul_(scale)  # (B, H, Tk, D)
        grad_bias = _sum_to_shape(grad_logits, bias.shape).to(bias.dtype)
        return (
            grad_query.to(query.dtype),
            grad_key.to(key.dtype),
            grad_value.to(value.dtype),
            grad_bias,
            None,
        )


def _sum_to_shape(grad: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Reduce a gradient over the dimensions a broadcast bias was expanded along."""
    return grad if grad.shape == shape else grad.sum_to_size(shape)
