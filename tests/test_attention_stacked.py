"""The stacked path equals the explicit path through chains of layers, runs the fused kernels, keeps little."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from test_attention_paths import FP32_TOL, MHA, REALFORMER, padding_mask
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.checkpoint import checkpoint

from hopfield_attention.attention.functional import (
    carried_score_attention,
    masked_scores,
)
from hopfield_attention.attention.stacked import (
    StackedScores,
    stacked_carried_score_attention,
)

B, H, T, D, LAYERS = 2, 3, 7, 8, 3
GRAD_TOL = dict(rtol=1e-4, atol=1e-4)  # gradients sum over more terms, as in test_attention_paths
BF16_RELATIVE = 2**-6  # a few bf16 roundings (8 bits each), relative to the largest entry
# alpha' = 0 (ordinary attention), 0.3, 0.5, 1 (the first layer's scores forever) and RealFormer
PARAMS = {f"mha_{a}": dict(decay=a, gain=1.0 - a) for a in (0.0, 0.3, 0.5, 1.0)} | {"realformer": REALFORMER}
MASKS = ["none", "causal", "bool", "additive", "causal+bool"]


def layer_inputs(layers=LAYERS, q_len=T, k_len=T, kv_heads=H, seed=0, dtype=torch.float32):
    """q, k, v of each layer, independent leaves (a layer's q and k are the model's own)."""
    gen = torch.Generator().manual_seed(seed)
    shapes = ((B, H, q_len, D), (B, kv_heads, k_len, D), (B, kv_heads, k_len, D))
    return [[torch.randn(s, generator=gen).to(dtype) for s in shapes] for _ in range(layers)]


def mask_kwargs(mask: str, k_len: int = T) -> dict:
    kwargs = dict(is_causal="causal" in mask)
    if mask.endswith("bool") or mask == "additive":
        kwargs["attn_mask"] = padding_mask("bool" if mask.endswith("bool") else "additive", k_len=k_len)
    return kwargs


def explicit_gqa(query, key, value, hidden, **kwargs):
    """The explicit path for grouped keys: repeated to the query heads (autograd sums their gradients)."""
    groups = query.shape[1] // key.shape[1]
    key, value = (t.repeat_interleave(groups, dim=1) for t in (key, value))
    return carried_score_attention(query, key, value, hidden, **kwargs)


def run_chain(fn, inputs, autocast=False, **kwargs):
    """Every layer's output and dense state, and the gradients w.r.t. every q, k, v of a loss that touches
    each output and the last state."""
    leaves = [[t.clone().requires_grad_(True) for t in layer] for layer in inputs]
    outs, states, hidden = [], [], None
    for q, k, v in leaves:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out, hidden = fn(q, k, v, hidden, **kwargs)
        outs.append(out)
        states.append(hidden.dense() if isinstance(hidden, StackedScores) else hidden)
    weights = torch.linspace(-1, 1, states[-1].shape[-1])  # every state entry counts differently
    loss = sum((out.float() * (i + 1)).pow(2).sum() for i, out in enumerate(outs)) + (states[-1] * weights).sum()
    flat = [t for layer in leaves for t in layer]
    grads = torch.autograd.grad(loss, flat, allow_unused=True)
    grads = [torch.zeros_like(t) if g is None else g for t, g in zip(flat, grads)]  # unused = zero gradient
    return [o.detach().float() for o in outs], [s.detach() for s in states], grads


def assert_chains_equal(inputs, reference=carried_score_attention, **kwargs):
    want = run_chain(reference, inputs, **kwargs)
    got = run_chain(stacked_carried_score_attention, inputs, **kwargs)
    for n, (g, w) in enumerate(zip(got[0], want[0])):
        torch.testing.assert_close(g, w, **FP32_TOL, msg=lambda m: f"layer {n + 1} output differs: {m}")
    for n, (g, w) in enumerate(zip(got[1], want[1])):
        assert g.dtype == torch.float32
        torch.testing.assert_close(g, w, **FP32_TOL, msg=lambda m: f"layer {n + 1} state differs: {m}")
    for i, (g, w) in enumerate(zip(got[2], want[2])):
        msg = f"grad of layer {i // 3 + 1}'s {'qkv'[i % 3]} differs"
        torch.testing.assert_close(g, w, **GRAD_TOL, msg=lambda m: f"{msg}: {m}")


# --- equality with the explicit path ------------------------------------------------------------------------


@pytest.mark.parametrize("params", list(PARAMS.values()), ids=list(PARAMS))
@pytest.mark.parametrize("first_layer", ["scores", "zeros"])
@pytest.mark.parametrize("mask", MASKS)
def test_stacked_equals_explicit_through_layers(params, first_layer, mask):
    assert_chains_equal(layer_inputs(), **params, first_layer=first_layer, scale=0.3, **mask_kwargs(mask))


@pytest.mark.parametrize("q_len", [1, 3])
@pytest.mark.parametrize("mask", ["causal", "causal+bool", "additive"])
def test_stacked_equals_explicit_in_cached_decoding(q_len, mask):
    """Tq < Tk: the new rows of each layer's q against all keys of that layer; causal aligned bottom-right."""
    assert_chains_equal(layer_inputs(q_len=q_len), **MHA, **mask_kwargs(mask))


def test_cached_decoding_needs_no_state_cache():
    """The last rows of a full pass equal a decoding step given only those rows of q: every earlier layer's
    keys are in the KV cache already, and nothing else is carried."""
    inputs = layer_inputs()
    full, step, hidden_full, hidden_step = [], [], None, None
    for q, k, v in inputs:
        out, hidden_full = stacked_carried_score_attention(q, k, v, hidden_full, **MHA, is_causal=True)
        full.append(out)
        out, hidden_step = stacked_carried_score_attention(q[:, :, -2:], k, v, hidden_step, **MHA, is_causal=True)
        step.append(out)
    for f, s in zip(full, step):
        torch.testing.assert_close(s, f[:, :, -2:], **FP32_TOL)
    torch.testing.assert_close(hidden_step.dense(), hidden_full.dense()[:, :, -2:], **FP32_TOL)


@pytest.mark.parametrize("mask", ["causal", "bool", "causal+bool"])
@pytest.mark.parametrize("q_len", [T, 2])
def test_stacked_grouped_query_attention_equals_explicit(mask, q_len):
    """Keys and values with fewer heads than queries go to SDPA as they are (enable_gqa)."""
    inputs = layer_inputs(kv_heads=1, q_len=q_len)
    assert_chains_equal(inputs, reference=explicit_gqa, **MHA, **mask_kwargs(mask))


@pytest.mark.parametrize("params", [MHA, dict(decay=0.7, gain=0.3), REALFORMER], ids=["mha", "alpha_prime_0.7", "rf"])
@pytest.mark.parametrize("mask", ["causal", "bool"])
def test_stacked_under_bf16_autocast_is_as_close_as_explicit(params, mask):
    """Both paths against the fp32 computation on the same bf16 inputs: outputs and gradients within bf16
    accuracy (measured: both 0.3-1% of the largest entry), the dense state fp32 and as exact as the explicit one."""
    inputs = layer_inputs(dtype=torch.bfloat16)  # what an autocast linear layer hands over
    kwargs = dict(params, **mask_kwargs(mask))
    truth = run_chain(carried_score_attention, [[t.float() for t in layer] for layer in inputs], **kwargs)
    for path in (carried_score_attention, stacked_carried_score_attention):
        outs, states, grads = run_chain(path, inputs, autocast=True, **kwargs)
        for got, want in zip(outs + grads, truth[0] + truth[2]):
            assert (got.float() - want).abs().max() <= BF16_RELATIVE * want.abs().max()
        for got, want in zip(states, truth[1]):
            assert got.dtype == torch.float32
            torch.testing.assert_close(got, want, **FP32_TOL)


# --- the state ------------------------------------------------------------------------------------------------


def test_state_holds_the_layers_q_and_k_with_their_weights():
    (q1, k1, v1), (q2, k2, v2), (q3, k3, v3) = layer_inputs()
    s = 0.25
    state = None
    for q, k, v in ((q1, k1, v1), (q2, k2, v2), (q3, k3, v3)):
        _, state = stacked_carried_score_attention(q, k, v, state, decay=0.5, gain=0.5, scale=s, first_layer="zeros")
    assert all(a is b for a, b in zip(state.queries, (q1, q2, q3)))  # the layers' own tensors, not copies
    assert all(a is b for a, b in zip(state.keys, (k1, k2, k3)))
    assert state.weights == (0.5 * 0.5 * 0.5 * s, 0.5 * 0.5 * s, 0.5 * s)  # c_{3,m} * scale
    assert state.width == 3 * D and state.shape == (B, H, T, T)
    want = sum(w * q @ k.transpose(-2, -1) for q, k, w in zip((q1, q2, q3), (k1, k2, k3), state.weights))
    torch.testing.assert_close(state.dense(), want, **FP32_TOL)


def test_zero_weights_are_dropped():
    inputs = layer_inputs()

    def last_state(**params):
        state = None
        for q, k, v in inputs:
            _, state = stacked_carried_score_attention(q, k, v, state, **params)
        return state

    assert len(last_state(decay=0.0, gain=1.0).queries) == 1  # alpha' = 0: this layer alone
    only_first = last_state(decay=1.0, gain=0.0)  # alpha' = 1: the first layer's scores forever
    assert len(only_first.queries) == 1 and only_first.queries[0] is inputs[0][0]
    empty = last_state(decay=1.0, gain=0.0, first_layer="zeros")  # H = 0 at every layer
    assert empty.queries == () and torch.equal(empty.dense(), torch.zeros(B, H, T, T))
    q, k, v = inputs[0]
    out, _ = stacked_carried_score_attention(q, k, v, empty, decay=1.0, gain=0.0, is_causal=True)
    counts = torch.arange(1, T + 1).view(T, 1)
    torch.testing.assert_close(out, v.cumsum(dim=2) / counts, **FP32_TOL)  # uniform over the visible keys


def test_stacked_rejects_what_it_cannot_take():
    q, k, v = layer_inputs()[0]
    with pytest.raises(TypeError, match="hidden must be the StackedScores .* got Tensor"):
        stacked_carried_score_attention(q, k, v, torch.zeros(B, H, T, T), **MHA)
    _, short = stacked_carried_score_attention(q[:, :, :3], k, v, None, **MHA)
    with pytest.raises(ValueError, match=r"hidden must hold scores of shape .* \(2, 3, 7, 7\)"):
        stacked_carried_score_attention(q, k, v, short, **MHA)
    with pytest.raises(ValueError, match="kv_heads dividing the query heads"):
        stacked_carried_score_attention(q, k[:, :2], v[:, :2], None, **MHA)
    with pytest.raises(ValueError, match="first_layer must be one of"):
        stacked_carried_score_attention(q, k, v, None, **MHA, first_layer="ones")
    with pytest.raises(ValueError, match="decay must be a finite number, got nan"):
        stacked_carried_score_attention(q, k, v, None, decay=float("nan"), gain=0.5)
    with pytest.raises(ValueError, match="attn_mask must not require grad"):
        stacked_carried_score_attention(q, k, v, None, **MHA, attn_mask=torch.zeros(T, T, requires_grad=True))


# --- kernels and memory ----------------------------------------------------------------------------------------


def attention_ops(inputs, **kwargs) -> set[str]:
    """The aten ops a chain's forward and backward ran."""
    leaves = [[t.clone().requires_grad_(True) for t in layer] for layer in inputs]
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        hidden, loss = None, 0.0
        for q, k, v in leaves:
            out, hidden = stacked_carried_score_attention(q, k, v, hidden, **MHA, **kwargs)
            loss = loss + out.float().sum()
        loss.backward()
    return {event.key for event in prof.key_averages()}


@pytest.mark.parametrize("case", ["causal", "causal+bool", "additive", "decoding", "gqa", "bf16"])
def test_stacked_runs_the_cpu_flash_kernel(case):
    """q and k of width n * D against v of width D would send SDPA to its math fallback (T x T probabilities
    kept); v zero-padded to n * D keeps every layer on the flash kernel, forward and backward."""
    inputs = layer_inputs(
        q_len=2 if case == "decoding" else T,
        kv_heads=1 if case == "gqa" else H,
        dtype=torch.bfloat16 if case == "bf16" else torch.float32,
    )
    ops = attention_ops(inputs, **mask_kwargs(case if case in MASKS else "causal"))
    assert {"aten::_scaled_dot_product_flash_attention_for_cpu",
            "aten::_scaled_dot_product_flash_attention_for_cpu_backward"} <= ops  # fmt: skip
    assert not ops & {"aten::_scaled_dot_product_attention_math", "aten::_softmax", "aten::repeat_interleave"}


def test_dropout_on_the_cpu_takes_the_math_kernel():
    """Documented, not wanted: the CPU flash kernel has no dropout (as for the fused path)."""
    assert "aten::_scaled_dot_product_attention_math" in attention_ops(layer_inputs(), dropout_p=0.1)


def load_bench():
    path = Path(__file__).resolve().parents[1] / "scripts" / "bench_attention.py"
    spec = importlib.util.spec_from_file_location("bench_attention", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class LargestTensor(TorchDispatchMode):
    """The largest number of elements of any tensor an op returns."""

    def __init__(self):
        super().__init__()
        self.numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.numel = max(self.numel, t.numel())
        return out


def concatenating_reference(query, key, value, hidden, *, decay, gain, is_causal):
    """SDPA on the concatenations as autograd sees them (no rebuilding): what keeping them costs."""
    scale = 1.0 / math.sqrt(query.shape[-1])
    queries = [query * gain] if hidden else [query]
    queries = [q * decay for q in hidden[0]] + queries if hidden else queries
    keys = (hidden[1] if hidden else []) + [key]
    q_all, k_all = torch.cat(queries, dim=-1), torch.cat(keys, dim=-1)
    v_all = F.pad(value, (0, q_all.shape[-1] - value.shape[-1]))
    out = F.scaled_dot_product_attention(q_all, k_all, v_all, is_causal=is_causal, scale=scale)
    return out[..., : value.shape[-1]].contiguous(), (queries, keys)


@pytest.mark.parametrize("case", ["causal", "causal+bool", "gqa", "bf16"])
def test_backward_keeps_the_layers_tensors_not_the_concatenations(case):
    """Live tensor storage after a 4-layer forward (inputs made outside, so not counted): each layer's output
    and logsumexp, nothing of width n * D and no mask of ours. The concatenating reference, which keeps what
    SDPA saves, goes over the same bound (the test can fail)."""
    t_len, layers, kv_heads = 64, 4, 1 if case == "gqa" else H
    dtype = torch.bfloat16 if case == "bf16" else torch.float32
    inputs = layer_inputs(layers=layers, q_len=t_len, k_len=t_len, kv_heads=kv_heads, dtype=dtype)
    kwargs = mask_kwargs(case if case == "causal+bool" else "causal", k_len=t_len)
    live_bytes = load_bench().LiveTensorBytes

    def kept(fn, **kw):
        leaves = [[t.clone().requires_grad_(True) for t in layer] for layer in inputs]
        with live_bytes() as live, LargestTensor() as largest:
            hidden, outs = None, []
            for q, k, v in leaves:
                out, hidden = fn(q, k, v, hidden, **MHA, **kw)
                outs.append(out)
            after_forward = live.live
            torch.autograd.backward(outs, [torch.ones_like(o) for o in outs])
        return after_forward, largest.numel

    element = torch.finfo(dtype).bits // 8
    outputs = layers * B * H * t_len * D * element
    logsumexp = layers * B * H * t_len * 4
    after_forward, largest = kept(stacked_carried_score_attention, **kwargs)
    assert after_forward <= outputs + logsumexp
    assert largest < B * H * t_len * t_len  # no (B, H, T, T) tensor, forward or backward
    if case == "causal":
        reference, _ = kept(concatenating_reference, is_causal=True)
        assert reference > outputs + logsumexp + B * H * t_len * D * element


# --- autograd: gradcheck, checkpointing, compile, dropout -----------------------------------------------------


def small_chain(*flat, **kwargs):
    hidden, outs = None, []
    for q, k, v in zip(flat[0::3], flat[1::3], flat[2::3]):
        out, hidden = stacked_carried_score_attention(q, k, v, hidden, **MHA, **kwargs)
        outs.append(out)
    return (*outs, hidden.dense())


def float64_leaves(kv_heads=2, layers=3):
    gen = torch.Generator().manual_seed(3)
    shapes = [(1, 2, 3, 2), (1, kv_heads, 3, 2), (1, kv_heads, 3, 2)] * layers
    return [torch.randn(s, generator=gen, dtype=torch.float64, requires_grad=True) for s in shapes]


@pytest.mark.parametrize("kv_heads", [2, 1])
def test_gradcheck_float64(kv_heads):
    fast = kv_heads == 1  # grouped keys: a random projection of the Jacobian (quicker); the full one otherwise
    chain = lambda *x: small_chain(*x, is_causal=True)  # noqa: E731
    assert torch.autograd.gradcheck(chain, float64_leaves(kv_heads), fast_mode=fast)


def test_gradgradcheck_on_the_math_kernel_and_a_clear_error_on_flash():
    leaves = float64_leaves(layers=2)
    with sdpa_kernel(SDPBackend.MATH):  # the rebuilt tensors carry their graph: double backward works
        assert torch.autograd.gradgradcheck(lambda *x: small_chain(*x, is_causal=True), leaves, fast_mode=True)
    with pytest.raises(RuntimeError, match="derivative for .*flash_attention_for_cpu_backward is not implemented"):
        torch.autograd.gradgradcheck(lambda *x: small_chain(*x, is_causal=True), leaves, fast_mode=True)


def test_in_place_change_of_a_kept_tensor_is_an_error():
    """The recipes read the layers' q and k in backward: changed in between, they fail as autograd would."""
    (q1, k1, v1), (q2, k2, v2) = [[t.requires_grad_(True) for t in layer] for layer in layer_inputs(layers=2)]
    q1_used = q1 * 1.0
    _, hidden = stacked_carried_score_attention(q1_used, k1, v1, None, **MHA)
    out, _ = stacked_carried_score_attention(q2, k2, v2, hidden, **MHA)
    with torch.no_grad():
        q1_used.mul_(2.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


def residual_chain(x, mixers, checkpoint_mode):
    """q, k, v of layer n from x_n; x_{n+1} = x_n + attention output; non-reentrant checkpointing as asked."""

    def layer(x, mixer, hidden):
        q, k, v = (x @ mixer).chunk(3, dim=-1)  # (B, H, T, D) each
        out, hidden = stacked_carried_score_attention(q, k, v, hidden, **MHA, is_causal=True)
        return x + out, hidden

    def whole(x, *mixers):
        hidden = None
        for mixer in mixers:
            x, hidden = layer(x, mixer, hidden)
        return x, hidden

    if checkpoint_mode == "whole":
        return checkpoint(whole, x, *mixers, use_reentrant=False)
    hidden = None
    for mixer in mixers:
        if checkpoint_mode == "layer":
            x, hidden = checkpoint(layer, x, mixer, hidden, use_reentrant=False)
        else:
            x, hidden = layer(x, mixer, hidden)
    return x, hidden


@pytest.mark.parametrize("checkpoint_mode", ["layer", "whole"])
def test_non_reentrant_checkpointing_gives_the_same_gradients(checkpoint_mode):
    gen = torch.Generator().manual_seed(1)
    x0 = torch.randn(B, H, T, D, generator=gen)
    mixers0 = [torch.randn(D, 3 * D, generator=gen) / D**0.5 for _ in range(LAYERS)]
    results = {}
    for mode in ("none", checkpoint_mode):
        x = x0.clone().requires_grad_(True)
        mixers = [m.clone().requires_grad_(True) for m in mixers0]
        out, hidden = residual_chain(x, mixers, mode)
        loss = (out**2).sum() + hidden.dense().tanh().sum()
        results[mode] = (out.detach(), torch.autograd.grad(loss, [x, *mixers]))
    torch.testing.assert_close(results[checkpoint_mode][0], results["none"][0], rtol=0, atol=0)
    for got, want in zip(results[checkpoint_mode][1], results["none"][1]):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_torch_compile_matches_eager(backend):
    """Runs and matches; one graph break per layer, at the SDPA call whose saved tensors are rebuilt."""
    import torch._dynamo

    inputs = [t.requires_grad_(True) for layer in layer_inputs() for t in layer]

    def loss_of(*flat):
        outs = small_chain(*flat, is_causal=True)
        return sum((o**2).sum() for o in outs[:-1]) + outs[-1].tanh().sum()

    torch._dynamo.reset()
    explanation = torch._dynamo.explain(loss_of)(*inputs)
    assert explanation.graph_break_count >= 1
    assert all("torch.compiler.disable" in b.reason for b in explanation.break_reasons)
    torch._dynamo.reset()
    compiled = torch.compile(loss_of, backend=backend)
    got = compiled(*inputs)
    want = loss_of(*inputs)
    torch.testing.assert_close(got, want, **FP32_TOL)
    for g, w in zip(torch.autograd.grad(got, inputs), torch.autograd.grad(want, inputs)):
        torch.testing.assert_close(g, w, **GRAD_TOL)


def test_dropout_is_sdpas_dropout_of_softmax_of_the_state():
    """Seeded: the same dropout mask as SDPA given the dense state as its logits, so the same output and gradients."""
    (q1, k1, v1), (q2, k2, v2) = [[t.requires_grad_(True) for t in layer] for layer in layer_inputs(layers=2)]
    _, hidden = stacked_carried_score_attention(q1, k1, v1, None, **MHA, is_causal=True)
    torch.manual_seed(5)
    out, state = stacked_carried_score_attention(q2, k2, v2, hidden, **MHA, is_causal=True, dropout_p=0.3)
    torch.manual_seed(5)
    logits = masked_scores(state.dense(), None, True)  # (B, H, T, T)
    want = F.scaled_dot_product_attention(torch.zeros_like(q2), k2, v2, attn_mask=logits, dropout_p=0.3)
    torch.testing.assert_close(out, want, **FP32_TOL)
    assert (out - stacked_carried_score_attention(q2, k2, v2, hidden, **MHA, is_causal=True)[0]).abs().max() > 0.1
    leaves = [q1, k1, q2, k2, v2]  # v1 does not reach layer 2
    for g, w in zip(torch.autograd.grad((out**2).sum(), leaves), torch.autograd.grad((want**2).sum(), leaves)):
        torch.testing.assert_close(g, w, **GRAD_TOL)


@pytest.mark.parametrize("no_grad", [torch.no_grad, torch.inference_mode])
def test_inference_equals_explicit(no_grad):
    """Generation runs without autograd: nothing is saved, nothing to rebuild."""
    hidden_stacked = hidden_explicit = None
    with no_grad():
        for q, k, v in layer_inputs():
            out, hidden_stacked = stacked_carried_score_attention(q, k, v, hidden_stacked, **MHA, is_causal=True)
            want, hidden_explicit = carried_score_attention(q, k, v, hidden_explicit, **MHA, is_causal=True)
            torch.testing.assert_close(out, want, **FP32_TOL)
        torch.testing.assert_close(hidden_stacked.dense(), hidden_explicit, **FP32_TOL)


@pytest.mark.parametrize("dense_path", ["explicit", "fused"])
def test_materialised_state_continues_on_the_dense_paths(dense_path):
    """Stack the first layers, then hand `dense()` to a dense path: exactly the explicit chain, gradients
    included (the one-way switch a cost model for "auto" can make, notes/stacked-kernels.md)."""
    from hopfield_attention.attention.paths import IMPLEMENTATIONS

    def switched(query, key, value, hidden, **kwargs):  # layers 1, 2 stacked; 3, 4 dense
        if isinstance(hidden, StackedScores) and len(hidden.queries) == 2:
            hidden = hidden.dense()
        if isinstance(hidden, torch.Tensor):
            return IMPLEMENTATIONS[dense_path](query, key, value, hidden, **kwargs)
        return stacked_carried_score_attention(query, key, value, hidden, **kwargs)

    inputs = layer_inputs(layers=4)
    want = run_chain(carried_score_attention, inputs, **MHA, **mask_kwargs("causal+bool"))
    got = run_chain(switched, inputs, **MHA, **mask_kwargs("causal+bool"))
    for g, w in zip(got[0] + got[1], want[0] + want[1]):
        torch.testing.assert_close(g, w, **FP32_TOL)
    for g, w in zip(got[2], want[2]):
        torch.testing.assert_close(g, w, **GRAD_TOL)


def test_a_saved_view_of_a_built_tensor_is_rebuilt_too():
    """CUDA's memory-efficient path saves the mask expanded to (B, H, Tq, Tk), a view of ours (not run on
    this machine's CPU path, so checked on the hooks alone): the view is taken again from the rebuilt tensor
    and ours is not kept."""
    from hopfield_attention.attention.stacked import _RebuildInBackward

    built = torch.randn(B, 1, T, T)
    rebuilt = built.clone()
    x = torch.randn(B, H, T, T, requires_grad=True)
    rebuild = _RebuildInBackward(x.device)
    with torch.autograd.graph.saved_tensors_hooks(rebuild.pack, rebuild.unpack):
        y = x * built.expand(B, H, T, T)  # mul keeps the expanded view for x's gradient
    rebuild.replace(built, lambda: rebuilt)
    assert all(box.tensor is None for box in rebuild.boxes)
    built.fill_(float("nan"))  # the original is gone from backward's sight
    (grad,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(grad, rebuilt.expand(B, H, T, T))
