"""The analysis on real tiny models: probe vs direct computation, and the Lightning callback."""

import csv
import math
from pathlib import Path

import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader
from transformers import GPT2Config, GPT2LMHeadModel

from hopfield_attention import convert_model
from hopfield_attention.analysis.callback import RankCollapseCallback
from hopfield_attention.analysis.measures import (
    attention_entropy,
    pairwise_cosine,
    sequence_effective_ranks,
)
from hopfield_attention.analysis.meter import RankCollapseMeter
from hopfield_attention.analysis.probe import RankCollapseProbe

VOCAB, T = 64, 12
REPO = Path(__file__).resolve().parents[1]


def tiny_gpt2(seed=0):
    torch.manual_seed(seed)
    config = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=VOCAB, n_positions=T, bos_token_id=0,
                        eos_token_id=0)  # fmt: skip
    return GPT2LMHeadModel(config).eval()


def token_batches(n=4, batch_size=2):
    gen = torch.Generator().manual_seed(1)
    return [{"input_ids": torch.randint(0, VOCAB, (batch_size, T), generator=gen)} for _ in range(n)]


def test_softmax_probe_matches_the_stock_model():
    model = tiny_gpt2()
    batch = token_batches(1)[0]
    meter = RankCollapseMeter()
    RankCollapseProbe(model).measure(batch, meter)
    assert not hasattr(model, "hopfield_attention")  # the original stays the stock model

    model.set_attn_implementation("eager")
    out = model(**batch, output_hidden_states=True, output_attentions=True)
    for layer in meter.compute()["layers"]:
        n = layer["layer"]
        block_output = out.hidden_states[n] if n < 2 else None  # the last entry has ln_f applied
        if block_output is not None:
            assert layer["cos_mean"] == pytest.approx(pairwise_cosine(block_output).mean().item(), rel=1e-5)
            assert layer["eff_rank"] == pytest.approx(sequence_effective_ranks(block_output).mean().item(), rel=1e-5)
        assert layer["attn_entropy"] == pytest.approx(attention_entropy(out.attentions[n - 1]).mean().item(), rel=1e-5)


def test_mha_model_is_measured_directly_with_entropy_bounded_by_log_n():
    model = convert_model(tiny_gpt2(), "mha", alpha=0.5)
    probe = RankCollapseProbe(model)
    assert probe.model is model and probe.attention
    meter = RankCollapseMeter()
    for batch in token_batches(2):
        probe.measure(batch, meter)
    for layer in meter.compute()["layers"]:
        # causal rows: row i attends to i + 1 keys, so its entropy is at most log(i + 1)
        assert 0 < layer["attn_entropy"] <= sum(math.log(i + 1) for i in range(T)) / T + 1e-6
        assert layer["n_pairs"] == 2 * 2 * T * (T - 1) // 2


class TinyLM(LightningModule):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def training_step(self, batch, batch_idx):
        return self.model(input_ids=batch["input_ids"], labels=batch["input_ids"]).loss

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", self.model(input_ids=batch["input_ids"], labels=batch["input_ids"]).loss)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def loader():
    return DataLoader(token_batches(4), batch_size=None)


@pytest.mark.parametrize("attention", ["softmax", "mha"])
def test_callback_logs_per_layer_measures_of_the_first_batches(tmp_path, attention):
    model = tiny_gpt2() if attention == "softmax" else convert_model(tiny_gpt2(), "mha", alpha=0.5)
    module = TinyLM(model)
    callback = RankCollapseCallback(every_n_validations=2, n_batches=2)
    trainer = Trainer(max_epochs=3, accelerator="cpu", logger=CSVLogger(tmp_path), callbacks=[callback],
                      enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                      num_sanity_val_steps=1)  # fmt: skip
    trainer.fit(module, train_dataloaders=loader(), val_dataloaders=loader())

    with open(next(tmp_path.rglob("metrics.csv"))) as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("analysis/layer1/cos_mean")]
    assert [int(r["epoch"]) for r in rows] == [0, 2]  # validations 0 and 2 of 0, 1, 2
    assert callback.validations == 3
    # The last measurement used the final weights: recompute it directly on the first two batches.
    meter = RankCollapseMeter()
    probe = RankCollapseProbe(module.model)
    for batch in token_batches(2):
        probe.measure(batch, meter)
    for layer in meter.compute()["layers"]:
        for name in ("cos_mean", "eff_rank", "attn_entropy"):
            assert float(rows[-1][f"analysis/layer{layer['layer']}/{name}"]) == pytest.approx(layer[name], rel=1e-5)
    if attention == "softmax":
        assert not hasattr(module.model, "hopfield_attention")


def test_callback_refuses_bad_intervals():
    with pytest.raises(ValueError, match="every_n_validations"):
        RankCollapseCallback(every_n_validations=0)
    with pytest.raises(ValueError, match="n_batches"):
        RankCollapseCallback(n_batches=1.5)


def test_softmax_without_skip_connections_is_rebuilt_for_entropy():
    from omegaconf import OmegaConf

    from hopfield_attention.analysis.probe import rebuild_from_task
    from hopfield_attention.tasks import ImageClassificationTask

    model_cfg = OmegaConf.load(REPO / "configs" / "model" / "vit_tiny_test.yaml")
    model_cfg.skip_connections = False
    cfg = {"task": "image_classification", "model": OmegaConf.to_container(model_cfg), "attention": {"name": "softmax"},
           "loss": {"label_smoothing": 0.0}}  # fmt: skip
    torch.manual_seed(0)
    task = ImageClassificationTask(cfg, num_classes=10, image_size=16).eval()
    images = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))

    without = RankCollapseMeter()
    RankCollapseProbe(task.model).measure((images, None), without)  # cannot convert again: no entropy
    assert all(layer["attn_entropy"] is None for layer in without.compute()["layers"])

    rebuild = rebuild_from_task(task)
    torch.testing.assert_close(rebuild()(images), task.model(images))  # the twin is the same function
    with_entropy = RankCollapseMeter()
    RankCollapseProbe(task.model, rebuild=rebuild).measure((images, None), with_entropy)
    for a, b in zip(without.compute()["layers"], with_entropy.compute()["layers"]):
        assert b["cos_mean"] == pytest.approx(a["cos_mean"], rel=1e-5) and b["attn_entropy"] > 0
