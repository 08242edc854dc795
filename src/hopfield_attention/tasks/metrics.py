"""Perplexity over a whole evaluation split: exp(summed token NLL / token count), synchronised across
processes. The mean of per-batch perplexities would be a different (and wrong) number."""

from __future__ import annotations

import torch
from torchmetrics import Metric


class TokenNLL(Metric):
    """Mean negative log-likelihood per predicted token over everything seen since the last reset."""

    full_state_update = False

    def __init__(self):
        super().__init__()
        self.add_state("nll_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("tokens", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, nll_sum: torch.Tensor, tokens: int | torch.Tensor) -> None:
        self.nll_sum += nll_sum.detach().to(torch.float64)
        self.tokens += int(tokens)

    def compute(self) -> torch.Tensor:
        return self.nll_sum / self.tokens
