"""The converted ViT hands the carried state to its blocks as an argument (issue 19, item 2): one state per forward
pass, no graph break under torch.compile in training, timm's forward_intermediates reproduced exactly, EMA teachers,
two passes before one backward, timm's subclasses, and a clear refusal from torch.jit.script."""

from __future__ import annotations

import copy

import pytest
import timm
import torch
from timm.utils import ModelEmaV3

from hopfield_attention import convert_model
from hopfield_attention.attention.paths import IMPLEMENTATION_CHOICES
from hopfield_attention.backbones.state import CarriedState
from hopfield_attention.backbones.vit import HopfieldBlock, HopfieldVisionTransformer

from support.backbones import example_input, tiny_vit

CONVERSIONS = {
    "mha": ("mha", dict(alpha=0.5, alpha_prime=0.2)),
    "realformer": ("realformer", {}),
    "softmax-skipless": ("softmax", dict(skip_connections=False)),
}


def converted(name: str = "mha", **overrides):
    attention, params = CONVERSIONS[name]
    return convert_model(tiny_vit(), attention, **{**params, **overrides})


def block_calls(model, run) -> list[tuple[int, object]]:
    """(block index, the `state` argument it was called with), for every block call during `run`."""
    calls: list[tuple[int, object]] = []

    def hook(module, args, kwargs):
        calls.append((next(i for i, b in enumerate(model.blocks) if b is module), kwargs["state"]))

    handles = [block.register_forward_pre_hook(hook, with_kwargs=True) for block in model.blocks]
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return calls


def two_passes_then_backward(model) -> None:
    images = example_input("vit")
    (model(images).square().mean() + model(images * 2).square().mean()).backward()


def test_each_pass_hands_one_fresh_state_to_every_block():
    model = converted().train()
    calls = block_calls(model, lambda: two_passes_then_backward(model))
    depth = len(model.blocks)
    assert [i for i, _ in calls] == list(range(depth)) * 2
    first, second = calls[0][1], calls[depth][1]
    assert isinstance(first, CarriedState) and isinstance(second, CarriedState) and first is not second
    assert all(state is first for _, state in calls[:depth]) and all(state is second for _, state in calls[depth:])


def test_a_checkpointed_block_gets_its_passs_state_as_an_argument_also_when_re_run():
    """Under checkpointing each block is a function of (x, H_{n-1}) returning (x, H_n): the backward re-run gets
    the very H_{n-1} of its own pass (two passes before one backward), not another pass's."""
    model = converted().train()
    model.set_grad_checkpointing(True)
    calls = block_calls(model, lambda: two_passes_then_backward(model))
    depth = len(model.blocks)
    forward, rerun = calls[: 2 * depth], calls[2 * depth :]
    assert [i for i, _ in forward] == list(range(depth)) * 2 and sorted(i for i, _ in rerun) == sorted(
        list(range(depth)) * 2
    )
    firsts = [step.previous for _, step in forward]
    assert firsts[0] is None and firsts[depth] is None  # layer 0 of each pass starts fresh
    assert all(isinstance(p, torch.Tensor) for i, p in enumerate(firsts) if i % depth)
    assert firsts[1] is not firsts[depth + 1]  # the two passes' states differ
    for i, step in rerun:
        same_layer = [p for (j, _), p in zip(forward, firsts) if j == i]
        if i == 0:
            assert step.previous is None
        else:
            assert sum(step.previous is p for p in same_layer) == 1  # exactly its own pass's H_{n-1}


def test_a_block_without_its_pass_state_says_how_to_run_it():
    model = converted()
    tokens = model.norm_pre(model._pos_embed(model.patch_embed(example_input("vit"))))  # (B, N, C)
    with pytest.raises(RuntimeError, match=r"needs its forward pass's carried state.*model\.blocks\(x\)"):
        model.blocks[1](tokens)
    torch.testing.assert_close(model.norm(model.blocks(tokens)), model.forward_features(example_input("vit")))
    skipless = converted("softmax-skipless")  # no state to carry: the blocks run on their own
    assert skipless.blocks[0](tokens).shape == tokens.shape


@pytest.mark.parametrize("call", ["forward", "forward_intermediates"])
@pytest.mark.parametrize("implementation", IMPLEMENTATION_CHOICES)
def test_torch_compile_traces_a_training_step_without_a_graph_break(implementation, call):
    """The backbone adds no break: "auto" (the default), "explicit" and "fused" trace a pass whole."""
    model = converted(implementation=implementation).train()
    images = example_input("vit")
    run = model if call == "forward" else (lambda x: model.forward_intermediates(x, output_fmt="NLC")[0])
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(run)(images)
    reasons = [b.reason for b in explanation.break_reasons]
    if implementation == "stacked":  # the stacked kernel runs eagerly by design (attention/stacked.py), per layer
        assert all("torch.compiler.disable" in r and "_attend" in r for r in reasons), reasons
    else:
        assert explanation.graph_break_count == 0, reasons
        assert explanation.graph_count == 1


@pytest.mark.parametrize("name", list(CONVERSIONS))
def test_compiled_training_step_equals_eager(name):
    model = converted(name).train()
    images = example_input("vit")
    model.zero_grad()
    model(images).square().mean().backward()
    want = {n: p.grad.clone() for n, p in model.named_parameters()}
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="aot_eager")  # dynamo and AOT autograd; no C++ build on 2 cores
    model.zero_grad()
    compiled(images).square().mean().backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, want[n], rtol=1e-5, atol=1e-6, msg=n)


@pytest.mark.parametrize("name", list(CONVERSIONS))
def test_compile_with_checkpointing_traces_whole_with_the_same_gradients(name):
    """With grad checkpointing the pass's state is read and written outside each checkpointed block, so dynamo's
    checkpoint operator sees no side effect: no graph break, and the eager gradients."""
    model = converted(name).train()
    model.set_grad_checkpointing(True)
    images = example_input("vit")
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(model)(images)
    assert explanation.graph_break_count == 0, [b.reason for b in explanation.break_reasons]
    model.set_grad_checkpointing(False)
    model.zero_grad()
    model(images).square().mean().backward()
    want = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.set_grad_checkpointing(True)
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="aot_eager")
    model.zero_grad()
    compiled(images).square().mean().backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, want[n], rtol=1e-5, atol=1e-6, msg=n)


INTERMEDIATE_CALLS = [
    dict(),
    dict(indices=2, output_fmt="NLC"),
    dict(indices=[0, 2], norm=True, return_prefix_tokens=True),
    dict(indices=[1], stop_early=True, intermediates_only=True),
    dict(indices=[0, 1], output_dict=True, return_prefix_tokens=True),
    dict(indices=1, output_dict=True, intermediates_only=True, output_fmt="NLC"),
]


def flatten(result) -> list[torch.Tensor]:
    if isinstance(result, torch.Tensor):
        return [result]
    if isinstance(result, dict):
        return [t for key in sorted(result) for t in flatten(result[key])]
    return [t for item in result for t in flatten(item)]


@pytest.mark.parametrize(
    "kwargs", INTERMEDIATE_CALLS, ids=lambda k: "-".join(f"{a}={b}" for a, b in k.items()) or "default"
)
def test_forward_intermediates_is_timms(kwargs):
    """The converted forward_intermediates returns what timm's does, in the same structure: compared on the model
    that MHA without memory or alpha is (the stock model up to rounding)."""
    stock = tiny_vit()
    model = convert_model(copy.deepcopy(stock), "mha", alpha=None, alpha_prime=0.0)
    images = example_input("vit")
    with torch.no_grad():
        got, want = model.forward_intermediates(images, **kwargs), stock.forward_intermediates(images, **kwargs)
    assert type(got) is type(want)
    if isinstance(want, dict):
        assert sorted(got) == sorted(want)
    got, want = flatten(got), flatten(want)
    assert [t.shape for t in got] == [t.shape for t in want]
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)
    other = convert_model(copy.deepcopy(stock), "mha", alpha=0.5)  # and the state does act: the test can tell
    with torch.no_grad():
        assert not torch.allclose(flatten(other.forward_intermediates(images, **kwargs))[-1], want[-1], atol=1e-4)


def test_pruned_intermediate_layers_run_with_the_state():
    model = converted()
    images = example_input("vit")
    with torch.no_grad():
        want = model.forward_intermediates(images, indices=[1], intermediates_only=True)
        model.prune_intermediate_layers([1])
        assert len(model.blocks) == 2 and model.hopfield_states.blocks is model.blocks
        got = model.forward_intermediates(images, indices=[1], intermediates_only=True)
    torch.testing.assert_close(got, want)


def test_ema_teacher_runs_its_own_state_beside_the_student():
    """timm's ModelEmaV3 (a deepcopy): the teacher's passes use the teacher's state source; a student pass and a
    teacher pass before one backward, with checkpointing, give the gradients of the run without checkpointing."""
    student = converted().train()
    ema = ModelEmaV3(student, decay=0.5)
    teacher = ema.module
    assert isinstance(teacher, HopfieldVisionTransformer)
    assert teacher.hopfield_states is not student.hopfield_states and teacher.hopfield_states.root is teacher
    images = example_input("vit")

    def step() -> dict[str, torch.Tensor]:
        student.zero_grad()
        with torch.no_grad():
            target = teacher(images).softmax(-1)
        loss = -(target * student(images).log_softmax(-1)).sum(-1).mean() + student(images * 0.5).square().mean()
        loss.backward()
        return {n: p.grad.clone() for n, p in student.named_parameters()}

    want = step()
    student.set_grad_checkpointing(True)
    got = step()
    for n in want:
        torch.testing.assert_close(got[n], want[n], rtol=1e-5, atol=1e-6, msg=n)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.01)
    ema.update(student)
    with torch.no_grad():
        assert not torch.equal(teacher(images), student(images))


def test_a_timm_subclass_keeps_what_it_adds():
    """VisionTransformerDistilled (DeiT, distillation token and head) converts to a class of its own."""
    torch.manual_seed(0)
    stock = timm.create_model("deit_tiny_distilled_patch16_224", img_size=16, patch_size=4, embed_dim=32, depth=2,
                              num_heads=4, num_classes=7).eval()  # fmt: skip
    model = convert_model(copy.deepcopy(stock), "mha", alpha=None, alpha_prime=0.0)
    assert type(model).__name__ == "HopfieldVisionTransformerDistilled" and isinstance(model, type(stock))
    images = example_input("vit")
    with torch.no_grad():
        torch.testing.assert_close(model(images), stock(images), rtol=1e-5, atol=1e-5)
        assert model.forward_features(images).shape[1] == 16 + 2  # class and distillation tokens


def test_a_subclass_with_its_own_forward_features_is_refused():
    class Custom(timm.models.vision_transformer.VisionTransformer):
        def forward_features(self, x, attn_mask=None, is_causal=False):
            return super().forward_features(x)

    model = Custom(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=4)
    with pytest.raises(TypeError, match="Custom overrides it"):
        convert_model(model, "mha")
    assert type(model.blocks[0]) is timm.models.vision_transformer.Block  # nothing was half converted


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_torch_jit_script_refuses_a_converted_vit_with_one_message():
    for name in CONVERSIONS:
        with pytest.raises(RuntimeError, match="torch.jit.script cannot compile a converted ViT.*torch.compile"):
            torch.jit.script(converted(name))
    with pytest.raises(RuntimeError, match="torch.jit.script cannot compile a converted ViT"):
        torch.jit.script(converted().blocks[0])
    assert type(converted().blocks[0]) is HopfieldBlock
    stock = convert_model(tiny_vit(), "softmax")  # the stock model itself: scripts as timm's does
    scripted = torch.jit.script(stock)
    images = example_input("vit")
    torch.testing.assert_close(scripted(images), stock(images))


def test_torch_export_gives_the_eager_outputs():
    model = converted().eval()
    images = example_input("vit")
    exported = torch.export.export(model, (images,))
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(images * 2), model(images * 2))
