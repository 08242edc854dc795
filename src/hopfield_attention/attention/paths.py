"""Which implementation computes carried-score attention: the registry and the automatic choice, in one place.

Every implementation has the contract of `functional.carried_score_attention` and gives the same outputs, next
state and gradients (tests/test_attention_paths.py); they differ in the form of the state handed on:

    explicit   q k^T, mask, softmax, times v, as the equations read (functional.py).    state: one T x T tensor
    fused      the carried state as an additive bias of scaled_dot_product_attention (fused.py).   T x T tensor
    stacked    the state as the stacked queries and keys of the layers so far, one SDPA call with head dim
               n * D (stacked.py).                                                      state: StackedScores

A stacked state can become a dense one at any layer (`StackedScores.dense()`, exact), never the reverse, so
"auto" decides per layer whether to stack on or to go dense, by the cost model in `choose_implementation`.
Grouped-query attention: the dense paths get keys and values repeated onto the query heads here; the stacked
path takes them as they are (SDPA's enable_gqa).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .functional import carried_score_attention
from .fused import fused_carried_score_attention
from .stacked import StackedScores, stacked_carried_score_attention

IMPLEMENTATIONS: dict[str, Callable[..., tuple[torch.Tensor, object]]] = {
    "explicit": carried_score_attention,
    "fused": fused_carried_score_attention,
    "stacked": stacked_carried_score_attention,
}
IMPLEMENTATION_CHOICES: tuple[str, ...] = ("auto", *IMPLEMENTATIONS)
DENSE = ("explicit", "fused")


def check_implementation(implementation: str) -> None:
    if implementation not in IMPLEMENTATION_CHOICES:
        raise ValueError(f"implementation must be one of {IMPLEMENTATION_CHOICES}, got {implementation!r}")


# The cost model of "auto", calibrated by scripts/bench_attention.py (README, Performance). Per layer and head, the
# dense paths cost a constant times T^2 (one T x T state, its softmax and its traffic), the stacked path a constant
# times n * D * T^2 (the QK^T and, on the CPU where v is padded, the PV products of head dim n * D). The time
# crossover is a stacked width that grows slowly with T (below): stack while the width after this layer is at most
# STACKED_MAX_WIDTH[device type], then go dense. Beyond that, stacking still saves the T x T states: it is chosen
# whatever the width when the dense states would not fit (DENSE_MEMORY_FRACTION of the memory available).
# CPU evidence (results/bench/cpu-2-cores.json, one layer at widths 64-768, 2 threads): the fitted crossover width
# is 176, 196 and 232 at T = 1024, 2048, 4096 (the crossover tool rounds that to 192), but 128 is the widest width
# measured no slower than the dense path at every T, and in the full 12-block GPT-2 Small at T = 1024 even two
# stacked layers (auto: 1.22x softmax's time) were no faster than all fused (1.10x): 128 stays. CUDA: unmeasured.
STACKED_MAX_WIDTH = {"cpu": 128, "cuda": 512}
# Below this many keys the T x T states are small and cheap, and the stacked path's fixed costs (concatenating,
# padding, rebuilding in backward) dominate: measured on 2 CPU cores, a 12-layer GPT-2 of 64 wide at T = 64 took
# 0.42 s a step explicit, 0.43 fused and 0.63 stacked; an 8-layer ViT at T = 50: 0.43, 0.46 and 0.74.
STACKED_MIN_KEYS = {"cpu": 512, "cuda": 512}
DENSE_MEMORY_FRACTION = 0.5
# On the CPU, dense layers with shorter key sequences than this run "explicit": at T = 128 and 256 the fused path
# was slower or within noise, and the memory at stake is a few MB; from T = 512 on it kept 0.77-0.79x the memory
# and was as fast or faster.
CPU_FUSED_MIN_KEYS = 512


def choose_implementation(query: torch.Tensor, key: torch.Tensor, hidden, *, dropout_p: float = 0.0) -> str:
    """The rule behind "auto" (see the constants above for the evidence).

    A dense state stays dense. Otherwise, from STACKED_MIN_KEYS keys on, stack on while the stacked width (the
    earlier layers' plus this layer's head dim) is at most STACKED_MAX_WIDTH for the device, or whenever one dense
    state per layer would not fit in DENSE_MEMORY_FRACTION of the memory available; not on the CPU with dropout
    (its flash kernel has none, and SDPA's math fallback keeps T x T probabilities). Dense layers: "fused" on CUDA (the memory-efficient kernel takes
    the bias and its gradient and never forms the probabilities) and on the CPU from CPU_FUSED_MIN_KEYS keys on
    without dropout; "explicit" otherwise.
    """
    device = query.device.type
    long_enough = key.shape[-2] >= STACKED_MIN_KEYS.get(device, STACKED_MIN_KEYS["cuda"])
    if long_enough and not isinstance(hidden, torch.Tensor) and not (device == "cpu" and dropout_p > 0.0):
        width = (hidden.width if isinstance(hidden, StackedScores) else 0) + query.shape[-1]
        if width <= STACKED_MAX_WIDTH.get(device, STACKED_MAX_WIDTH["cuda"]) or not _dense_states_fit(query, key):
            return "stacked"
    if device == "cuda":
        return "fused"
    if dropout_p > 0.0 or key.shape[-2] < CPU_FUSED_MIN_KEYS:
        return "explicit"
    return "fused"


def _dense_states_fit(query: torch.Tensor, key: torch.Tensor, layers: int = 24) -> bool:
    """Would a dense state per layer (B, H, Tq, Tk) in fp32, for a deep model's layers, fit in the memory budget?"""
    state_bytes = query.shape[0] * query.shape[1] * query.shape[-2] * key.shape[-2] * 4
    return layers * state_bytes <= DENSE_MEMORY_FRACTION * _available_bytes(query.device)


def _available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        import os

        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62  # unknown: never the reason to stack


def carried_attention(implementation: str, query, key, value, hidden, **kwargs):
    """Carried-score attention by the named implementation ("auto" resolved here, per layer)."""
    check_implementation(implementation)
    if implementation == "auto":
        implementation = choose_implementation(query, key, hidden, dropout_p=kwargs.get("dropout_p", 0.0))
    if implementation in DENSE:
        if isinstance(hidden, StackedScores):
            hidden = hidden.dense()  # the one-way switch: from here on the state is one T x T tensor
        key, value = _repeat_heads(key, query.shape[1]), _repeat_heads(value, query.shape[1])
    return IMPLEMENTATIONS[implementation](query, key, value, hidden, **kwargs)


def _repeat_heads(tensor: torch.Tensor, heads: int) -> torch.Tensor:
    """Grouped-query keys or values (B, H_kv, T, D) onto the query heads (B, H, T, D), as transformers' repeat_kv."""
    groups = heads // tensor.shape[1]
    return tensor if groups == 1 else tensor.repeat_interleave(groups, dim=1)
