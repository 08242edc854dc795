"""Every implementation of carried-score attention against the explicit path on one device: outputs, states and
gradients, in fp32 and under bf16 autocast. The GPU check's first section (scripts/gpu_check.py); on the CPU the
same comparisons are the test suite's (tests/test_attention_paths.py, tests/test_backbones_implementations.py).

Checks, each for mha and realformer and every implementation but explicit ("auto" included):
  layer        one layer after a previous layer of the same implementation, the tests' shapes and masks
  chain        three layers, each layer's q, k, v from the previous output (tests' `chain`)
  deep-chain   ten causal layers at head dim 64 with right padding: stacked widths up to 640, where "auto"
               goes dense on CUDA (STACKED_MAX_WIDTH) and the stacked path meets SDPA's wider kernels
  model        the tiny model of every registered backbone family, converted: logits on the real tokens and
               every parameter's gradient
Tolerances are the tests' (tests/test_gpu_check.py holds them equal). The tests' shapes are compared as they
are; the deep chain and the models, whose values grow with their size, as tensors divided by the reference's
largest entry (so a tolerance reads as a fraction of the largest value).
"""

from __future__ import annotations

import copy
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from hopfield_attention import convert_model
from hopfield_attention.attention.paths import IMPLEMENTATION_CHOICES, carried_attention
from hopfield_attention.attention.stacked import StackedScores
from hopfield_attention.backbones import BACKBONES

FP32_TOL = dict(rtol=1e-4, atol=1e-5)  # tests/test_attention_paths.py FP32_TOL
CHAIN_GRAD_TOL = dict(rtol=1e-4, atol=1e-4)  # tests/test_attention_paths.py, gradients through three layers
BF16_TOL = dict(rtol=0.05, atol=0.05)  # tests/test_attention_paths.py BF16_TOL
VARIANTS = {"mha": dict(decay=0.5, gain=0.5), "realformer": dict(decay=1.0, gain=1.0)}
OTHERS = [name for name in IMPLEMENTATION_CHOICES if name != "explicit"]
B, H, T, D = 2, 3, 7, 8  # tests/test_attention_paths.py


def dense(state) -> torch.Tensor:
    return state.dense() if isinstance(state, StackedScores) else state


def _autocast(device: torch.device, dtype: torch.dtype):
    return torch.autocast(device.type, dtype=torch.bfloat16) if dtype == torch.bfloat16 else nullcontext()


def compare(got: dict, want: dict, tol: dict, grad_tol: dict, normalise: bool = False) -> dict:
    """assert_close of every named tensor (gradients with grad_tol); the largest error over the largest reference
    entry is kept for the report either way."""
    worst, failures = 0.0, []
    for name, expected in want.items():
        tolerance = grad_tol if name.startswith("grad") else tol
        actual, expected = got[name].detach().float(), expected.detach().float()
        scale = expected.abs().max().clamp_min(1e-30)
        worst = max(worst, float((actual - expected).abs().max() / scale))
        if normalise:
            actual, expected = actual / scale, expected / scale
        try:
            torch.testing.assert_close(actual, expected, **tolerance)
        except AssertionError as error:
            failures.append(f"{name}: {str(error).splitlines()[0]} {str(error).splitlines()[-1]}".strip())
    return {"passed": not failures, "max_relative_error": worst, "failures": failures}


def _grads(loss, leaves: dict) -> dict:
    grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
    return {f"grad {name}": torch.zeros_like(t) if g is None else g for (name, t), g in zip(leaves.items(), grads)}


def padding_mask(batch: int, k_len: int, device, kind: str = "bool"):
    """Batch element 1 cannot see its last two keys (right padding: no causal row is fully masked)."""
    keep = torch.ones(batch, 1, 1, k_len, dtype=torch.bool, device=device)
    keep[1, ..., -2:] = False
    if kind == "bool":
        return keep
    return torch.zeros(keep.shape, device=device).masked_fill(~keep, torch.finfo(torch.float32).min)


def layer_result(implementation, inputs, dtype, **kwargs) -> dict:
    """Output, next state and gradients of a layer after a previous one (tests' run_with_grads)."""
    leaves = {name: t.clone().requires_grad_(True) for name, t in inputs.items()}
    q, k, v, pq, pk, pv = leaves.values()
    with _autocast(q.device, dtype):
        hidden = carried_attention(implementation, pq, pk, pv, None, **kwargs)[1]
        out, state = carried_attention(implementation, q, k, v, hidden, **kwargs)
    state = dense(state)
    weights = torch.linspace(-1, 1, state.shape[-1], device=state.device)  # every state entry counts differently
    loss = (out.float() ** 2).sum() + (state * weights).sum()
    return {"output": out, "state": state, **_grads(loss, leaves)}


def chain_result(implementation, x, mixers, dtype, pre_norm=False, **kwargs) -> dict:
    """Layers whose q, k, v come from the previous output (tests' chain; pre_norm: from its layer norm, as in a
    pre-norm transformer, which keeps the scores of a deep chain in range); the last state in the loss."""
    leaves = {"x": x.clone().requires_grad_(True)}
    leaves |= {f"mixer {i}": m.clone().requires_grad_(True) for i, m in enumerate(mixers)}
    h, hidden = leaves["x"], None
    with _autocast(x.device, dtype):
        for i in range(len(mixers)):
            normed = F.layer_norm(h, h.shape[-1:]) if pre_norm else h
            q, k, v = (normed @ leaves[f"mixer {i}"]).chunk(3, dim=-1)  # (B, H, T, D) each
            out, hidden = carried_attention(implementation, q, k, v, hidden, **kwargs)
            h = h + out
    state = dense(hidden)
    loss = (h.float() ** 2).sum() + state.tanh().sum()
    return {"output": h, "state": state, **_grads(loss, leaves)}


def model_result(model, inputs, dtype) -> dict:
    """Logits on the real tokens and every parameter's gradient, of a loss that skips padded positions."""
    model.zero_grad()
    with _autocast(next(model.parameters()).device, dtype):
        out = model(**inputs)
    if not isinstance(out, torch.Tensor):  # a language model's output: logits, or hidden states without a head
        out = out.logits if getattr(out, "logits", None) is not None else out.last_hidden_state
    keep = inputs.get("attention_mask")
    weight = 1 if keep is None else keep[..., None]
    (out.float().square() * weight).mean().backward()
    rows = slice(None) if keep is None else keep.bool()
    grads = {f"grad {name}": p.grad for name, p in model.named_parameters() if p.grad is not None}
    return {"output": out[rows], **grads}


def _cases(device: torch.device, dtype: torch.dtype, deep: dict):
    """(check, variant, setting, function of an implementation giving its result, tolerance, gradients' tolerance,
    normalise)."""
    gen = torch.Generator().manual_seed(0)
    fp32 = dtype == torch.float32
    names = ("q", "k", "v", "q'", "k'", "v'")  # this layer's and the previous layer's
    layer_inputs = {name: torch.randn(B, H, T, D, generator=gen).to(device, dtype) for name in names}
    masks = ["none", "causal", "bool", "additive", "causal+bool"] if fp32 else ["causal", "bool"]
    for variant, params in VARIANTS.items():
        for mask in masks:
            kwargs = dict(params, is_causal="causal" in mask, scale=0.3)
            if mask.endswith("bool") or mask == "additive":
                kwargs["attn_mask"] = padding_mask(B, T, device, "bool" if mask.endswith("bool") else "additive")
            tol = FP32_TOL if fp32 else BF16_TOL
            run = lambda impl, kw=kwargs: layer_result(impl, layer_inputs, dtype, **kw)  # noqa: E731
            yield "layer", variant, mask, run, tol, tol, False

    x = torch.randn(B, H, T, D, generator=gen).to(device)
    mixers = [(torch.randn(D, 3 * D, generator=gen) / D**0.5).to(device) for _ in range(3)]
    for variant, params in VARIANTS.items():
        for first_layer in ("scores", "zeros"):
            kwargs = dict(params, is_causal=True, first_layer=first_layer)
            run = lambda impl, kw=kwargs, x=x, mixers=mixers: chain_result(impl, x, mixers, dtype, **kw)  # noqa: E731
            if fp32:
                yield "chain", variant, f"first_layer={first_layer}", run, FP32_TOL, CHAIN_GRAD_TOL, False
            else:
                yield "chain", variant, f"first_layer={first_layer}", run, BF16_TOL, BF16_TOL, True

    b, h, t, d, layers = deep["batch"], deep["heads"], deep["seq_len"], deep["head_dim"], deep["layers"]
    deep_x = torch.randn(b, h, t, d, generator=gen).to(device)
    deep_mixers = [(torch.randn(d, 3 * d, generator=gen) / d**0.5).to(device) for _ in range(layers)]
    for variant, params in VARIANTS.items():
        kwargs = dict(params, is_causal=True, attn_mask=padding_mask(b, t, device), pre_norm=True)
        run = lambda impl, kw=kwargs: chain_result(impl, deep_x, deep_mixers, dtype, **kw)  # noqa: E731
        tol = FP32_TOL if fp32 else BF16_TOL
        yield "deep-chain", variant, f"{layers} layers, T={t}, D={d}, causal+padding", run, tol, tol, True


def _model_cases(device: torch.device, dtype: torch.dtype):
    factories = {}
    fp32 = dtype == torch.float32
    for cls, backbone in BACKBONES.items():
        factories.setdefault(backbone.tiny, cls)  # one model class per family: the first registered
    for tiny, cls in factories.items():
        torch.manual_seed(0)
        stock, inputs = tiny(cls)
        inputs = {name: t.to(device) for name, t in inputs.items()}
        if "input_ids" in inputs:
            mask = torch.ones_like(inputs["input_ids"])
            mask[1, :2] = 0  # left padding: rows and keys a layer must not see
            inputs["attention_mask"] = mask
        for variant in VARIANTS:
            params = dict(alpha=0.5, alpha_prime=0.3) if variant == "mha" else {}

            def run(impl, stock=stock, inputs=inputs, variant=variant, params=params):
                model = convert_model(copy.deepcopy(stock), variant, implementation=impl, **params)
                return model_result(model.to(device).train(), inputs, dtype)

            if fp32:  # tests/test_backbones_implementations.py: TOL, gradients rtol 1e-4, atol 1e-5
                yield "model", variant, cls.__name__, run, FP32_TOL, FP32_TOL, False
            else:
                yield "model", variant, cls.__name__, run, BF16_TOL, BF16_TOL, True


def check_equality(device: torch.device, dtypes=(torch.float32, torch.bfloat16), deep: dict | None = None,
                   ) -> list[dict]:  # fmt: skip
    """One row per check, variant, setting, dtype and implementation: passed, the largest relative error."""
    deep = deep or dict(batch=2, heads=4, seq_len=256, head_dim=64, layers=10)
    rows = []
    for dtype in dtypes:
        dtype_name = str(dtype).removeprefix("torch.")
        cases = [*_cases(device, dtype, deep), *_model_cases(device, dtype)]
        for check, variant, setting, run, tol, grad_tol, normalise in cases:
            want = run("explicit")
            for implementation in OTHERS:
                row = dict(check=check, variant=variant, setting=setting, dtype=dtype_name,
                           implementation=implementation)  # fmt: skip
                try:
                    row |= compare(run(implementation), want, tol, grad_tol, normalise)
                except Exception as error:  # a path that raises is a failed check, reported with the others
                    row |= {"passed": False, "failures": [f"{type(error).__name__}: {error}"]}
                rows.append(row)
    return rows
