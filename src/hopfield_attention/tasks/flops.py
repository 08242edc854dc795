"""Training FLOPs per sample, for the throughput monitor's FLOPs/s and MFU: the weights' matmuls and the
attention variant's own work, per implementation.

Weights. The usual transformer estimate (Kaplan et al. 2020; PaLM, Chowdhery et al. 2022, appendix B;
nanoGPT's estimate_mfu): a token's forward pass costs 2 N for the weight matmuls, backward twice that, 6 N in
all. N counts the weights that multiply activations: the weight matrices (parameters of two or more dimensions)
of every leaf module except embedding lookups (a tied output layer counts its weight once; biases, norm gains,
position embeddings and a ViT's class token are additions, not matmuls). A ViT's patch projection runs on the
patches only (not the class token), and in backward only for its weight's gradient (the images need none); its
head reads one token.

Attention, per layer, with H query heads of width D over T queries and T keys: one T x T product of width w
costs 2 H T^2 w, and a stock layer does two (q k^T and the product with v) forward and four backward (the
gradients of q, k, v and of the probabilities). The carried-score paths (attention/paths.py) do more:

    explicit  the same six: the state update and its gradient are elementwise
    fused     one more q k^T forward for the state handed on (3 forward). Backward: four, plus two for that
              q k^T when the next layer reads the state with a gradient (not the last layer's, nor when
              the next decays it by 0). On the CPU, a layer with a carried state and no dropout is one
              autograd node whose four backward products serve the output and the state alike.
    stacked   q k^T at the stacked width E = sum of the head dims of the layers still weighted (n D at layer
              n unless a weight is 0), the product with v at D, or on the CPU without dropout at E (v is
              zero-padded to E for the flash kernel); backward twice each
    auto      per layer, as `choose_implementation` decides for the training device and micro-batch; where a
              stacked state turns dense, its one product at width E forward (twice backward if read)

Causal masking is not discounted, as in PaLM. Left out: elementwise work (norms, softmax, the state's moving
average), and recomputation, whether of activation checkpointing or inside the attention kernels' backward (the
flash and memory-efficient kernels recompute q k^T): this is model FLOPs, for MFU, not hardware FLOPs. A linear
probe's frozen backbone runs forward only, in eval mode (no dropout), and its head's backward gives only the
weight's gradient.

tests/test_flops.py holds these counts to torch's FlopCounterMode on tiny models of every backbone and
implementation. torch counts its CUDA attention kernels but not the CPU flash kernel: `count_cpu_attention`
registers torch's own formulas for it, so that Lightning's model summary counts attention on the CPU as well.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.utils import flop_counter

from ..attention.paths import DENSE, choose_implementation
from ..attention.stacked import StackedScores
from ..attention.variants import AttentionVariant


def matmul_parameters(module: nn.Module) -> int:
    """Weight matrices of the leaf modules other than embedding lookups, each tensor once."""
    seen: set[int] = set()
    total = 0
    for leaf in module.modules():
        if isinstance(leaf, nn.Embedding) or next(leaf.children(), None) is not None:
            continue
        for param in leaf.parameters(recurse=False):
            if param.ndim >= 2 and id(param) not in seen:
                seen.add(id(param))
                total += param.numel()
    return total


@dataclass(frozen=True)
class AttentionLayout:
    """What the attention FLOPs of a backbone depend on: its layers, query heads and head width, the attention
    dropout it trains with, and its variant (None: the stock model's attention)."""

    layers: int
    heads: int
    head_dim: int
    dropout: float
    variant: AttentionVariant | None


def attention_layout(model: nn.Module) -> AttentionLayout:
    """The layout of a transformers GPT-2 / LLaMA or a timm VisionTransformer, converted or stock."""
    variant = getattr(model, "hopfield_attention", None)
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "num_hidden_layers"):  # transformers
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        dropout = getattr(config, "attn_pdrop", None)
        if dropout is None:
            dropout = getattr(config, "attention_dropout", 0.0)
        return AttentionLayout(config.num_hidden_layers, heads, head_dim, float(dropout), variant)
    if hasattr(model, "blocks") and hasattr(model, "patch_embed"):  # timm
        attn = model.blocks[0].attn
        return AttentionLayout(len(model.blocks), attn.num_heads, attn.head_dim, float(attn.attn_drop.p), variant)
    raise TypeError(f"no attention layout known for {type(model).__name__}: a transformers GPT-2/LLaMA or a timm ViT")


def _recurrence(variant: AttentionVariant) -> tuple[float, float, str]:
    """(decay, gain, first_layer) of a carried-score variant: H_n = decay H_{n-1} + gain S_n (attention/variants.py:
    MHA decays by alpha', RealFormer sums)."""
    alpha_prime = getattr(variant, "alpha_prime", None)
    if alpha_prime is None:
        return 1.0, 1.0, getattr(variant, "first_layer", "scores")
    return float(alpha_prime), 1.0 - float(alpha_prime), variant.first_layer


def _placeholder(shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """A tensor of `shape` on `device` holding one element (what `choose_implementation` reads: shape, device)."""
    return torch.empty((), device=device).expand(shape)


def attention_flops(
    layout: AttentionLayout, tokens: int, *, device: torch.device | str = "cpu", train: bool = True, batch: int = 1
) -> int:
    """Matmul FLOPs of one sample's attention over `tokens` tokens through all layers: forward, and backward if
    `train` (then with the layout's dropout; without: forward in eval mode). `device` and `batch` (the
    micro-batch) are what the "auto" implementation and the CPU kernels decide by. See the module docstring."""
    device = torch.device(device)
    dropout = layout.dropout if train else 0.0
    d = layout.head_dim
    pair = 2 * layout.heads * tokens * tokens  # one T x T product per unit of width, all heads
    variant = layout.variant
    if variant is None or not variant.carries_state:
        return layout.layers * pair * d * (6 if train else 2)

    decay, gain, first_layer = _recurrence(variant)
    cpu_padding = device.type == "cpu" and dropout == 0.0
    forward = backward = 0
    state = None  # None, "dense", or the stacked terms' (width, weight)
    pending = 0  # the backward of the product that formed a dense state, paid if the next layer reads it
    for _ in range(layout.layers):
        implementation = variant.implementation
        if implementation == "auto":
            query = _placeholder((batch, layout.heads, tokens, d), device)
            if state == "dense":
                hidden = query  # any tensor: a dense state stays dense
            elif state is None:
                hidden = None
            else:
                queries = tuple(_placeholder((batch, layout.heads, tokens, w), device) for w, _ in state)
                hidden = StackedScores(
                    queries, queries, tuple(w for _, w in state), query.shape[:3] + (tokens,), device
                )
            implementation = choose_implementation(query, query, hidden, dropout_p=dropout)
        if implementation in DENSE and isinstance(state, list):  # StackedScores.dense(): one product at width E
            width = sum(w for w, _ in state)
            forward += pair * width
            pending = 2 * pair * width if width else 0
            state = "dense"
        reads_state = state == "dense" and (implementation == "explicit" or decay != 0.0)
        if reads_state:
            backward += pending
        if implementation == "explicit":
            forward += 2 * pair * d
            backward += 4 * pair * d
            pending, state = 0, "dense"
        elif implementation == "fused":
            forward += 3 * pair * d
            backward += 4 * pair * d
            one_node = device.type == "cpu" and dropout == 0.0 and reads_state and train
            pending, state = (0 if one_node else 2 * pair * d), "dense"
        elif implementation == "stacked":
            if state == "dense":
                raise ValueError("a dense state cannot become stacked (attention/paths.py)")
            if state is None:
                terms = [(d, 1.0 if first_layer == "scores" else gain)]
            else:
                terms = [(w, decay * weight) for w, weight in state] + [(d, gain)]
            state = [term for term in terms if term[1] != 0.0]
            width = sum(w for w, _ in state) or d  # an empty stack: zero queries and keys of v's width
            value_width = max(width, d) if cpu_padding else d
            forward += pair * (width + value_width)
            backward += 2 * pair * (width + value_width)
        else:
            raise ValueError(f"no FLOPs known for implementation {implementation!r}")
    return forward + (backward if train else 0)


def model_device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return torch.device("cpu") if parameter is None else parameter.device


def causal_lm_flops_per_sequence(model: nn.Module, block_size: int, *, batch: int = 1) -> int:
    """Training FLOPs of one sequence of `block_size` tokens through a transformers causal LM (converted or
    stock), on the device its weights are on, in micro-batches of `batch`."""
    weights = 6 * matmul_parameters(model) * block_size
    layout = attention_layout(model)
    return weights + attention_flops(layout, block_size, device=model_device(model), batch=batch)


def vit_flops_per_image(model: nn.Module, *, backbone_trains: bool = True, batch: int = 1) -> int:
    """Training FLOPs of one image through a timm VisionTransformer: its head trained; its blocks too, unless a
    frozen backbone only runs forward (in eval mode)."""
    head = matmul_parameters(model.get_classifier())
    patches = model.patch_embed.num_patches
    projection = matmul_parameters(model.patch_embed)
    tokens = patches + model.num_prefix_tokens
    body = matmul_parameters(model) - head - projection
    layout = attention_layout(model)
    attention = attention_flops(layout, tokens, device=model_device(model), train=backbone_trains, batch=batch)
    if backbone_trains:  # the projection's backward: its weight's gradient only
        return 6 * body * tokens + 4 * projection * patches + attention + 6 * head
    # a frozen backbone: forward only, and the head's backward only for its weight (its input needs no gradient)
    return 2 * body * tokens + 2 * projection * patches + attention + 4 * head


def _sdpa_forward(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return flop_counter.sdpa_flop_count(query, key, value)


def _sdpa_backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    return flop_counter.sdpa_backward_flop_count(grad_out, query, key, value)


def count_cpu_attention() -> None:
    """Register torch's SDPA formulas (those of its CUDA kernels) for the CPU flash kernel, which FlopCounterMode
    otherwise counts as 0. Once; nothing if torch counts it already or has no such kernel."""
    aten = torch.ops.aten
    for name, formula in (("_scaled_dot_product_flash_attention_for_cpu", _sdpa_forward),
                          ("_scaled_dot_product_flash_attention_for_cpu_backward", _sdpa_backward)):  # fmt: skip
        op = getattr(aten, name, None)
        if op is not None and op not in flop_counter.flop_registry:
            flop_counter.register_flop_formula(op)(formula)


count_cpu_attention()
