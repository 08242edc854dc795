"""Every implementation of carried-score attention equals the explicit path: outputs, next state, gradients.

A layer with a state is tested after a previous layer of the same implementation (the state is then in that
implementation's own form: a T x T tensor, or stacked queries and keys); the dense paths are also tested with an
arbitrary T x T state."""

from __future__ import annotations

import pytest
import torch

from hopfield_attention.attention import build_attention
from hopfield_attention.attention.functional import carried_score_attention
from hopfield_attention.attention.paths import (
    CPU_FUSED_MIN_KEYS,
    DENSE,
    IMPLEMENTATION_CHOICES,
    IMPLEMENTATIONS,
    STACKED_MAX_WIDTH,
    STACKED_MIN_KEYS,
    carried_attention,
    choose_implementation,
)
from hopfield_attention.attention.stacked import StackedScores

OTHER_PATHS = [name for name in IMPLEMENTATIONS if name != "explicit"]
DENSE_PATHS = [name for name in DENSE if name != "explicit"]
B, H, T, D = 2, 3, 7, 8
FP32_TOL = dict(rtol=1e-4, atol=1e-5)
BF16_TOL = dict(rtol=0.05, atol=0.05)  # bf16 keeps 8 bits: about 2 decimal digits
# The equality tests run on every device present: a GPU session runs them on CUDA too.
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def make_inputs(q_len=T, k_len=T, with_hidden=True, seed=0, device="cpu"):
    """q, k, v of a layer and an arbitrary dense state (None without one): for the dense paths."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, q_len, D, generator=gen)
    k = torch.randn(B, H, k_len, D, generator=gen)
    v = torch.randn(B, H, k_len, D, generator=gen)
    hidden = torch.randn(B, H, q_len, k_len, generator=gen) * 2 if with_hidden else None
    return tuple(None if t is None else t.to(device) for t in (q, k, v, hidden))


def make_layers(q_len=T, k_len=T, with_previous=True, seed=0, device="cpu"):
    """q, k, v of a layer and of the layer before it (None: a first layer)."""
    q, k, v, _ = make_inputs(q_len, k_len, with_hidden=False, seed=seed, device=device)
    previous = make_inputs(q_len, k_len, with_hidden=False, seed=seed + 100, device=device)[:3]
    return q, k, v, (previous if with_previous else None)


def dense(state) -> torch.Tensor:
    """H_n (B, H, Tq, Tk) whatever form the implementation hands it on in."""
    return state.dense() if isinstance(state, StackedScores) else state


def padding_mask(kind: str, k_len: int = T, device="cpu"):
    """Batch element 1 cannot see its last two keys (right padding, so no causal row is fully masked);
    broadcast over heads and queries, as a tokenizer's mask is."""
    keep = torch.ones(B, 1, 1, k_len, dtype=torch.bool, device=device)
    keep[1, ..., -2:] = False
    if kind == "bool":
        return keep
    additive = torch.zeros(keep.shape, device=device)
    return additive.masked_fill(~keep, torch.finfo(torch.float32).min)  # as transformers' eager mask


def run_with_grads(fn, q, k, v, previous, autocast=False, **kwargs):
    """Outputs, state and the gradients of a loss touching both, w.r.t. q, k, v and the previous layer's: a
    tensor `previous` is an arbitrary dense state, a triple is the previous layer's q, k, v run by `fn` first."""
    given = [q, k, v, *(previous if isinstance(previous, tuple) else [previous])]
    leaves = [t.clone().requires_grad_(True) if t is not None else None for t in given]
    with torch.autocast(q.device.type, dtype=torch.bfloat16, enabled=autocast):
        hidden = fn(*leaves[3:], None, **kwargs)[1] if isinstance(previous, tuple) else leaves[3]
        out, state = fn(*leaves[:3], hidden, **kwargs)
    state = dense(state)
    weights = torch.linspace(-1, 1, state.shape[-1], device=state.device)  # every state entry counts differently
    loss = (out.float() ** 2).sum() + (state * weights).sum()
    inputs = [t for t in leaves if t is not None]
    grads = torch.autograd.grad(loss, inputs, allow_unused=True)
    grads = [torch.zeros_like(t) if g is None else g for t, g in zip(inputs, grads)]  # unused = zero gradient
    return out.detach().float(), state.detach(), grads


def assert_paths_equal(path, q, k, v, previous, tol=FP32_TOL, autocast=False, **kwargs):
    expected = run_with_grads(carried_score_attention, q, k, v, previous, autocast, **kwargs)
    actual = run_with_grads(IMPLEMENTATIONS[path], q, k, v, previous, autocast, **kwargs)
    torch.testing.assert_close(actual[0], expected[0], **tol, msg=lambda m: f"output differs: {m}")
    torch.testing.assert_close(actual[1], expected[1], **tol, msg=lambda m: f"next state differs: {m}")
    assert actual[1].dtype == torch.float32
    for name, got, want in zip(["q", "k", "v", "q/h", "k", "v"], actual[2], expected[2]):
        torch.testing.assert_close(got.float(), want.float(), **tol, msg=lambda m: f"grad {name} differs: {m}")


MHA = dict(decay=0.5, gain=0.5)
REALFORMER = dict(decay=1.0, gain=1.0)


@pytest.mark.parametrize("path", OTHER_PATHS)
@pytest.mark.parametrize("params", [MHA, REALFORMER, dict(decay=0.0, gain=1.0), dict(decay=1.0, gain=0.0)],
                         ids=["mha", "realformer", "alpha_prime_0", "alpha_prime_1"])  # fmt: skip
@pytest.mark.parametrize("mask", ["none", "causal", "bool", "additive", "causal+bool"])
@pytest.mark.parametrize("device", DEVICES)
def test_paths_equal_fp32(path, params, mask, device):
    q, k, v, previous = make_layers(device=device)
    kwargs = dict(params, is_causal="causal" in mask, scale=0.3)
    if mask.endswith("bool") or mask == "additive":
        kwargs["attn_mask"] = padding_mask("bool" if mask.endswith("bool") else "additive", device=device)
    assert_paths_equal(path, q, k, v, previous, **kwargs)


@pytest.mark.parametrize("path", DENSE_PATHS)
@pytest.mark.parametrize("params", [MHA, REALFORMER], ids=["mha", "realformer"])
@pytest.mark.parametrize("mask", ["none", "causal", "causal+bool"])
def test_dense_paths_equal_with_an_arbitrary_state(path, params, mask):
    q, k, v, hidden = make_inputs()
    kwargs = dict(params, is_causal="causal" in mask, scale=0.3)
    if mask.endswith("bool"):
        kwargs["attn_mask"] = padding_mask("bool")
    assert_paths_equal(path, q, k, v, hidden, **kwargs)


@pytest.mark.parametrize("path", OTHER_PATHS)
@pytest.mark.parametrize("first_layer", ["scores", "zeros"])
@pytest.mark.parametrize("params", [MHA, dict(decay=1.0, gain=0.0)], ids=["mha", "alpha_prime_1"])
@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("device", DEVICES)
def test_paths_equal_first_layer(path, first_layer, params, is_causal, device):
    q, k, v, _ = make_inputs(with_hidden=False, device=device)
    assert_paths_equal(path, q, k, v, None, first_layer=first_layer, is_causal=is_causal, **params)


@pytest.mark.parametrize("path", OTHER_PATHS)
@pytest.mark.parametrize("q_len", [1, 3])
@pytest.mark.parametrize("mask", ["causal", "causal+bool", "additive"])
@pytest.mark.parametrize("device", DEVICES)
def test_paths_equal_cached_decoding(path, q_len, mask, device):
    """Tq < Tk: the last query rows against all cached keys; causal aligned bottom-right."""
    q, k, v, previous = make_layers(q_len=q_len, k_len=T, device=device)
    kwargs = dict(MHA, is_causal="causal" in mask)
    if mask != "causal":
        kwargs["attn_mask"] = padding_mask("bool" if mask.endswith("bool") else "additive", device=device)
    assert_paths_equal(path, q, k, v, previous, **kwargs)
    assert_paths_equal(path, q, k, v, None, **kwargs)


@pytest.mark.parametrize("path", OTHER_PATHS)
@pytest.mark.parametrize("with_hidden", [False, True])
@pytest.mark.parametrize("mask", ["causal", "bool"])
@pytest.mark.parametrize("device", DEVICES)
def test_paths_equal_bf16_autocast(path, with_hidden, mask, device):
    q, k, v, previous = make_layers(with_previous=with_hidden, device=device)
    q, k, v = q.bfloat16(), k.bfloat16(), v.bfloat16()  # what an autocast linear layer hands over
    previous = None if previous is None else tuple(t.bfloat16() for t in previous)
    attn_mask = padding_mask("bool", device=device) if mask == "bool" else None
    kwargs = dict(MHA, is_causal=mask == "causal", attn_mask=attn_mask)
    assert_paths_equal(path, q, k, v, previous, tol=BF16_TOL, autocast=True, **kwargs)


@pytest.mark.parametrize("path", OTHER_PATHS)
def test_paths_equal_when_the_state_is_unused(path):
    """After the last layer nothing reads the state: its gradient is None, not zeros."""
    q, k, v, previous = make_layers()
    grads = {}
    for name in ("explicit", path):
        leaves = [t.clone().requires_grad_(True) for t in (q, k, v, *previous)]
        hidden = IMPLEMENTATIONS[name](*leaves[3:], None, **MHA, is_causal=True)[1]
        out, _ = IMPLEMENTATIONS[name](*leaves[:3], hidden, **MHA, is_causal=True)
        grads[name] = torch.autograd.grad((out**2).sum(), leaves, allow_unused=True)  # the first v: unused
    for got, want in zip(grads[path], grads["explicit"]):
        assert (got is None) == (want is None)
        if want is not None:
            torch.testing.assert_close(got, want, **FP32_TOL)


def chain(path, xs, mixers, variant_params, first_layer="scores"):
    """Three layers: q, k, v of layer n come from x_n, the state is carried, x_{n+1} = attention output."""
    x, hidden = xs, None
    for mixer in mixers:
        q, k, v = (x @ mixer).chunk(3, dim=-1)  # (B, H, T, D) each
        out, hidden = IMPLEMENTATIONS[path](q, k, v, hidden, first_layer=first_layer, is_causal=True,
                                            **variant_params)  # fmt: skip
        x = x + out
    return x, hidden


@pytest.mark.parametrize("path", OTHER_PATHS)
@pytest.mark.parametrize("params", [MHA, REALFORMER], ids=["mha", "realformer"])
@pytest.mark.parametrize("first_layer", ["scores", "zeros"])
@pytest.mark.parametrize("device", DEVICES)
def test_paths_equal_through_three_layers(path, params, first_layer, device):
    gen = torch.Generator().manual_seed(1)
    x0 = torch.randn(B, H, T, D, generator=gen).to(device)
    mixers0 = [(torch.randn(D, 3 * D, generator=gen) / D**0.5).to(device) for _ in range(3)]
    results = {}
    for name in ("explicit", path):
        x = x0.clone().requires_grad_(True)
        mixers = [m.clone().requires_grad_(True) for m in mixers0]
        out, state = chain(name, x, mixers, params, first_layer)
        state = dense(state)
        loss = (out**2).sum() + state.tanh().sum()
        results[name] = (out.detach(), state.detach(), torch.autograd.grad(loss, [x, *mixers]))
    want, got = results["explicit"], results[path]
    torch.testing.assert_close(got[0], want[0], **FP32_TOL)
    torch.testing.assert_close(got[1], want[1], **FP32_TOL)
    for g, w in zip(got[2], want[2]):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("path", OTHER_PATHS)
def test_dropout_matches_in_distribution(path):
    """Dropout acts on softmax(H) as SDPA's dropout_p: same mean output, zeros at rate p, rescaled by 1/(1-p)."""
    q, k, v, previous = make_layers()
    hidden = IMPLEMENTATIONS[path](*previous, None, **MHA)[1]
    v = torch.ones_like(v)  # every output entry is then the row sum of the dropped-out probabilities
    torch.manual_seed(0)
    outs = torch.stack([IMPLEMENTATIONS[path](q, k, v, hidden, **MHA, dropout_p=0.5)[0] for _ in range(400)])
    torch.testing.assert_close(outs.mean(0), torch.ones_like(outs[0]), rtol=0, atol=0.15)
    no_drop, _ = IMPLEMENTATIONS[path](q, k, v, hidden, **MHA, dropout_p=0.0)
    torch.testing.assert_close(no_drop, torch.ones_like(no_drop))
    assert outs.std(0).min() > 0.05  # dropout really happened


# --- memory: what each path keeps for backward --------------------------------------------------------


def saved_square_bytes(path, autocast=False, with_hidden=True, t_len=32, **kwargs):
    """Bytes of (..., T, T) tensors autograd keeps for backward of one layer, counted once per storage (the
    previous layer runs outside the count: its state is what this layer is handed)."""
    q, k, v, previous = make_layers(q_len=t_len, k_len=t_len, with_previous=with_hidden)
    if autocast:
        q, k, v = q.bfloat16(), k.bfloat16(), v.bfloat16()  # what an autocast linear layer hands over
    leaves = [t.requires_grad_(True) for t in (q, k, v, *(previous or ()))]
    hidden = IMPLEMENTATIONS[path](*leaves[3:], None, **kwargs)[1] if with_hidden else None
    seen: dict[int, int] = {}

    def pack(t):
        if t.dim() >= 2 and t.shape[-2:] == (t_len, t_len):
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out, state = IMPLEMENTATIONS[path](*leaves[:3], hidden, **kwargs)
    assert out.requires_grad
    return sum(seen.values())


@pytest.mark.parametrize("path", OTHER_PATHS)
@pytest.mark.parametrize("autocast", [False, True])
def test_other_paths_keep_less_for_backward(path, autocast):
    one_state = B * H * 32 * 32 * 4  # one fp32 (B, H, T, T) tensor
    explicit = saved_square_bytes("explicit", autocast, is_causal=True, **MHA)
    kept = saved_square_bytes(path, autocast, is_causal=True, **MHA)
    assert kept < explicit
    # fused: at most one T x T tensor (the carried bias on CUDA, the state on the CPU); stacked: none at all.
    assert kept <= (one_state if path in DENSE else 0)
    # First layer and alpha' = 0: no bias at all, so no T x T tensor is kept.
    assert saved_square_bytes(path, autocast, with_hidden=False, is_causal=True, **MHA) == 0
    assert saved_square_bytes(path, autocast, is_causal=True, decay=0.0, gain=1.0) == 0
    assert saved_square_bytes("explicit", autocast, with_hidden=False, is_causal=True, **MHA) >= one_state


# --- selection ----------------------------------------------------------------------------------------


def test_auto_stacks_while_narrow_then_goes_dense_and_stays_dense():
    q, k, v, _ = make_layers(q_len=1, k_len=CPU_FUSED_MIN_KEYS)  # a cached decoding step against long keys
    assert choose_implementation(q, k, None) == "stacked"  # the first layer: D wide
    narrow = IMPLEMENTATIONS["stacked"](q, k, v, None, **MHA, is_causal=True)[1]
    assert choose_implementation(q, k, narrow) == ("stacked" if narrow.width + D <= STACKED_MAX_WIDTH["cpu"]
                                                   else "fused")  # fmt: skip
    wide = narrow
    while wide.width + D <= STACKED_MAX_WIDTH["cpu"]:
        wide = IMPLEMENTATIONS["stacked"](q, k, v, wide, **MHA, is_causal=True)[1]
    assert choose_implementation(q, k, wide) == "fused"  # too wide on the CPU: go dense, fused at long keys
    assert choose_implementation(q, k[..., : CPU_FUSED_MIN_KEYS - 1, :], wide) == "explicit"
    assert choose_implementation(q, k[..., : STACKED_MIN_KEYS["cpu"] - 1, :], None) == "explicit"  # short: dense
    assert choose_implementation(q, k, narrow, dropout_p=0.1) == "explicit"  # no stacking with CPU dropout
    dense_state = wide.dense()
    assert choose_implementation(q, k, dense_state) == "fused"  # a dense state never goes back to stacking
    # "auto" switches a wide stacked state to a dense one exactly, as the explicit path would continue.
    auto = carried_attention("auto", q, k, v, wide, **MHA, is_causal=True)
    explicit = carried_score_attention(q, k, v, dense_state, **MHA, is_causal=True)
    torch.testing.assert_close(auto[0], explicit[0], **FP32_TOL)
    torch.testing.assert_close(auto[1], explicit[1], **FP32_TOL)


def test_dense_paths_get_grouped_query_keys_repeated_the_stacked_path_does_not():
    gen = torch.Generator().manual_seed(3)
    q = torch.randn(B, 4, T, D, generator=gen)
    k, v = (torch.randn(B, 2, T, D, generator=gen) for _ in range(2))  # 2 key/value heads for 4 query heads
    repeated = k.repeat_interleave(2, dim=1), v.repeat_interleave(2, dim=1)  # transformers' repeat_kv
    want = carried_score_attention(q, *repeated, None, **MHA, is_causal=True)
    for path in IMPLEMENTATIONS:
        out, state = carried_attention(path, q, k, v, None, **MHA, is_causal=True)
        torch.testing.assert_close(out, want[0], **FP32_TOL)
        torch.testing.assert_close(dense(state), want[1], **FP32_TOL)
        if path == "stacked":
            assert state.keys[0].shape[1] == 2  # kept as given: never repeated


@pytest.mark.parametrize("variant", ["mha", "realformer"])
@pytest.mark.parametrize("implementation", IMPLEMENTATION_CHOICES)
def test_variant_routes_to_its_implementation(variant, implementation):
    attention = build_attention(variant, implementation=implementation)
    assert attention.implementation == implementation
    q, k, v, previous = make_layers()
    decay, gain = (1.0, 1.0) if variant == "realformer" else (0.5, 0.5)
    _, hidden = attention.attend(*previous, None, scale=0.3, is_causal=True)
    out, state = attention.attend(q, k, v, hidden, scale=0.3, is_causal=True)
    first = carried_score_attention(*previous, None, decay=decay, gain=gain, scale=0.3, is_causal=True)[1]
    want = carried_score_attention(q, k, v, first, decay=decay, gain=gain, scale=0.3, is_causal=True)
    torch.testing.assert_close(out, want[0], **FP32_TOL)
    torch.testing.assert_close(dense(state), want[1], **FP32_TOL)


@pytest.mark.parametrize("variant", ["mha", "realformer"])
def test_unknown_implementation_is_rejected(variant):
    with pytest.raises(ValueError, match=r"implementation must be one of .*'explicit'.*'fused'.*got 'flash'"):
        build_attention(variant, implementation="flash")
    with pytest.raises(ValueError, match="implementation must be one of"):
        carried_attention("Fused", *make_inputs(), **MHA)


# --- precision: the state follows the inputs, and float64 gradients check -----------------------------------

# Whether an implementation's backward is itself differentiable (gradgradcheck); a new implementation says so here.
SUPPORTS_DOUBLE_BACKWARD = {"explicit": True, "fused": False, "stacked": False}
G_B, G_H, G_T, G_D = 1, 2, 4, 3  # gradcheck perturbs every input entry: keep them few


def gradcheck_case(path, mask, with_hidden, seed=0):
    """(function of the float64 leaves, the leaves) for torch.autograd.gradcheck: output and next state (dense);
    a later layer is checked after a previous one of the same path, whose q, k, v are leaves too."""
    gen = torch.Generator().manual_seed(seed)
    count = 6 if with_hidden else 3
    leaves = [torch.randn(G_B, G_H, G_T, G_D, generator=gen, dtype=torch.float64, requires_grad=True)
              for _ in range(count)]  # fmt: skip
    keep = torch.ones(G_B, 1, 1, G_T, dtype=torch.bool)
    keep[..., -1] = False
    kwargs = dict(MHA, is_causal=mask.startswith("causal"), scale=0.7)
    if mask.endswith("bool"):
        kwargs["attn_mask"] = keep
    elif mask == "additive":
        kwargs["attn_mask"] = torch.zeros(keep.shape, dtype=torch.float64).masked_fill(~keep, -1e9)

    def run(q, k, v, *previous):
        hidden = IMPLEMENTATIONS[path](*previous, None, **kwargs)[1] if previous else None
        out, state = IMPLEMENTATIONS[path](q, k, v, hidden, **kwargs)
        return out, dense(state)

    return run, tuple(leaves)


def test_every_implementation_declares_double_backward():
    assert set(SUPPORTS_DOUBLE_BACKWARD) == set(IMPLEMENTATIONS), "say whether the new path has a double backward"


@pytest.mark.parametrize("path", list(IMPLEMENTATIONS))
@pytest.mark.parametrize("with_hidden", [False, True], ids=["first_layer", "later_layer"])
@pytest.mark.parametrize("mask", ["none", "causal", "bool", "additive", "causal+bool"])
def test_float64_gradcheck(path, with_hidden, mask):
    run, leaves = gradcheck_case(path, mask, with_hidden)
    out, state = run(*leaves)
    assert out.dtype == state.dtype == torch.float64
    assert torch.autograd.gradcheck(run, leaves)


@pytest.mark.parametrize("path", list(IMPLEMENTATIONS))
@pytest.mark.parametrize("with_hidden", [False, True], ids=["first_layer", "later_layer"])
@pytest.mark.parametrize("mask", ["causal", "additive"])
def test_float64_gradgradcheck_or_a_clear_error(path, with_hidden, mask):
    run, leaves = gradcheck_case(path, mask, with_hidden)
    if SUPPORTS_DOUBLE_BACKWARD[path]:
        assert torch.autograd.gradgradcheck(run, leaves)
    else:
        with pytest.raises(
            RuntimeError, match="no double backward.*implementation='explicit'|derivative for .* is not implemented"
        ):
            torch.autograd.gradgradcheck(run, leaves)


@pytest.mark.parametrize("path", list(IMPLEMENTATIONS))
@pytest.mark.parametrize(
    "dtype, autocast, state_dtype",
    [(torch.float64, False, torch.float64), (torch.float32, False, torch.float32),
     (torch.bfloat16, False, torch.float32), (torch.float32, True, torch.float32)],
    ids=["float64", "float32", "bfloat16", "bf16_autocast"],
)  # fmt: skip
def test_state_dtype_is_the_inputs_promoted_with_float32(path, dtype, autocast, state_dtype):
    q, k, v, _ = (t.to(dtype) for t in make_inputs())
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        _, first = IMPLEMENTATIONS[path](q, k, v, None, **MHA, is_causal=True)
        _, second = IMPLEMENTATIONS[path](q, k, v, first, **MHA, is_causal=True)
    assert dense(first).dtype == dense(second).dtype == state_dtype
