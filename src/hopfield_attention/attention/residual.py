"""The skip connections of a converted block (paper.md, pinned choices).

Attention sub-block: x + attn(norm(x)) when alpha is None (the backbone's own), alpha x + (1 - alpha)
attn(norm(x)) otherwise. The MLP sub-block keeps x + mlp(norm(x)). Without skip connections (paper Table 7)
both sub-blocks return their branch alone, and alpha, the weight of a skip that no longer exists, plays no
part.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Residual:
    alpha: float | None = None
    skip_connections: bool = True

    def attention(self, x: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        if not self.skip_connections:
            return branch
        if self.alpha is None:
            return x + branch
        return self.alpha * x + (1.0 - self.alpha) * branch

    def mlp(self, x: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        return x + branch if self.skip_connections else branch

    @property
    def is_stock(self) -> bool:
        return self.alpha is None and self.skip_connections
