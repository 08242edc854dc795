"""Rank-collapse measures (token cosine similarity, effective rank) and attention entropy, per layer:
the functions, a meter that pools them over batches, a probe that runs a model, and a Lightning callback."""

from .callback import RankCollapseCallback
from .measures import (
    attention_entropy,
    effective_rank,
    pairwise_cosine,
    sequence_effective_ranks,
)
from .meter import RankCollapseMeter
from .probe import RankCollapseProbe

__all__ = [
    "RankCollapseCallback",
    "RankCollapseMeter",
    "RankCollapseProbe",
    "attention_entropy",
    "effective_rank",
    "pairwise_cosine",
    "sequence_effective_ranks",
]
