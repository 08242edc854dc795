"""The rank-collapse measures during training: a Lightning callback that measures the first `n_batches`
validation batches of every `every_n_validations`-th validation run and logs, per layer L (from 1),
analysis/layer{L}/cos_mean, analysis/layer{L}/eff_rank and analysis/layer{L}/attn_entropy.

Config (configs/callbacks): {_target_: hopfield_attention.analysis.callback.RankCollapseCallback,
every_n_validations: 1, n_batches: 2, attention_entropy: true}.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

from .meter import RankCollapseMeter
from .probe import RankCollapseProbe, rebuild_from_task


class RankCollapseCallback(Callback):
    def __init__(self, every_n_validations: int = 1, n_batches: int = 2, attention_entropy: bool = True):
        for name, value in (("every_n_validations", every_n_validations), ("n_batches", n_batches)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.every_n_validations = every_n_validations
        self.n_batches = n_batches
        self.attention_entropy = attention_entropy
        self.validations = 0  # finished validation runs, sanity check excluded
        self._probe: RankCollapseProbe | None = None
        self._meter: RankCollapseMeter | None = None

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or self.validations % self.every_n_validations:
            return
        # Built per validation run: a softmax model is measured through a converted copy of today's weights.
        self._probe = RankCollapseProbe(
            backbone(pl_module), attention=self.attention_entropy, rebuild=rebuild_from_task(pl_module)
        )
        self._meter = RankCollapseMeter(samples_per_batch=0)

    def on_validation_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        if self._probe is not None and dataloader_idx == 0 and batch_idx < self.n_batches:
            self._probe.measure(batch, self._meter)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.validations += 1
        if self._probe is None:
            return
        for layer in self._meter.compute()["layers"]:
            prefix = f"analysis/layer{layer['layer']}"
            pl_module.log(f"{prefix}/cos_mean", layer["cos_mean"], sync_dist=True)
            pl_module.log(f"{prefix}/eff_rank", layer["eff_rank"], sync_dist=True)
            if layer["attn_entropy"] is not None:
                pl_module.log(f"{prefix}/attn_entropy", layer["attn_entropy"], sync_dist=True)
        self._probe = self._meter = None  # frees a softmax model's copy

    def state_dict(self) -> dict:
        return {"validations": self.validations}

    def load_state_dict(self, state_dict: dict) -> None:
        self.validations = state_dict["validations"]


def backbone(pl_module: LightningModule):
    """The task's transformer (`.model`, the contract of hopfield_attention.tasks)."""
    model = getattr(pl_module, "model", None)
    if model is None:
        raise TypeError(f"{type(pl_module).__name__} has no `.model` backbone to analyse")
    return model
