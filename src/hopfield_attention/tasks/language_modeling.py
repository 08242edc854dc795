"""Causal language modelling: next-token cross-entropy, perplexity over whole splits."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Task
from .flops import causal_lm_flops_per_sequence
from .metrics import TokenNLL


class LanguageModelingTask(Task):
    """Batches are {"input_ids": (B, T)} fixed-length blocks; the model predicts token t+1 from tokens <= t."""

    def __init__(self, cfg, attention=None, *, vocab_size: int):
        super().__init__(cfg, attention, vocab_size=vocab_size)
        self.val_nll = TokenNLL()
        self.test_nll = TokenNLL()
        # one sequence, which Lightning's model summary runs to count its FLOPs (and sizes) per layer
        self.example_input_array = torch.zeros(1, int(self.cfg.data.block_size), dtype=torch.long)

    def samples_in(self, batch) -> int:
        return batch["input_ids"].shape[0]

    def tokens_in(self, batch) -> int:
        return batch["input_ids"].numel()

    def flops_per_sample(self) -> int:
        return causal_lm_flops_per_sequence(
            self.model, int(self.cfg.data.block_size), batch=int(self.cfg.data.batch_size)
        )

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids).logits  # (B, T, V)

    def summed_nll(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, int]:
        """(sum of the token NLLs, number of predicted tokens) of a batch of blocks."""
        logits = self.model(input_ids=input_ids).logits  # (B, T, V); the model alone, so a bare model can be scored
        predicted = logits[:, :-1].flatten(0, 1).float()  # (B * (T-1), V)
        targets = input_ids[:, 1:].flatten()  # (B * (T-1),)
        return F.cross_entropy(predicted, targets, reduction="sum"), targets.numel()

    def training_step(self, batch, batch_idx):
        nll, tokens = self.summed_nll(batch["input_ids"])
        loss = nll / tokens
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        self.val_nll.update(*self.summed_nll(batch["input_ids"]))

    def test_step(self, batch, batch_idx):
        self.test_nll.update(*self.summed_nll(batch["input_ids"]))

    def on_validation_epoch_end(self):
        self._log_split("val", self.val_nll)

    def on_test_epoch_end(self):
        self._log_split("test", self.test_nll)

    def _log_split(self, split: str, metric: TokenNLL) -> None:
        mean_nll = metric.compute().float()  # synchronised over processes
        metric.reset()
        self.log(f"{split}/loss", mean_nll, prog_bar=split == "val")
        self.log(f"{split}/ppl", torch.exp(mean_nll), prog_bar=split == "val")
