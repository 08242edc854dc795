"""Rank-collapse measures of token representations (paper section 4) and attention entropy.

- Pairwise cosine similarity: for each sequence, cos(x_i, x_j) over all token pairs i < j (self-pairs
  excluded, padding excluded), pooled over sequences. Token uniformity shows as mass at 1.
- Effective rank (Roy & Vetterli 2007): for a sequence's token matrix X (T, D) with singular values s_k,
  p_k = s_k / sum(s), erank = exp(-sum p_k log p_k). Between 1 (all tokens parallel) and min(T, D) (equal
  singular values). X is not centred: identical tokens must give rank 1. Averaged over sequences.
- Attention entropy: for each head and query, -sum_k p_k log p_k over the keys it may attend to (masked
  keys have p = 0 and add nothing); padded queries excluded; averaged over batch, heads and queries.
  Uniform attention over n keys gives log n.
"""

from __future__ import annotations

import math

import torch


def pairwise_cosine(hidden: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """All pairwise cosine similarities i < j within each sequence, pooled: (B, T, D) -> (n_pairs,)."""
    _check_tokens(hidden, mask)
    unit = torch.nn.functional.normalize(hidden.float(), dim=-1)  # (B, T, D)
    cos = unit @ unit.transpose(1, 2)  # (B, T, T)
    T = hidden.shape[1]
    pairs = torch.ones(T, T, dtype=torch.bool, device=hidden.device).triu(1)  # (T, T), i < j
    pairs = pairs.expand(hidden.shape[0], T, T)  # (B, T, T)
    if mask is not None:
        valid = mask.bool()  # (B, T)
        pairs = pairs & valid[:, :, None] & valid[:, None, :]
    return cos[pairs]


def effective_rank(tokens: torch.Tensor) -> torch.Tensor:
    """Roy & Vetterli's effective rank of each token matrix: (..., T, D) -> (...)."""
    singular = torch.linalg.svdvals(tokens.double())  # (..., min(T, D))
    p = singular / singular.sum(-1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
    entropy = -(p * torch.log(p.clamp_min(torch.finfo(torch.float64).tiny))).sum(-1)
    return torch.exp(entropy).to(tokens.dtype if tokens.is_floating_point() else torch.float32)


def sequence_effective_ranks(hidden: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Effective rank of each sequence's (unpadded) tokens: (B, T, D) -> (B,)."""
    _check_tokens(hidden, mask)
    if mask is None:
        return effective_rank(hidden.float())
    return torch.stack([effective_rank(seq[m.bool()].float()) for seq, m in zip(hidden, mask)])


def attention_entropy(probs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Entropy of each attention row, padded queries dropped: (B, H, Tq, Tk) -> (n_rows,)."""
    if probs.dim() != 4:
        raise ValueError(f"attention probabilities must be (B, H, Tq, Tk), got shape {tuple(probs.shape)}")
    p = probs.double()
    entropy = -torch.where(p > 0, p * torch.log(p), torch.zeros_like(p)).sum(-1)  # (B, H, Tq)
    if mask is None:
        return entropy.flatten().float()
    if mask.shape != (probs.shape[0], probs.shape[2]):
        raise ValueError(f"mask must be (B, Tq) = {(probs.shape[0], probs.shape[2])}, got {tuple(mask.shape)}")
    rows = mask.bool()[:, None, :].expand_as(entropy)  # (B, H, Tq)
    return entropy[rows].float()


def max_entropy(n_keys: int) -> float:
    """The entropy of uniform attention over n keys, log n: the upper bound of `attention_entropy`."""
    return math.log(n_keys)


def _check_tokens(hidden: torch.Tensor, mask: torch.Tensor | None) -> None:
    if hidden.dim() != 3:
        raise ValueError(f"token representations must be (B, T, D), got shape {tuple(hidden.shape)}")
    if mask is not None and mask.shape != hidden.shape[:2]:
        raise ValueError(f"mask must be (B, T) = {tuple(hidden.shape[:2])}, got {tuple(mask.shape)}")
