"""Rank-collapse measures (token cosine similarity, effective rank) and attention entropy, per layer."""

from .measures import attention_entropy, effective_rank, pairwise_cosine, sequence_effective_ranks
from .meter import RankCollapseMeter

__all__ = ["RankCollapseMeter", "attention_entropy", "effective_rank", "pairwise_cosine", "sequence_effective_ranks"]
