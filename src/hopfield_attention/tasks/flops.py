"""Training FLOPs per sample from the model's size, for the throughput monitor's FLOPs/s and MFU.

The usual transformer estimate (Kaplan et al. 2020; PaLM, Chowdhery et al. 2022, appendix B; nanoGPT's
estimate_mfu): per token, a forward pass costs 2 N for the weight matmuls plus 4 L d T for attention (q k^T and
the product with v, T keys, width d, L layers), and backward twice that:

    training FLOPs per token = 6 N + 12 L d T

N counts the weights that multiply activations: the weight matrices (parameters of two or more dimensions) of
every leaf module except embedding lookups (a tied output layer counts its weight once; biases, norm gains,
position embeddings and a ViT's class token are additions, not matmuls). Causal masking is not discounted, as in PaLM. Elementwise work (norms, softmax, the MHA state's
moving average) is left out, as is recomputation: with activation checkpointing the hardware does about a third
more than this count (MFU, not hardware FLOPs utilisation).

A ViT's head reads one token: per image, T tokens through the blocks and one through the head. A linear probe
trains only its head: the frozen backbone runs forward only (2 N + 4 L d T per token).
"""

from __future__ import annotations

import torch.nn as nn


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


def forward_flops_per_token(weights: int, layers: int, width: int, tokens: int) -> int:
    """2 N + 4 L d T: one token's forward pass through `weights` and `layers` attention layers over `tokens`."""
    return 2 * weights + 4 * layers * width * tokens


def causal_lm_flops_per_sequence(model: nn.Module, block_size: int) -> int:
    """Training FLOPs of one sequence of `block_size` tokens through a transformers causal LM."""
    config = model.config
    per_token = forward_flops_per_token(matmul_parameters(model), config.num_hidden_layers, config.hidden_size, block_size)
    return 3 * per_token * block_size


def vit_flops_per_image(model: nn.Module, *, backbone_trains: bool = True) -> int:
    """Training FLOPs of one image through a timm VisionTransformer (its head trained; its blocks too, unless a
    frozen backbone only runs forward)."""
    head = matmul_parameters(model.get_classifier())
    tokens = model.patch_embed.num_patches + model.num_prefix_tokens
    body = forward_flops_per_token(matmul_parameters(model) - head, len(model.blocks), model.embed_dim, tokens) * tokens
    return (3 if backbone_trains else 1) * body + 3 * 2 * head
