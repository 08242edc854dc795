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


def choose_implementation(query: torch.Tensor, key: torch.Tensor, *, dropout_p: float = 0.0) -> str:
    """The rule behind "auto", from scripts/bench_attention.py (README, section Performance).

    CUDA (any dtype): "fused". SDPA's kernels take the bias and never form the probabilities; the explicit
        path keeps fp32 and compute-dtype copies of them for backward. (Not yet measured on a GPU.)
    CPU: "explicit". On 2 CPU cores the fused path keeps less for backward but is slower at every
        measured length, because its backward recomputes the probabilities (fp32 and bf16 alike).
    """
    if query.device.type == "cuda":
        return "fused"
    return "explicit"


def carried_attention(implementation: str, query, key, value, hidden, **kwargs):
    """Carried-score attention by the named implementation ("auto" resolved here, per call)."""
    check_implementation(implementation)
    if implementation == "auto":
        implementation = choose_implementation(query, key, dropout_p=kwargs.get("dropout_p", 0.0))
    return IMPLEMENTATIONS[implementation](query, key, value, hidden, **kwargs)
