"""What the benchmark measures: the model shapes, the methods, and one `step()` per case.

Cases (causal attention everywhere but ViT; each step is forward + backward):
  layer        one attention layer n of a GPT-2 Small shaped stack (12 heads of 64), handed the state that
               n - 1 earlier layers of the same method formed (from random q, k, v). The stacked path's state
               is then n * D wide; the dense paths' state is one T x T tensor whatever n (and gets a gradient
               from above, as it would from layer n + 1). The input of the cost model of "auto".
  stack        several such layers and nothing else: each layer's q, k, v projected from the previous layer's
               output (x + attention), so the state and its gradient flow through the whole depth.
  gpt2-small   a training step (forward, backward, AdamW) of a GPT-2 Small shaped model built by transformers
  gpt2-medium  (768 or 1024 wide, 12 or 16 heads of 64, 50257 tokens, no dropout) and converted by
               hopfield_attention.convert_model; `layers` blocks.
  vit-base     the same for a ViT-Base shaped timm model (768 wide, 12 heads, patch 16) on an image of
               ceil(sqrt(T - 1)) patches a side: T is the nearest square + 1 at or above the one asked.
Methods: softmax (the backbone's own SDPA path), and mha-<implementation> and realformer-<implementation> for
every registered implementation and "auto".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from hopfield_attention import convert_model
from hopfield_attention.attention import build_attention, paths
from hopfield_attention.attention.paths import IMPLEMENTATIONS


@dataclass(frozen=True)
class Shape:
    layers: int  # the full model's depth
    width: int
    heads: int
    vocab: int = 0  # language models
    patch: int = 0  # ViT

    @property
    def head_dim(self) -> int:
        return self.width // self.heads


SHAPES = {
    "gpt2-small": Shape(layers=12, width=768, heads=12, vocab=50257),
    "gpt2-medium": Shape(layers=24, width=1024, heads=16, vocab=50257),
    "vit-base": Shape(layers=12, width=768, heads=12, patch=16),
}
# The same structure at toy size (--quick, gpu_check --dry-run): every code path in seconds; figures mean nothing.
TINY_SHAPES = {
    "gpt2-small": Shape(layers=2, width=32, heads=2, vocab=61),
    "gpt2-medium": Shape(layers=2, width=48, heads=3, vocab=61),
    "vit-base": Shape(layers=2, width=32, heads=2, patch=4),
}
CASES = ("layer", "stack", "gpt2-small", "gpt2-medium", "vit-base")
CASE_SHAPE = {"layer": "gpt2-small", "stack": "gpt2-small", "gpt2-small": "gpt2-small",
              "gpt2-medium": "gpt2-medium", "vit-base": "vit-base"}  # fmt: skip
MHA_PARAMS = {"alpha": 0.5}  # the paper's main setting, alpha = alpha' = 0.5


@dataclass(frozen=True)
class Method:
    name: str
    variant: str
    implementation: str | None  # None for softmax
    params: dict


def methods() -> dict[str, Method]:
    """softmax, then mha-<implementation> and realformer-<implementation> for each registered one and auto."""
    table = {"softmax": Method("softmax", "softmax", None, {})}
    for variant, params in (("mha", MHA_PARAMS), ("realformer", {})):
        for implementation in (*IMPLEMENTATIONS, "auto"):
            name = f"{variant}-{implementation}"
            table[name] = Method(name, variant, implementation, {**params, "implementation": implementation})
    return table


def is_dense(method: Method) -> bool:
    """A path whose state is one T x T tensor at every layer (its cost does not depend on the layer's depth)."""
    return method.implementation in paths.DENSE


def actual_seq_len(case: str, seq_len: int) -> int:
    return math.ceil(math.sqrt(seq_len - 1)) ** 2 + 1 if case.startswith("vit") else seq_len


def _autocast(device: torch.device, dtype: torch.dtype):
    return torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else nullcontext()


# --- the auto rule's choices, recorded while a step runs ---------------------------------------------------------


class AutoChoices:
    """The implementation "auto" chose at each call, grouped by step (`next_step()` opens a group)."""

    def __init__(self):
        self.steps: list[list[str]] = []

    def next_step(self) -> None:
        self.steps.append([])

    def add(self, choice: str) -> None:
        if self.steps:  # calls outside a step (setting one up) are not the step's
            self.steps[-1].append(choice)

    @property
    def per_layer(self) -> list[str]:
        return self.steps[0] if self.steps else []


@contextmanager
def recording_auto_choices():
    """Records what `paths.choose_implementation` returns while on. The package has no public hook for this;
    `carried_attention` looks the rule up in its module at each call, so wrapping it there sees every choice and
    changes none."""
    choices = AutoChoices()
    original = paths.choose_implementation

    def recorded(*args, **kwargs):
        choice = original(*args, **kwargs)
        choices.add(choice)
        return choice

    paths.choose_implementation = recorded
    try:
        yield choices
    finally:
        paths.choose_implementation = original


# --- the cases ---------------------------------------------------------------------------------------------------


def layer_step(method: Method, shape: Shape, seq_len: int, depth: int, batch: int, device, dtype) -> Callable:
    """Layer `depth` (1 = the first) of a causal stack: forward + backward, given the state of the layers below."""
    gen = torch.Generator(device=device).manual_seed(0)
    dims = (batch, shape.heads, seq_len, shape.head_dim)

    def leaf():  # what the layer's q, k, v projection hands over: the autocast dtype under autocast
        return torch.randn(dims, generator=gen, device=device).to(dtype).requires_grad_(True)

    q, k, v = leaf(), leaf(), leaf()
    scale = 1.0 / math.sqrt(shape.head_dim)
    if method.variant == "softmax":

        def step():
            for t in (q, k, v):
                t.grad = None
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
            out.backward(torch.ones_like(out))

        return step

    variant = build_attention(method.variant, **method.params)
    earlier = [(leaf(), leaf(), leaf()) for _ in range(depth - 1)]
    hidden = None
    with torch.no_grad(), _autocast(device, dtype):  # the state the earlier layers hand on; not measured
        for layer in earlier:
            hidden = variant.attend(*layer, hidden, scale=scale, is_causal=True)[1]
    # A stacked state holds the earlier layers' own q and k (leaves here: the backward reaches them); a dense
    # state becomes a leaf of its own.
    if isinstance(hidden, torch.Tensor):
        hidden = hidden.detach().requires_grad_(True)
    leaves = [q, k, v, *(t for layer in earlier for t in layer)]
    if isinstance(hidden, torch.Tensor):
        leaves.append(hidden)
    # The layer above sends a gradient back into a dense state (one T x T tensor); a stacked state's gradient
    # reaches the q and k it holds through the layers above, measured at their own depths.
    dense_state = method.implementation in paths.DENSE or (
        method.implementation == "auto" and paths.choose_implementation(q, k, hidden) in paths.DENSE
    )
    state_grad = None
    if dense_state:
        state_grad = torch.randn(batch, shape.heads, seq_len, seq_len, generator=gen, device=device)  # (B, H, T, T)

    def step():
        for t in leaves:
            t.grad = None
        with _autocast(device, dtype):
            out, state = variant.attend(q, k, v, hidden, scale=scale, is_causal=True)
        outputs, grads = [out], [torch.ones_like(out)]
        if state_grad is not None:
            outputs.append(state)
            grads.append(state_grad.to(state.dtype))
        torch.autograd.backward(outputs, grads)

    return step


def stack_step(method: Method, shape: Shape, seq_len: int, layers: int, batch: int, device, dtype) -> Callable:
    """`layers` attention layers alone: q, k, v = Linear(x) per layer, x <- x + attention; loss on the last x."""
    torch.manual_seed(0)
    with torch.device(device):
        projections = torch.nn.ModuleList(torch.nn.Linear(shape.width, 3 * shape.width) for _ in range(layers))
        x0 = torch.randn(batch, seq_len, shape.width)
    variant = build_attention(method.variant, **method.params)
    scale = 1.0 / math.sqrt(shape.head_dim)

    def forward():
        x, hidden = x0, None
        for projection in projections:
            qkv = projection(x).view(batch, seq_len, 3, shape.heads, shape.head_dim)  # (B, T, 3, H, D)
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, T, D) each
            if variant.carries_state:
                out, hidden = variant.attend(q, k, v, hidden, scale=scale, is_causal=True)
            else:
                out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
            x = x + out.transpose(1, 2).reshape(batch, seq_len, shape.width)  # (B, T, C)
        return x

    def step():
        projections.zero_grad(set_to_none=True)
        with _autocast(device, dtype):
            loss = forward().float().square().mean()
        loss.backward()

    return step


def gpt2_model(shape: Shape, layers: int, seq_len: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    # No dropout: the CPU's flash kernel has none, so dropout would send every method to SDPA's math path.
    config = GPT2Config(
        n_layer=layers, n_embd=shape.width, n_head=shape.heads, n_positions=seq_len, vocab_size=shape.vocab,
        attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0,
    )  # fmt: skip
    config._attn_implementation = "sdpa"  # the stock fused path is the softmax baseline
    return GPT2LMHeadModel(config)


def vit_model(shape: Shape, layers: int, seq_len: int):
    from timm.models.vision_transformer import VisionTransformer

    side = math.ceil(math.sqrt(seq_len - 1))  # patches a side: T = side^2 + 1 (the class token)
    return VisionTransformer(img_size=side * shape.patch, patch_size=shape.patch, embed_dim=shape.width,
                             depth=layers, num_heads=shape.heads, num_classes=1000)  # fmt: skip


def model_step(case: str, method: Method, shape: Shape, seq_len: int, layers: int, batch: int, device,
               dtype) -> Callable:  # fmt: skip
    """A training step of a converted model: forward (under autocast for bf16), backward, AdamW."""
    torch.manual_seed(0)  # the same weights for every method
    with torch.device(device):  # parameters made where they run (fast on a GPU)
        model = vit_model(shape, layers, seq_len) if case.startswith("vit") else gpt2_model(shape, layers, seq_len)
    model = convert_model(model, method.variant, **method.params).to(device).train()  # anything it added, there too
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    _allocate_optimizer_state(model, optimizer)
    if case.startswith("vit"):
        images = torch.randn(batch, 3, *model.patch_embed.img_size, device=device)
        labels = torch.randint(0, 1000, (batch,), device=device)
        loss_of = lambda: F.cross_entropy(model(images), labels)  # noqa: E731
    else:
        tokens = torch.randint(0, shape.vocab, (batch, seq_len), device=device)
        loss_of = lambda: model(input_ids=tokens, labels=tokens).loss  # noqa: E731

    def step():
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device, dtype):
            loss = loss_of()
        loss.backward()
        optimizer.step()

    return step


def _allocate_optimizer_state(model, optimizer) -> None:
    """AdamW makes its moments at its first step: make them now (a step on zero gradients), so that the memory
    run counts what every later step costs, not the optimizer's one-off allocation."""
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def build_step(case: str, method: Method, shape: Shape, seq_len: int, layers: int, batch: int, device, dtype,
               depth: int = 1) -> Callable:  # fmt: skip
    if case == "layer":
        return layer_step(method, shape, seq_len, depth, batch, device, dtype)
    if case == "stack":
        return stack_step(method, shape, seq_len, layers, batch, device, dtype)
    return model_step(case, method, shape, seq_len, layers, batch, device, dtype)
