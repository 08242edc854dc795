"""The fused path: the carried state enters scaled_dot_product_attention as an additive bias.

Per head, with S_n = scale * q k^T and H_n = decay * H_{n-1} + gain * S_n (paper section 1):

    softmax(mask(H_n)) V = SDPA(q, k, v, attn_mask = decay * H_{n-1} + mask, scale = gain * scale)

plus one q k^T for the state handed on, which keeps only q and k for backward. At the first layer there
is no bias: H_1 = S_1 (`first_layer="scores"`, SDPA scale = scale) or H_1 = gain * S_1 (`"zeros"`,
scale = gain * scale); with decay = 0 the bias is the mask alone. Then the backbone's own kernels
(FlashAttention on CUDA, the flash kernel on the CPU) run as they are and keep no T x T tensor at all.
With gain = 0 the logits are the bias alone (q k^T does not enter).

Kept for backward per layer, beyond q, k, v and the output: one T x T tensor (the bias in the compute
dtype on CUDA, the fp32 state on the CPU); no probabilities, no dropout mask, no boolean mask (masks are
folded in additively). The SDPA kernels take the bias in the dtype of q, so under bf16 autocast the bias
is rounded to bf16 (relative error 2^-9 of the state's magnitude); the state handed on stays in
`state_dtype` (fp32, float64 for float64 inputs).

CUDA: the memory-efficient SDPA kernel takes a bias that needs a gradient and returns that gradient.
CPU: the flash kernel does not (SDPA falls back to its unfused math, which keeps the probabilities), so a
carried state that needs a gradient goes through `_CarriedAttentionCPU`, one autograd node for output and
state: the flash kernel forward, and a backward that rebuilds the probabilities from the saved state.
Dropout on the CPU takes SDPA's math fallback (the CPU flash kernel has no dropout). That node's backward
is not itself differentiable: double backward (gradgradcheck, Hessian-vector products) raises and names
the explicit path, which supports it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .functional import causal_mask, check_first_layer, check_shapes, state_dtype


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
    """Same contract as `functional.carried_score_attention`: returns (softmax(mask(H)) v, H in state_dtype)."""
    check_first_layer(first_layer)
    check_shapes(query, key, value, hidden)
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    # H = score_scale * q k^T + decay * hidden: the logits of the softmax, before the mask.
    score_scale = scale if hidden is None and first_layer == "scores" else gain * scale
    carried = hidden if hidden is not None and decay != 0.0 else None

    needs_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (query, key, carried))
    if carried is not None and query.device.type == "cpu" and dropout_p == 0.0 and needs_grad:
        return _CarriedAttentionCPU.apply(query, key, value, carried, attn_mask, is_causal, score_scale, decay)

    state = _state(query, key, hidden, score_scale, decay)
    out = _biased_attention(query, key, value, carried, decay, score_scale, is_causal, attn_mask, dropout_p)
    return out, state


def _state(query, key, hidden, score_scale, decay) -> torch.Tensor:
    """score_scale * q k^T + decay * hidden in state_dtype, also under autocast (which would run the matmul
    in bf16); in place where autograd allows, so one T x T tensor is formed and only q and k are kept."""
    dtype = state_dtype(query, key, hidden)
    with torch.autocast(query.device.type, enabled=False):
        state = torch.matmul(query.to(dtype), key.to(dtype).transpose(-2, -1)).mul_(score_scale)  # (B, H, Tq, Tk)
        if hidden is not None and decay != 0.0:
            state = torch.add(state, hidden.to(dtype), alpha=decay)
    return state


def _biased_attention(query, key, value, carried, decay, score_scale, is_causal, attn_mask, dropout_p):
    """softmax(score_scale * q k^T + decay * carried + mask) v through SDPA; carried is a state or None."""
    q_len, k_len = query.shape[-2], key.shape[-2]
    if score_scale == 0.0:
        # gain = 0: the logits are the bias alone. A zero query says so exactly (SDPA's CPU kernel turns
        # scale=0 with is_causal into NaN).
        query, score_scale = torch.zeros_like(query), 1.0
    if carried is None and attn_mask is None and (not is_causal or q_len == k_len):
        # No bias at all: SDPA's own causal flag (top-left aligned, equal to ours when Tq == Tk).
        return F.scaled_dot_product_attention(
            query, key, value, dropout_p=dropout_p, is_causal=is_causal, scale=score_scale
        )  # (B, H, Tq, D)

    dtype = state_dtype(query, key, carried)
    bias = _additive_mask(attn_mask, is_causal, q_len, k_len, query.device, dtype)  # broadcastable, or None
    if carried is not None:  # one T x T allocation: decay * carried + mask
        bias = carried.to(dtype) * decay if bias is None else torch.add(bias, carried.to(dtype), alpha=decay)
    bias = bias.to(query.dtype)  # (B, H, Tq, Tk); SDPA kernels want the mask in the dtype of q
    return F.scaled_dot_product_attention(query, key, value, attn_mask=bias, dropout_p=dropout_p, scale=score_scale)


def _additive_mask(attn_mask, is_causal, q_len, k_len, device, dtype) -> torch.Tensor | None:
    """Causal (bottom-right aligned) and padding masks as one additive mask of 0 / -inf in `dtype`.

    Additive, not boolean: adding a constant keeps nothing for backward, where masked_fill keeps its mask.
    """
    bias = None
    if is_causal:
        keep = causal_mask(q_len, k_len, device)  # (Tq, Tk)
        bias = torch.zeros(q_len, k_len, device=device, dtype=dtype).masked_fill_(~keep, float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            extra = torch.zeros(attn_mask.shape, device=device, dtype=dtype).masked_fill_(~attn_mask, float("-inf"))
        else:
            extra = attn_mask.to(dtype)
        bias = extra if bias is None else bias + extra
    return bias


class _CarriedAttentionCPU(torch.autograd.Function):
    """(softmax(H + mask) v, H) with H = score_scale * q k^T + decay * hidden, as one autograd node.

    Forward: H in state_dtype, and the output from the CPU flash kernel with the bias decay * hidden + mask.
    Kept: q, k, v, the output, H (the state, one T x T tensor) and the caller's mask. Backward rebuilds
    the probabilities P from H, and one gradient dL = P * (dP - rowsum(dO * O)) + dH serves the output and the state
    alike: dq = score_scale dL k, dk = score_scale dL^T q, dhidden = decay dL. Backward runs in H's dtype
    (fp32, or float64), with in-place steps that autograd cannot differentiate again.
    """

    @staticmethod
    def forward(ctx, query, key, value, hidden, attn_mask, is_causal, score_scale, decay):
        state = _state(query, key, hidden, score_scale, decay)  # (B, H, Tq, Tk), fp32
        mask = _additive_mask(attn_mask, is_causal, query.shape[-2], key.shape[-2], query.device, state.dtype)
        bias = hidden.to(state.dtype) * decay if mask is None else torch.add(mask, hidden.to(state.dtype), alpha=decay)
        # gain = 0: the logits are the bias alone, said exactly by a zero query (as in _biased_attention)
        q = query if score_scale else torch.zeros_like(query)
        # detach: SDPA picks its math fallback for a mask that requires grad, even with grad mode off
        out = F.scaled_dot_product_attention(
            q, key.to(q.dtype), value.to(q.dtype), attn_mask=bias.to(q.dtype).detach(), scale=score_scale or 1.0
        )  # (B, H, Tq, D)
        del bias, mask  # rebuilt in backward from the caller's mask, which every layer shares
        ctx.save_for_backward(query, key, value, out, state, attn_mask)
        ctx.is_causal, ctx.score_scale, ctx.decay, ctx.hidden_dtype = is_causal, score_scale, decay, hidden.dtype
        ctx.set_materialize_grads(False)  # the state's gradient is None after the last layer: no zeros
        return out, state

    @staticmethod
    def backward(ctx, grad_out, grad_state):
        if torch.is_grad_enabled():  # backward(create_graph=True): a double backward would follow
            raise RuntimeError(
                "the fused path's CPU autograd node has no double backward (gradgradcheck, Hessian-vector "
                "products); use implementation='explicit' for higher-order gradients"
            )
        query, key, value, out, state, attn_mask = ctx.saved_tensors
        dtype = state.dtype
        mask = _additive_mask(attn_mask, ctx.is_causal, query.shape[-2], key.shape[-2], query.device, dtype)
        with torch.autocast("cpu", enabled=False):
            grad_logits, grad_value = None, None
            if grad_out is not None:
                d_out = grad_out.to(dtype)  # (B, H, Tq, D)
                probs = state.clone() if mask is None else state + mask  # (B, H, Tq, Tk), softmax in place
                probs = probs.sub_(probs.amax(dim=-1, keepdim=True)).exp_()
                probs = probs.div_(probs.sum(dim=-1, keepdim=True))
                grad_value = torch.matmul(probs.transpose(-2, -1), d_out)  # (B, H, Tk, D)
                row = (d_out * out.to(dtype)).sum(dim=-1, keepdim=True)  # (B, H, Tq, 1)
                grad_logits = torch.matmul(d_out, value.to(dtype).transpose(-2, -1)).sub_(row).mul_(probs)
                del probs
            if grad_state is not None:
                if grad_logits is None:
                    grad_logits = grad_state.to(dtype, copy=True)  # (a copy: scaled in place below)
                else:
                    grad_logits = grad_logits.add_(grad_state)
            if grad_logits is None:
                return (None,) * 8
            grad_query = torch.matmul(grad_logits, key.to(dtype)).mul_(ctx.score_scale)  # (B, H, Tq, D)
            grad_key = torch.matmul(grad_logits.transpose(-2, -1), query.to(dtype)).mul_(ctx.score_scale)
            grad_hidden = grad_logits.mul_(ctx.decay) if ctx.needs_input_grad[3] else None  # (B, H, Tq, Tk)
        return (
            grad_query.to(query.dtype),
            grad_key.to(key.dtype),
            None if grad_value is None else grad_value.to(value.dtype),
            None if grad_hidden is None else grad_hidden.to(ctx.hidden_dtype),
            None,
            None,
            None,
            None,
        )
