"""Runs a backbone on a batch and hands the meter what it needs: the residual stream after every block
(forward hooks on the blocks) and every layer's attention probabilities (record_attention).

record_attention needs a variant with a carried state. A softmax model is measured through a deep copy
converted to mha(alpha=None, alpha_prime=0): H_n = S_n and the backbone's own residual, mathematically the
stock model, so the copy's hidden states are the original's too.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from .meter import RankCollapseMeter

log = logging.getLogger(__name__)

# Where each supported family keeps its blocks: GPT2LMHeadModel, GPT2Model, Llama*ForCausalLM, LlamaModel, timm.
BLOCK_PATHS = ("transformer.h", "h", "model.layers", "layers", "blocks")


def transformer_blocks(model: nn.Module) -> nn.Module:
    """The model's sequence of transformer blocks (nn.ModuleList or timm's nn.Sequential)."""
    for path in BLOCK_PATHS:
        blocks = model
        for name in path.split("."):
            blocks = getattr(blocks, name, None)
        if isinstance(blocks, (nn.ModuleList, nn.Sequential)) and len(blocks):
            return blocks
    raise TypeError(
        f"cannot find the transformer blocks of {type(model).__name__}: expected one of the attributes "
        f"{list(BLOCK_PATHS)} (GPT-2, LLaMA, timm ViT)"
    )


def measurable_model(model: nn.Module, rebuild: Callable[[], nn.Module] | None = None) -> tuple[nn.Module, bool]:
    """(a model whose forward can record attention probabilities, whether it can): the model itself when
    it carries a state; for a softmax model, a converted deep copy. A softmax model without skip
    connections (Table 7) is converted already and cannot be converted again: `rebuild` (see
    `rebuild_from_task`) makes its mha(alpha=None, alpha_prime=0) twin; without it entropy is skipped."""
    from ..backbones import convert_model

    variant = getattr(model, "hopfield_attention", None)
    if variant is not None and variant.carries_state:
        return model, True
    if variant is not None and not getattr(model, "hopfield_skip_connections", True):
        if rebuild is None:
            log.warning("softmax model without skip connections and no way to rebuild it: no attention entropy")
            return model, False
        return rebuild(), True
    stock_equivalent = convert_model(copy.deepcopy(model), "mha", alpha=None, alpha_prime=0.0)
    return stock_equivalent, True


def rebuild_from_task(task: nn.Module) -> Callable[[], nn.Module] | None:
    """For a hopfield_attention task (run config `.cfg`, data sizes in `.hparams`): a function that builds
    its backbone again as mha(alpha=None, alpha_prime=0), same skip connections, with the task's weights."""
    cfg, hparams = getattr(task, "cfg", None), getattr(task, "hparams", None)
    if cfg is None or hparams is None or "model" not in cfg:
        return None

    def rebuild() -> nn.Module:
        from ..backbones.build import build_model

        dims = {key: value for key, value in hparams.items() if key != "cfg"}
        twin = build_model(cfg.model, {"name": "mha", "alpha": None, "alpha_prime": 0.0}, **dims)
        twin.load_state_dict(task.model.state_dict())  # conversion keeps parameter names
        return twin.to(next(task.model.parameters()).device)

    return rebuild


class RankCollapseProbe:
    """Measures batches of one model state into a `RankCollapseMeter`. Build a new probe after the
    weights change: a softmax model's converted copy is taken once, at construction."""

    def __init__(self, model: nn.Module, *, attention: bool = True, rebuild: Callable[[], nn.Module] | None = None):
        self.model, can_record = measurable_model(model, rebuild) if attention else (model, False)
        self.attention = attention and can_record
        self.blocks = transformer_blocks(self.model)

    @torch.no_grad()
    def measure(self, batch: Any, meter: RankCollapseMeter) -> None:
        inputs, mask = split_batch(batch)
        hidden: list[torch.Tensor] = []

        def keep_output(module, args, output):
            hidden.append((output[0] if isinstance(output, tuple) else output).detach())  # (B, T, D)

        handles = [block.register_forward_hook(keep_output) for block in self.blocks]
        was_training = self.model.training
        self.model.eval()
        try:
            if self.attention:
                from ..backbones import record_attention

                with record_attention(self.model) as attentions:
                    self._forward(inputs)
            else:
                attentions = None
                self._forward(inputs)
        finally:
            for handle in handles:
                handle.remove()
            self.model.train(was_training)
        if len(hidden) != len(self.blocks):
            raise RuntimeError(f"expected one output per block ({len(self.blocks)}), got {len(hidden)}")
        meter.update(hidden, attentions, mask)

    def _forward(self, inputs: Any) -> None:
        if isinstance(inputs, Mapping):
            self.model(**inputs)
        else:
            self.model(inputs)


def split_batch(batch: Any) -> tuple[Any, torch.Tensor | None]:
    """(model inputs, padding mask (B, T) or None): language batches are {"input_ids", ["attention_mask"]},
    vision batches (images, labels)."""
    if isinstance(batch, Mapping):
        if "input_ids" not in batch:
            raise ValueError(f"a language batch needs `input_ids`, got keys {sorted(batch)}")
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask") if k in batch}
        return inputs, batch.get("attention_mask")
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0], None
    raise TypeError(f"batch must be a dict with input_ids or an (images, labels) pair, got {type(batch).__name__}")
