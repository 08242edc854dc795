"""Accumulates the per-layer measures over evaluation batches. Layers are numbered from 1 (after block 1)
to L (after the last block), as in the paper ("layers 12 and 24" of GPT-2 Medium)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .measures import attention_entropy, pairwise_cosine, sequence_effective_ranks


@dataclass
class _LayerSums:
    cos_sum: float = 0.0
    cos_sq_sum: float = 0.0
    cos_count: int = 0
    rank_sum: float = 0.0
    sequences: int = 0
    entropy_sum: float = 0.0
    entropy_rows: int = 0
    cos_samples: list[torch.Tensor] = field(default_factory=list)


class RankCollapseMeter:
    """Exact pooled means over all pairs and rows; a uniform random subsample of the cosines (at most
    `samples_per_batch` per layer and batch, reproducible by `seed`) for the violin plots."""

    def __init__(self, samples_per_batch: int = 2048, seed: int = 0):
        if samples_per_batch < 0:
            raise ValueError(f"samples_per_batch must be >= 0, got {samples_per_batch}")
        self.samples_per_batch = samples_per_batch
        self.generator = torch.Generator().manual_seed(seed)
        self.layers: list[_LayerSums] = []

    def update(
        self,
        hidden_states: list[torch.Tensor],
        attentions: list[torch.Tensor] | None = None,
        mask: torch.Tensor | None = None,
    ) -> None:
        """hidden_states: per layer (B, T, D); attentions: per layer (B, H, T, T) or None; mask: (B, T)."""
        if attentions is not None and len(attentions) != len(hidden_states):
            raise ValueError(f"got {len(attentions)} attention maps for {len(hidden_states)} layers")
        if not self.layers:
            self.layers = [_LayerSums() for _ in hidden_states]
        elif len(self.layers) != len(hidden_states):
            raise ValueError(f"got {len(hidden_states)} layers, earlier batches had {len(self.layers)}")
        for i, (sums, hidden) in enumerate(zip(self.layers, hidden_states)):
            cos = pairwise_cosine(hidden, mask).double().cpu()  # (n_pairs,)
            sums.cos_sum += cos.sum().item()
            sums.cos_sq_sum += cos.square().sum().item()
            sums.cos_count += cos.numel()
            if self.samples_per_batch and cos.numel():
                keep = torch.randperm(cos.numel(), generator=self.generator)[: self.samples_per_batch]
                sums.cos_samples.append(cos[keep].float())
            ranks = sequence_effective_ranks(hidden, mask).double().cpu()  # (B,)
            sums.rank_sum += ranks.sum().item()
            sums.sequences += ranks.numel()
            if attentions is not None:
                entropy = attention_entropy(attentions[i], mask).double().cpu()  # (n_rows,)
                sums.entropy_sum += entropy.sum().item()
                sums.entropy_rows += entropy.numel()

    def compute(self) -> dict:
        """{"layers": [{"layer", "cos_mean", "cos_std", "n_pairs", "eff_rank", "n_sequences",
        "attn_entropy"}...], "cos_samples": {layer: [...]}}; attn_entropy None without attention maps."""
        if not self.layers:
            raise ValueError("no batches measured: call update() first")
        layers, samples = [], {}
        for number, sums in enumerate(self.layers, start=1):
            mean = sums.cos_sum / sums.cos_count if sums.cos_count else math.nan
            var = sums.cos_sq_sum / sums.cos_count - mean**2 if sums.cos_count else math.nan
            layers.append({
                "layer": number,
                "cos_mean": mean,
                "cos_std": math.sqrt(max(var, 0.0)),
                "n_pairs": sums.cos_count,
                "eff_rank": sums.rank_sum / sums.sequences,
                "n_sequences": sums.sequences,
                "attn_entropy": sums.entropy_sum / sums.entropy_rows if sums.entropy_rows else None,
            })  # fmt: skip
            samples[number] = torch.cat(sums.cos_samples).tolist() if sums.cos_samples else []
        return {"layers": layers, "cos_samples": samples}
