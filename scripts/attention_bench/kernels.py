"""Which SDPA backend a layer actually runs, forward and backward, read from the profiler's aten ops.

For the stacked path at each depth n (stacked width n * D), and for softmax and the fused path at the same shape:
SDPA's backend choice depends on the head dims, dtype, mask and device (notes/stacked-kernels.md), and a silent
fall-back to the math kernel keeps the T x T probabilities. The profiler records the aten op SDPA dispatched to
(public API; `torch._fused_sdp_choice` would say what SDPA would pick for given tensors, but only the profiler
sees the tensors the path really hands it, padded or not).
"""

from __future__ import annotations

import math
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from hopfield_attention.attention.paths import carried_attention

from .equality import padding_mask

# aten op -> backend; each has a "<op>_backward" counterpart, except math, whose backward is autograd's own ops.
BACKEND_OPS = {
    "aten::_scaled_dot_product_flash_attention": "flash",
    "aten::_scaled_dot_product_flash_attention_for_cpu": "flash (CPU)",
    "aten::_scaled_dot_product_efficient_attention": "memory-efficient",
    "aten::_scaled_dot_product_cudnn_attention": "cuDNN",
    "aten::_scaled_dot_product_fused_attention_overrideable": "overrideable",
    "aten::_scaled_dot_product_attention_math": "math",
}
MHA = dict(decay=0.5, gain=0.5)


def _backends(op_names: set[str]) -> tuple[list[str], list[str]]:
    forward = sorted(BACKEND_OPS[name] for name in op_names if name in BACKEND_OPS)
    backward = sorted(BACKEND_OPS[name.removesuffix("_backward")] for name in op_names
                      if name.endswith("_backward") and name.removesuffix("_backward") in BACKEND_OPS)  # fmt: skip
    return forward, backward


def profile_layer(implementation: str, depth: int, shape: dict, dtype, mask: str, device) -> dict:
    """The SDPA ops of forward + backward of layer `depth` (after depth - 1 layers of the same implementation)."""
    b, h, t, d = shape["batch"], shape["heads"], shape["seq_len"], shape["head_dim"]
    gen = torch.Generator(device=device).manual_seed(0)

    def leaf():
        return torch.randn(b, h, t, d, generator=gen, device=device).to(dtype).requires_grad_(True)

    q, k, v = leaf(), leaf(), leaf()
    attn_mask = padding_mask(b, t, device) if mask == "causal+padding" else None
    kwargs = dict(MHA, scale=1 / math.sqrt(d), is_causal=True, attn_mask=attn_mask)
    autocast = torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else nullcontext()
    hidden = None
    if implementation != "softmax":
        with torch.no_grad(), autocast:
            for _ in range(depth - 1):
                hidden = carried_attention(implementation, leaf(), leaf(), leaf(), hidden, **kwargs)[1]
        if isinstance(hidden, torch.Tensor):
            hidden = hidden.detach().requires_grad_(True)  # a dense state gets a gradient, as in a model
    with profile(activities=[ProfilerActivity.CPU]) as prof, autocast:  # aten ops are recorded on the host
        if implementation == "softmax":  # with padding: one causal-and-padding mask, as a backbone builds it
            causal = torch.ones(t, t, dtype=torch.bool, device=device).tril()
            both = None if attn_mask is None else attn_mask & causal
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=both, is_causal=both is None)
        else:
            out = carried_attention(implementation, q, k, v, hidden, **kwargs)[0]
        out.float().square().sum().backward()
    forward, backward = _backends({event.name for event in prof.events()})
    return {"forward": forward, "backward": backward}


def sdpa_backends(device, dtypes, depths, shape: dict) -> list[dict]:
    """One row per dtype, mask, implementation and depth: the backend(s) forward and backward."""
    rows = []
    for dtype in dtypes:
        for mask in ("causal", "causal+padding"):
            layers = [("softmax", 1), ("fused", 2)] + [("stacked", n) for n in depths]
            for implementation, depth in layers:
                width = depth * shape["head_dim"] if implementation == "stacked" else None
                row = dict(dtype=str(dtype).removeprefix("torch."), mask=mask, implementation=implementation,
                           depth=depth, width=width)  # fmt: skip
                try:
                    row |= profile_layer(implementation, depth, shape, dtype, mask, device)
                except Exception as error:  # a kernel that refuses the shape is a finding, not a crash
                    row["error"] = f"{type(error).__name__}: {error}"
                rows.append(row)
    return rows
