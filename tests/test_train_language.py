"""A few real training steps of the language experiments (Tables 1 and 2) on tiny local copies of their data."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from hopfield_attention.eval import evaluate
from hopfield_attention.tasks import load_task
from hopfield_attention.train import CONFIG_DIR, train

from support.data import write_cnn_dailymail_fixture, write_wikitext_fixture
from support.train import CPU, compose_run, data_overrides, logged

STEPS = ["trainer.max_steps=3", "trainer.limit_train_batches=3", "trainer.val_check_interval=null", "speed.throughput_window=2",
         "trainer.check_val_every_n_epoch=1"]  # fmt: skip


@pytest.fixture(scope="module")
def wikitext(tmp_path_factory):
    return write_wikitext_fixture(tmp_path_factory.mktemp("wikitext"))


def whole_split_perplexity(module, datamodule, loader) -> float:
    """exp(total NLL / total predicted tokens) over every block of the split, computed directly."""
    nll, tokens = 0.0, 0
    with torch.no_grad():
        for batch in loader:
            ids = batch["input_ids"]  # (B, T)
            logits = module.model(input_ids=ids).logits  # (B, T, V)
            nll += F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten(), reduction="sum").item()
            tokens += ids[:, 1:].numel()
    return math.exp(nll / tokens)


@pytest.mark.parametrize("experiment", ["t1_gpt2_small_wikitext103_softmax", "t1_gpt2_small_wikitext103_mha_a0.5"])
def test_gpt2_trains_and_reports_whole_split_perplexity(experiment, wikitext, tmp_path):
    cfg = compose_run(experiment, ["model=gpt2_tiny", *CPU, *STEPS, *data_overrides(wikitext)], tmp_path)
    metrics = train(cfg)

    losses = [value for _, value in logged(tmp_path, "train/loss")]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    assert logged(tmp_path, "train/device/items_per_sec")  # throughput (tokens/s) is measured
    assert metrics["val/ppl"] == pytest.approx(math.exp(metrics["val/loss"]), rel=1e-5)
    assert {"test/loss", "test/ppl"} <= set(metrics)

    # The run directory holds the resolved config and both checkpoints; the checkpoint rebuilds the run.
    saved = OmegaConf.load(tmp_path / ".hydra" / "config.yaml")
    assert saved.attention == cfg.attention and saved.experiment == experiment
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert list((tmp_path / "checkpoints").glob("best-*.ckpt"))
    module, run_cfg = load_task(tmp_path / "checkpoints" / "last.ckpt")
    assert run_cfg.attention.name == module.model.hopfield_attention.name == cfg.attention.name
    if cfg.attention.name == "mha":
        assert module.model.hopfield_attention.alpha_prime == 0.5

    # Perplexity is over the whole validation split, not a mean of per-batch perplexities.
    datamodule = instantiate(run_cfg.data)
    datamodule.setup("fit")
    expected = whole_split_perplexity(module, datamodule, datamodule.val_dataloader())
    assert metrics["val/ppl"] == pytest.approx(expected, rel=1e-4)

    # The eval entry rebuilds everything from the best checkpoint and reproduces the run's test metrics.
    (best,) = (tmp_path / "checkpoints").glob("best-*.ckpt")
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        eval_cfg = compose("eval", [f"ckpt_path={best}", f"paths.output_dir={tmp_path / 'eval'}", "trainer=cpu"])
    evaluated = evaluate(eval_cfg)
    assert evaluated["test/ppl"] == pytest.approx(metrics["test/ppl"], rel=1e-6)
    assert (tmp_path / "eval" / "eval.json").is_file()


def test_llama_mha_trains_on_cnn_dailymail(tmp_path):
    fixture = write_cnn_dailymail_fixture(tmp_path / "data")
    cfg = compose_run(
        "t2_llama_cnn_dailymail_mha_a0.5",
        ["model=llama_tiny", *CPU, *STEPS, *data_overrides(fixture)],
        tmp_path / "run",
    )
    metrics = train(cfg)
    losses = [value for _, value in logged(tmp_path / "run", "train/loss")]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    assert math.isfinite(metrics["val/ppl"]) and math.isfinite(metrics["test/ppl"])
