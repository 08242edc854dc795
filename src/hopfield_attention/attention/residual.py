"""The skip connections of a converted block: where alpha acts, one of the readings the paper leaves open.

The paper's update is x_{n+1} = alpha x_n + (1 - alpha) softmax(H_n) V_n (eq. 10); a pre-norm transformer block
has two sub-blocks, and the paper does not say which skip connections alpha replaces. Each sub-block computes
`stream_weight * x + branch_weight * branch`; the placements (`ModernHopfield.residual`, paper.md section 1):

- "attention": attention sub-block alpha x + (1 - alpha) attn(norm(x)); MLP x + mlp(norm(x)).
- "both": alpha x + (1 - alpha) branch around both sub-blocks.
- "stream": alpha weighs attention against the stream without shrinking it: the larger of the two weights is 1,
  x + ((1 - alpha) / alpha) attn for alpha >= 0.5 (0.5 is the backbone's own residual, 1 removes attention) and
  (alpha / (1 - alpha)) x + attn below (0 is attention without a skip); the MLP keeps x + mlp(norm(x)).

alpha None is the backbone's own x + branch around both. Without skip connections (paper Table 7) the backbone's
skips are gone: `skipless="none"` leaves every sub-block its branch alone, `skipless="own"` keeps the alpha-
weighted terms of the placement (they are part of the MHA update itself) and removes only the unweighted ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

PLACEMENTS = ("attention", "both", "stream")
SKIPLESS = ("none", "own")

Weights = tuple[float, float]  # (stream weight, branch weight)
OWN: Weights = (1.0, 1.0)  # the backbone's x + branch


def check_placement(placement: str) -> None:
    if placement not in PLACEMENTS:
        raise ValueError(f"residual must be one of {list(PLACEMENTS)} (where alpha acts), got {placement!r}")


def check_skipless(skipless: str) -> None:
    if skipless not in SKIPLESS:
        raise ValueError(f"skipless_residual must be one of {list(SKIPLESS)}, got {skipless!r}")


def alpha_weights(alpha: float, placement: str) -> Weights:
    """The weights alpha gives the sub-block it acts on, per placement."""
    if placement == "stream":
        return (1.0, (1.0 - alpha) / alpha) if alpha >= 0.5 else (alpha / (1.0 - alpha), 1.0)
    return (alpha, 1.0 - alpha)


@dataclass(frozen=True)
class Residual:
    alpha: float | None = None
    placement: str = "attention"
    skip_connections: bool = True
    skipless: str = "none"

    def __post_init__(self):
        check_placement(self.placement)
        check_skipless(self.skipless)

    def _weights(self, weighted_by_alpha: bool) -> Weights:
        weighted = weighted_by_alpha and self.alpha is not None
        if not self.skip_connections:
            keeps_own_term = weighted and self.skipless == "own"
            return alpha_weights(float(self.alpha), self.placement) if keeps_own_term else (0.0, 1.0)
        return alpha_weights(float(self.alpha), self.placement) if weighted else OWN

    @property
    def attention_weights(self) -> Weights:
        return self._weights(weighted_by_alpha=True)

    @property
    def mlp_weights(self) -> Weights:
        return self._weights(weighted_by_alpha=self.placement == "both")

    def attention(self, x: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        return combine(x, branch, self.attention_weights)

    def mlp(self, x: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        return combine(x, branch, self.mlp_weights)

    @property
    def weights(self) -> tuple[Weights, Weights]:
        """(attention sub-block, MLP sub-block): what the block computes, whatever the options that led there."""
        return self.attention_weights, self.mlp_weights

    @property
    def is_stock(self) -> bool:
        return self.weights == (OWN, OWN)


def combine(x: torch.Tensor, branch: torch.Tensor, weights: Weights) -> torch.Tensor:
    """stream_weight * x + branch_weight * branch, written so that the stock weights compute exactly x + branch."""
    stream, weight = weights
    if (stream, weight) == OWN:
        return x + branch
    if stream == 0.0:
        return branch if weight == 1.0 else weight * branch
    if weight == 1.0:
        return stream * x + branch
    if stream == 1.0:
        return x + weight * branch
    return stream * x + weight * branch
