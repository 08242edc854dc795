"""Converted backbones at work: padding, cached generation, dropout, checkpointing, bf16, compile, recording."""

from __future__ import annotations

import copy

import pytest
import timm.layers
import torch

from hopfield_attention import convert_model, record_attention
from hopfield_attention.backbones.state import CarriedState, StateSource

from support.backbones import (
    BUILDERS,
    SETTINGS,
    assert_cached_generation_equals_uncached,
    example_input,
    logits,
    tiny_gpt2,
    tiny_llama,
    tiny_vit,
)

LANGUAGE = {"gpt2": tiny_gpt2, "llama": tiny_llama}
STATEFUL = ["mha-0.5", "realformer"]


def state_dtype(hidden) -> torch.dtype:
    """The dtype of H_n as a layer hands it on: the tensor's, or that of the dense form of stacked queries and keys
    (which SDPA combines in fp32 accumulators; attention/stacked.py)."""
    return hidden.dense().dtype if hasattr(hidden, "dense") else hidden.dtype


def convert(family, setting, **overrides):
    attention, params, _ = SETTINGS[setting]
    return convert_model(BUILDERS[family](**overrides), attention, **params)


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("family", list(LANGUAGE))
def test_padded_batch_equals_unpadded_sequences(family, side):
    model = convert(family, "mha-0.5")
    long, short = example_input(family, batch=1, length=9, seed=2)[0], example_input(family, 1, 5, seed=3)[0]
    pad = torch.zeros(4, dtype=torch.long)
    ids = torch.stack([long, torch.cat([short, pad]) if side == "right" else torch.cat([pad, short])])
    mask = (torch.arange(9) < 5) if side == "right" else (torch.arange(9) >= 4)
    mask = torch.stack([torch.ones(9, dtype=torch.bool), mask]).long()
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        batch = model(ids, attention_mask=mask, position_ids=positions).logits
        alone = [model(seq[None]).logits[0] for seq in (long, short)]
        unmasked = model(ids, position_ids=positions).logits
    torch.testing.assert_close(batch[0], alone[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(batch[1][mask[1].bool()], alone[1], rtol=1e-5, atol=1e-5)
    if side == "left":  # without the mask the left-padded sequence reads its pads: the mask reaches attention
        assert not torch.allclose(unmasked[1][mask[1].bool()], alone[1], atol=1e-3)


@pytest.mark.parametrize("setting", STATEFUL)
@pytest.mark.parametrize("family", list(LANGUAGE))
def test_cached_generation_equals_uncached(family, setting):
    model = convert(family, setting)
    prompts = example_input(family, batch=2, length=6, seed=4)
    prompts[1, :2] = 0  # left padding
    mask = torch.ones_like(prompts)
    mask[1, :2] = 0
    assert_cached_generation_equals_uncached(model, prompts, mask, new_tokens=6)


def test_attention_dropout_is_the_modules_and_only_in_training():
    stock = tiny_gpt2(attn_pdrop=0.3)
    stock.set_attn_implementation("eager")  # the same dropout call as ours, so the same random draws
    model = convert_model(copy.deepcopy(stock), "mha", alpha=None, alpha_prime=0.0)
    ids = example_input("gpt2")
    stock.train(), model.train()
    torch.manual_seed(11)
    expected = stock(ids).logits
    torch.manual_seed(11)
    torch.testing.assert_close(model(ids).logits, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(model(ids).logits, expected, atol=1e-4)  # a fresh draw differs
    model.eval()
    assert torch.equal(model(ids).logits, model(ids).logits)


def grads(model, *inputs):
    model.zero_grad()
    sum(logits(model, x).square().mean() for x in inputs).backward()
    named = model.named_parameters()
    return {name.removeprefix("_orig_mod."): p.grad.clone() for name, p in named if p.grad is not None}  # compiled


def enable_checkpointing(model, family, **kwargs):
    if family == "vit":
        model.set_grad_checkpointing(True)
    else:
        model.gradient_checkpointing_enable(**kwargs)


@pytest.mark.filterwarnings("ignore:.*gradient_checkpointing_enable.*:FutureWarning")
@pytest.mark.parametrize("setting", ["mha-0.7-0.2-zeros", "realformer"])
@pytest.mark.parametrize("family", list(BUILDERS))
def test_activation_checkpointing_gives_the_same_gradients(family, setting):
    """Also with two forward passes before one backward: each re-run must read its own pass's state."""
    model = convert(family, setting).train()
    first, second = example_input(family, seed=5), example_input(family, seed=6)
    expected = grads(model, first, second)
    enable_checkpointing(model, family)
    got = grads(model, first, second)
    assert got.keys() == expected.keys() and len(got) == len(list(model.parameters()))
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.filterwarnings("ignore:.*gradient_checkpointing_enable.*:FutureWarning")
@pytest.mark.parametrize("family", list(BUILDERS))
def test_reentrant_checkpointing_is_refused(family):
    model = convert(family, "mha-0.5").train()
    if family == "vit":
        model.set_grad_checkpointing(True)
        timm.layers.set_reentrant_ckpt(True)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    try:
        with pytest.raises(RuntimeError, match="use_reentrant"):
            grads(model, example_input(family))
    finally:
        timm.layers.set_reentrant_ckpt(False)


@pytest.fixture
def made_states(monkeypatch):
    """Every CarriedState the models make during the test."""
    made: list[CarriedState] = []
    new_state = StateSource.new_state

    def record(self):
        made.append(new_state(self))
        return made[-1]

    monkeypatch.setattr(StateSource, "new_state", record)
    return made


@pytest.mark.filterwarnings("ignore:.*gradient_checkpointing_enable.*:FutureWarning")
@pytest.mark.parametrize("family", list(BUILDERS))
def test_no_state_outlives_the_forward_unless_a_recompute_needs_it(family, made_states):
    model = convert(family, "mha-0.5").train()
    logits(model, example_input(family)).sum().backward()
    assert made_states and all(state.written == {} for state in made_states)
    enable_checkpointing(model, family)
    made_states.clear()
    logits(model, example_input(family)).sum()
    assert [sorted(state.written) for state in made_states] == [[0, 1]]  # kept for the backward re-runs


@pytest.mark.parametrize("family", list(BUILDERS))
def test_bf16_autocast_runs_with_an_fp32_state(family, monkeypatch):
    dtypes = []
    write = CarriedState.write
    monkeypatch.setattr(CarriedState, "write", lambda self, n, h: (dtypes.append(state_dtype(h)), write(self, n, h))[1])
    model = convert(family, "mha-0.5").train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = logits(model, example_input(family))
    out.float().square().mean().backward()
    assert dtypes and set(dtypes) == {torch.float32}
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("family", list(BUILDERS))
def test_torch_compile_runs_a_forward(family):
    model = convert(family, "mha-0.5")
    inputs = example_input(family)
    compiled = torch.compile(model, backend="aot_eager")  # dynamo and AOT autograd; no C++ build on 2 cores
    with torch.no_grad():
        torch.testing.assert_close(logits(compiled, inputs), logits(model, inputs), rtol=1e-5, atol=1e-5)


@pytest.mark.slow  # about 100 s on 2 CPU cores: inductor builds C++ kernels
def test_torch_compile_inductor_forward_and_backward():
    model = convert("gpt2", "mha-0.5").train()
    compiled = torch.compile(model)
    ids = example_input("gpt2")
    expected = grads(model, ids)
    got = grads(compiled, ids)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-5)


def test_record_attention_gives_each_layers_probabilities():
    stock = tiny_gpt2()
    stock.set_attn_implementation("eager")
    model = convert_model(copy.deepcopy(stock), "mha", alpha=None, alpha_prime=0.0)
    ids = example_input("gpt2")
    with torch.no_grad(), record_attention(model) as probs:
        model(ids)
    expected = stock(ids, output_attentions=True).attentions
    assert len(probs) == len(expected) == 3
    for got, want in zip(probs, expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    model(ids)
    assert len(probs) == 3  # recording stops with the block


@pytest.mark.parametrize("family", ["llama", "vit"])
def test_record_attention_other_families(family):
    model = convert(family, "realformer")
    with torch.no_grad(), record_attention(model) as probs:
        logits(model, example_input(family))
    tokens = 9 if family == "llama" else 17  # 16 patches and the class token
    heads = 4
    assert [p.shape for p in probs] == [torch.Size([2, heads, tokens, tokens])] * 3
    for p in probs:
        torch.testing.assert_close(p.sum(-1), torch.ones(2, heads, tokens))
    if family == "llama":  # causal: nothing above the diagonal
        assert torch.all(probs[-1].triu(1) == 0)


def test_record_attention_needs_a_model_with_a_state():
    with pytest.raises(ValueError, match="mha, realformer"):
        with record_attention(convert_model(tiny_vit(), "softmax")):
            pass


@pytest.mark.filterwarnings("ignore:.*gradient_checkpointing_enable.*:FutureWarning")
@pytest.mark.parametrize("family", ["gpt2", "vit"])
def test_record_attention_records_checkpointed_layers_once(family):
    model = convert(family, "mha-0.5").train()
    enable_checkpointing(model, family)
    with record_attention(model) as probs:
        logits(model, example_input(family)).sum().backward()  # the backward re-runs every layer
    assert len(probs) == 3


@pytest.mark.parametrize("family", list(BUILDERS))
def test_float64_model_computes_in_float64(family, monkeypatch):
    """model.double(): the carried state is float64 and the model equals the float64 transcription to 1e-10
    (an fp32 state would leave errors near 1e-7)."""
    from support.backbones import REFERENCES

    dtypes = []
    write = CarriedState.write
    monkeypatch.setattr(CarriedState, "write", lambda self, n, h: (dtypes.append(state_dtype(h)), write(self, n, h))[1])
    attention, params, rule = SETTINGS["mha-0.7-0.2-zeros"]
    stock = BUILDERS[family]().double()
    model = convert_model(copy.deepcopy(stock), attention, **params)
    inputs = example_input(family)
    inputs = inputs.double() if inputs.is_floating_point() else inputs
    with torch.no_grad():
        got, expected = logits(model, inputs), REFERENCES[family](stock, inputs, rule)
    assert dtypes and set(dtypes) == {torch.float64} and got.dtype == torch.float64
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("family", list(BUILDERS))
def test_torch_non_reentrant_checkpoint_of_the_whole_model(family):
    model = convert(family, "mha-0.5").train()
    inputs = example_input(family)
    expected = grads(model, inputs)
    model.zero_grad()
    out = torch.utils.checkpoint.checkpoint(lambda x: logits(model, x), inputs, use_reentrant=False)
    out.square().mean().backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("checkpointing", [False, True])
def test_vit_forward_intermediates_runs_the_carried_state(checkpointing):
    """forward_intermediates (timm's feature API, checkpointed block by block when enabled) gives the
    blocks' outputs of forward_features, and the same gradients."""
    model = convert("vit", "mha-0.7-0.2-zeros").train()
    model.set_grad_checkpointing(checkpointing)
    images = example_input("vit")
    final, intermediates = model.forward_intermediates(images, output_fmt="NLC")
    torch.testing.assert_close(final, model.forward_features(images), rtol=1e-6, atol=1e-6)
    assert len(intermediates) == len(model.blocks)
    final.square().mean().backward()
    got = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model.forward_features(images).square().mean().backward()
    for name, grad in got.items():
        torch.testing.assert_close(grad, model.get_parameter(name).grad, rtol=1e-5, atol=1e-6, msg=name)


def test_vit_blocks_called_on_their_own_start_a_pass_each_time(made_states):
    """model.blocks(x) without the embedding (and again on its own output) is a new pass each time: it
    never reads the state of an earlier pass."""
    model = convert("vit", "mha-0.5")
    model.set_grad_checkpointing(True)  # states are kept for a recompute: reading a stale one would show
    model.train()
    made_states.clear()
    tokens = model.norm_pre(model._pos_embed(model.patch_embed(example_input("vit"))))  # (B, N, C), a pass begins
    once = model.blocks(tokens)
    twice = model.blocks(once)
    again = model.blocks(tokens)
    assert len(made_states) == 3 and len({id(s) for s in made_states}) == 3  # norm_pre, then twice on their own
    torch.testing.assert_close(again, once)
    reference = copy.deepcopy(model)  # a fresh model reads nothing from earlier calls
    torch.testing.assert_close(twice, reference.blocks(reference.blocks(tokens)))
