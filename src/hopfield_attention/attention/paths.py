"""Which implementation computes carried-score attention: the registry and the automatic choice, in one place.

Every implementation has the contract of `functional.carried_score_attention` and gives the same outputs,
next state and gradients (tests/test_attention_paths.py):

    explicit   q k^T, mask, softmax, times v, as the equations read (functional.py).
    fused      the carried state as an additive bias of scaled_dot_product_attention (fused.py).

"auto" chooses per call, by the rule in `choose_implementation`. Override it with the variant's
`implementation` field (config: `attention.implementation`).
"""

from __future__ import annotations

from typing import Callable

import torch

from .functional import carried_score_attention
from .fused import fused_carried_score_attention

IMPLEMENTATIONS: dict[str, Callable[..., tuple[torch.Tensor, torch.Tensor]]] = {
    "explicit": carried_score_attention,
    "fused": fused_carried_score_attention,
}
IMPLEMENTATION_CHOICES: tuple[str, ...] = ("auto", *IMPLEMENTATIONS)


def check_implementation(implementation: str) -> None:
    if implementation not in IMPLEMENTATION_CHOICES:
        raise ValueError(f"implementation must be one of {IMPLEMENTATION_CHOICES}, got {implementation!r}")


# On the CPU, shorter key sequences than this run "explicit": at T = 128 and 256 the fused path was slower
# or within noise, and the memory at stake is a few MB. At T = 512 it was faster in two of three runs and
# kept 0.79x the memory; from T = 1024 on it was faster in every run.
CPU_FUSED_MIN_KEYS = 512


def choose_implementation(query: torch.Tensor, key: torch.Tensor, *, dropout_p: float = 0.0) -> str:
    """The rule behind "auto", from scripts/bench_attention.py (README, section Performance).

    CUDA, any dtype and length: "fused". SDPA's memory-efficient kernel takes the carried bias and its
        gradient and never forms the probabilities, where the explicit path keeps fp32 and compute-dtype
        copies of them for backward. (Chosen by that argument; not yet measured on a GPU.)
    CPU, no dropout, at least CPU_FUSED_MIN_KEYS keys: "fused". Measured on 2 cores at T = 1024 and 2048:
        one layer 0.61-0.84x the time and 0.77-0.78x the peak memory of "explicit".
    CPU, shorter: "explicit" (see CPU_FUSED_MIN_KEYS).
    CPU with dropout: "explicit". The CPU flash kernel has no dropout, so the fused path would take SDPA's
        unfused math fallback, which keeps as much as the explicit path and adds the bias.
    """
    if query.device.type == "cuda":
        return "fused"
    if dropout_p > 0.0 or key.shape[-2] < CPU_FUSED_MIN_KEYS:
        return "explicit"
    return "fused"


def carried_attention(implementation: str, query, key, value, hidden, **kwargs):
    """Carried-score attention by the named implementation ("auto" resolved here, per call)."""
    check_implementation(implementation)
    if implementation == "auto":
        implementation = choose_implementation(query, key, dropout_p=kwargs.get("dropout_p", 0.0))
    return IMPLEMENTATIONS[implementation](query, key, value, hidden, **kwargs)
