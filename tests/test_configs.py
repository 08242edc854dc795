"""Every experiment config composes, names its paper table cell exactly, and builds its model (tiny size)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from hydra.errors import MissingConfigException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from hopfield_attention.backbones.build import build_model
from hopfield_attention.train import CONFIG_DIR, SOURCE_CHECKOUT, check_config

from support.train import EXPERIMENTS, TINY_MODEL, compose_run, composed_experiment

PAPER_NUMBERS = yaml.safe_load((SOURCE_CHECKOUT / "results" / "paper_numbers.yaml").read_text())
PAPER_CELLS = {
    (table, cell["dataset"], cell["row"], cell["column"])
    for table, spec in PAPER_NUMBERS["tables"].items()
    for cell in spec["cells"]
}
OWN_TABLES = yaml.safe_load((SOURCE_CHECKOUT / "results" / "own_tables.yaml").read_text())["tables"]
OWN_CELLS = {  # the quickstart and the laptop-scale claims (make paper-small)
    (table, cell["dataset"], cell["row"], cell["column"])
    for table, spec in OWN_TABLES.items()
    for cell in spec["cells"]
}


def paper_cell(cfg) -> tuple:
    return (cfg.paper.table, cfg.paper.dataset, cfg.paper.row, cfg.paper.column)


def test_one_experiment_per_paper_cell():
    cells = [paper_cell(composed_experiment(name)) for name in EXPERIMENTS]
    assert len(cells) == len(set(cells)), "two experiments claim the same table cell"
    assert set(cells) == PAPER_CELLS | OWN_CELLS


def test_names_lead_to_table_and_row():
    for name in EXPERIMENTS:
        cfg = composed_experiment(name)
        assert cfg.experiment == name
        table = cfg.paper.table
        # t<table>_ for the paper's tables; quickstart_ and laptop_ (laptop-lm, laptop-depth, ...) for our own
        assert name.startswith(f"{table.split('-')[0]}_" if table in OWN_TABLES else f"t{table}_"), name


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_builds_its_model_at_tiny_size(name):
    full = composed_experiment(name)
    cfg = compose_run(name, [f"model={TINY_MODEL[full.model._target_.rsplit('.', 1)[-1]]}"], "/tmp/unused")
    OmegaConf.resolve(cfg)
    if cfg.task != "linear_probe":  # a probe also needs its pretrained checkpoint (tested below)
        check_config(cfg)
    # What the recipe and experiment set beyond the size survives the override (Table 7: depth, no skips).
    for key in ("skip_connections", "patch_size") + (("depth",) if name.startswith("t7_") else ()):
        assert cfg.model.get(key) == full.model.get(key)
    data = instantiate(cfg.data)  # the recipe's data keys are ones the datamodule takes
    if full.model._target_.rsplit(".", 1)[-1] == "vit":
        dims = {"num_classes": data.num_classes, "image_size": data.image_size}
        inputs = torch.randn(2, 3, data.image_size, data.image_size)
    else:
        dims = {"vocab_size": 64}
        inputs = torch.randint(0, 64, (2, 16))
    model = build_model(cfg.model, cfg.attention, **dims)
    variant = model.hopfield_attention
    assert variant.name == cfg.attention.name
    if variant.name == "mha":
        assert (variant.alpha, variant.alpha_prime) == (cfg.attention.alpha, cfg.attention.alpha_prime)
    assert model.hopfield_skip_connections == cfg.model.skip_connections
    with torch.no_grad():
        out = model(inputs) if full.model._target_.rsplit(".", 1)[-1] == "vit" else model(input_ids=inputs).logits
    assert torch.isfinite(out).all()


def test_paper_settings_reach_the_config():
    cfg = compose_run("t6a_vit_tiny_cifar100_ap0.2", [], "/tmp/unused")
    assert (cfg.attention.alpha, cfg.attention.alpha_prime) == (0.5, 0.2)
    cfg = compose_run("t1_gpt2_small_wikitext103_mha_a0.5", [], "/tmp/unused")
    assert (cfg.attention.alpha, cfg.attention.alpha_prime) == (0.5, 0.5)  # alpha' follows alpha
    cfg = compose_run("t7_vit_noskip_depth4_cifar10_mha", [], "/tmp/unused")
    assert (cfg.model.depth, cfg.model.skip_connections, cfg.attention.alpha_prime) == (4, False, 0.5)
    cfg = compose_run("t3_vit_large_cifar100_softmax", [], "/tmp/unused")
    assert (cfg.model.name, cfg.data.name, cfg.attention.name) == ("vit_large", "cifar100", "softmax")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["attention.name=sigmoid"], "attention must be one of"),
        (["attention=mha", "attention.alpha=1.5"], "alpha must be a number in [0, 1]"),
        (["attention=mha", "attention.alpha_prime=-0.1"], "alpha_prime must be a number in [0, 1]"),
        (["model._target_=hopfield_attention.backbones.build.bert"], "cannot be imported"),
        (["+model.n_inner=64"], "unknown keys ['n_inner']"),
        (["task=translation"], "task must be one of"),
        (["ckpt_path=/nonexistent/last.ckpt"], "is not a file"),
    ],
)
def test_bad_values_fail_before_training(overrides, message):
    cfg = compose_run("quickstart_softmax", overrides, "/tmp/unused")
    with pytest.raises(ValueError) as error:
        check_config(cfg)
    assert message in str(error.value)


def test_linear_probe_needs_its_pretrained_checkpoint():
    cfg = compose_run("t5_vit_base_linprobe_food101_mha_a0.5", ["pretrained_ckpt=null"], "/tmp/unused")
    with pytest.raises(ValueError, match="pretrained_ckpt"):
        check_config(cfg)


def test_unknown_group_option_names_the_choices():
    with pytest.raises(MissingConfigException, match="gpt2_small"):
        compose_run("quickstart_softmax", ["model=gpt5"], "/tmp/unused")


def test_config_dir_is_the_repository_configs():
    # an editable install reads the checkout's configs in place (a wheel's: tests/test_packaging.py)
    assert CONFIG_DIR == SOURCE_CHECKOUT / "configs" and (CONFIG_DIR / "train.yaml").is_file()
    assert Path(SOURCE_CHECKOUT / "pyproject.toml").is_file()


def test_wandb_logger_config_instantiates_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose_run("t3_vit_tiny_cifar100_mha_a0.5", ["logger=wandb"], tmp_path)
    OmegaConf.resolve(cfg)
    assert cfg.logger.wandb.group == "t3_vit_tiny_cifar100_mha_a0.5"
    assert list(cfg.logger.wandb.tags) == ["table-3", "mha", "vit_tiny", "cifar100"]
    loggers = [instantiate(entry) for entry in cfg.logger.values()]
    assert [type(logger).__name__ for logger in loggers] == ["HistoryCSVLogger", "WandbLogger"]


@pytest.mark.parametrize(
    ("override", "key", "expected"),
    [
        ("trainer=ddp", "trainer.strategy", "ddp"),
        ("trainer=gpu", "trainer.precision", "bf16-mixed"),
        ("trainer=cpu", "trainer.accelerator", "cpu"),
        ("debug=limit", "trainer.max_steps", 20),
        ("debug=overfit", "trainer.overfit_batches", 4),
        ("debug=fast_dev_run", "trainer.fast_dev_run", True),
        ("logger=tensorboard", "logger.tensorboard.name", "tensorboard"),
        ("callbacks=early_stopping", "callbacks.early_stopping.monitor", "val/loss"),
        ("callbacks=analysis", "callbacks.analysis.every_n_validations", 1),
        ("attention=realformer", "attention.name", "realformer"),
    ],
)
def test_group_options_compose_over_an_experiment(override, key, expected):
    cfg = compose_run("t3_vit_tiny_cifar10_mha_a0.5", [override], "/tmp/unused")
    assert OmegaConf.select(cfg, key) == expected


def test_tensorboard_logger_writes_event_files(tmp_path):
    cfg = compose_run("t3_vit_tiny_cifar100_mha_a0.5", ["logger=tensorboard"], tmp_path)
    OmegaConf.resolve(cfg)
    loggers = [instantiate(entry) for entry in cfg.logger.values()]
    assert [type(logger).__name__ for logger in loggers] == ["HistoryCSVLogger", "TensorBoardLogger"]
    loggers[1].log_metrics({"train/loss": 1.5}, step=1)
    loggers[1].finalize("success")
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_analysis_callbacks_instantiate_with_the_defaults(tmp_path):
    cfg = compose_run("t3_vit_tiny_cifar100_mha_a0.5", ["callbacks=analysis"], tmp_path)
    OmegaConf.resolve(cfg)
    names = sorted(type(instantiate(entry)).__name__ for entry in cfg.callbacks.values() if entry is not None)
    assert "RankCollapseCallback" in names and "ModelCheckpoint" in names
