"""Rank-collapse measures against direct computation on constructed inputs."""

import itertools
import math

import numpy as np
import pytest
import torch

from hopfield_attention.analysis.measures import (
    attention_entropy,
    effective_rank,
    pairwise_cosine,
    sequence_effective_ranks,
)
from hopfield_attention.analysis.meter import RankCollapseMeter


def test_identical_tokens_have_cosine_one_and_rank_one():
    hidden = torch.tensor([0.3, -1.2, 2.0, 0.5]).expand(2, 6, 4)  # (B, T, D), every token the same
    cos = pairwise_cosine(hidden)
    assert cos.shape == (2 * 15,)
    torch.testing.assert_close(cos, torch.ones(30))
    torch.testing.assert_close(sequence_effective_ranks(hidden), torch.ones(2))


def test_orthogonal_tokens_have_cosine_zero_and_full_rank():
    n = 5
    hidden = (3.0 * torch.eye(n, 8))[None]  # (1, n, 8): n orthogonal tokens of equal norm
    torch.testing.assert_close(pairwise_cosine(hidden), torch.zeros(n * (n - 1) // 2))
    assert sequence_effective_ranks(hidden).item() == pytest.approx(n)


def test_cosines_agree_with_a_pair_by_pair_computation():
    hidden = torch.randn(2, 5, 7, generator=torch.Generator().manual_seed(0))
    expected = [torch.nn.functional.cosine_similarity(seq[i], seq[j], dim=0)
                for seq in hidden for i, j in itertools.combinations(range(5), 2)]  # fmt: skip
    torch.testing.assert_close(pairwise_cosine(hidden), torch.stack(expected))


def test_padding_is_excluded():
    hidden = torch.randn(1, 4, 3, generator=torch.Generator().manual_seed(1))
    mask = torch.tensor([[True, True, True, False]])
    torch.testing.assert_close(pairwise_cosine(hidden, mask), pairwise_cosine(hidden[:, :3]))
    torch.testing.assert_close(sequence_effective_ranks(hidden, mask), sequence_effective_ranks(hidden[:, :3]))


def test_effective_rank_is_roy_vetterli():
    tokens = torch.randn(6, 4, generator=torch.Generator().manual_seed(2))
    s = np.linalg.svd(tokens.numpy().astype(np.float64), compute_uv=False)
    p = s / s.sum()
    assert effective_rank(tokens).item() == pytest.approx(math.exp(-(p * np.log(p)).sum()), rel=1e-5)


def test_uniform_attention_has_entropy_log_n():
    n = 7
    probs = torch.full((2, 3, 4, n), 1.0 / n)  # (B, H, Tq, Tk)
    torch.testing.assert_close(attention_entropy(probs), torch.full((24,), math.log(n)))


def test_causal_uniform_attention_and_padded_queries():
    T = 4
    causal = torch.tril(torch.ones(T, T))
    probs = (causal / causal.sum(-1, keepdim=True))[None, None]  # (1, 1, T, T): row i uniform over i+1 keys
    expected = torch.log(torch.arange(1, T + 1, dtype=torch.float32))
    torch.testing.assert_close(attention_entropy(probs), expected)
    mask = torch.tensor([[True, True, False, False]])
    torch.testing.assert_close(attention_entropy(probs, mask), expected[:2])


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match=r"\(B, T, D\)"):
        pairwise_cosine(torch.zeros(3, 4))
    with pytest.raises(ValueError, match=r"\(B, H, Tq, Tk\)"):
        attention_entropy(torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match="mask must be"):
        pairwise_cosine(torch.zeros(2, 3, 4), torch.ones(2, 4, dtype=torch.bool))


def test_meter_pools_batches_exactly():
    gen = torch.Generator().manual_seed(3)
    batches = [[torch.randn(2, 5, 4, generator=gen) for _ in range(2)] for _ in range(3)]  # 3 batches, 2 layers
    meter = RankCollapseMeter(samples_per_batch=4)
    for layers in batches:
        meter.update(layers, attentions=[torch.full((2, 1, 5, 5), 0.2)] * 2)
    result = meter.compute()
    for number, layer in enumerate(result["layers"], start=1):
        pooled = torch.cat([pairwise_cosine(b[number - 1]) for b in batches]).double()
        assert layer["layer"] == number and layer["n_pairs"] == 3 * 2 * 10
        assert layer["cos_mean"] == pytest.approx(pooled.mean().item())
        assert layer["cos_std"] == pytest.approx(pooled.std(unbiased=False).item(), rel=1e-6)
        ranks = torch.cat([sequence_effective_ranks(b[number - 1]) for b in batches])
        assert layer["eff_rank"] == pytest.approx(ranks.mean().item(), rel=1e-6)
        assert layer["attn_entropy"] == pytest.approx(math.log(5))
        assert len(result["cos_samples"][number]) == 3 * 4
        assert set(result["cos_samples"][number]) <= set(pooled.float().tolist())
