"""A recipe's global batch, schedule and validation cadence are the same on any number of devices and nodes.

Composition only (the configs as `train` composes them, resolved on this machine), and one real two-process DDP
run (gloo, CPU) that reaches the global batch by accumulation.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from omegaconf.errors import InterpolationResolutionError

from hopfield_attention.data.loaders import EpochShuffle
from hopfield_attention.runs.definition import definition

from support.data import write_wikitext_fixture
from support.train import compose_run, data_overrides, logged

TESTS_DIR = Path(__file__).resolve().parent
TABLE_1 = "t1_gpt2_small_wikitext103_softmax"
TABLE_3 = "t3_vit_tiny_cifar100_mha_a0.5"
# (overrides, processes): one GPU (the recipes' trainer=gpu), 2 and 8 GPUs of one node, 2 nodes of 8.
SHAPES = [
    ([], 1),
    (["trainer=ddp", "trainer.devices=2"], 2),
    (["trainer=ddp"], 8),
    (["trainer=ddp", "trainer.num_nodes=2"], 16),
]
CIFAR_TRAIN_IMAGES = 50_000


def resolved(experiment: str, overrides: list[str]):
    cfg = compose_run(experiment, overrides, "/tmp/unused")
    OmegaConf.resolve(cfg)
    return cfg


def per_step(cfg) -> int:
    """Samples per optimizer step as the trainer makes them."""
    return cfg.data.batch_size * cfg.trainer.accumulate_grad_batches * cfg.trainer.devices * cfg.trainer.num_nodes


@pytest.mark.parametrize(("overrides", "processes"), SHAPES)
def test_table_1_trains_the_same_tokens_with_the_same_schedule_on_any_world(overrides, processes):
    cfg = resolved(TABLE_1, overrides)
    assert cfg.trainer.devices * cfg.trainer.num_nodes == processes
    assert per_step(cfg) == cfg.batch.global_size == 64
    assert cfg.data.batch_size <= cfg.batch.per_device == 16
    assert cfg.trainer.max_steps * per_step(cfg) * cfg.data.block_size == 50_000 * 64 * 1024  # 3.3 B tokens
    assert cfg.optim.scheduler.warmup_steps == 2000  # optimizer steps
    # Lightning validates every val_check_interval micro-batches: 1000 optimizer steps, whatever the accumulation.
    assert cfg.trainer.val_check_interval == 1000 * cfg.trainer.accumulate_grad_batches
    assert cfg.trainer.check_val_every_n_epoch is None
    # The run files under the same table cell as the experiment composed as it stands.
    assert definition(cfg) == definition(resolved(TABLE_1, []))


@pytest.mark.parametrize(("overrides", "processes"), SHAPES)
def test_table_3_sees_the_same_images_per_epoch_with_the_same_schedule_on_any_world(overrides, processes):
    cfg = resolved(TABLE_3, overrides)
    assert per_step(cfg) == cfg.batch.global_size == 128
    # Each process reads its shard of every epoch (data/loaders.py) in full micro-batches.
    shard = len(EpochShuffle(range(CIFAR_TRAIN_IMAGES), lambda: 0, seed=0, num_replicas=processes, rank=0))
    micro_batches = shard // cfg.data.batch_size
    steps_per_epoch = math.ceil(micro_batches / cfg.trainer.accumulate_grad_batches)
    assert micro_batches % cfg.trainer.accumulate_grad_batches == 0  # no partial step at the end of an epoch
    assert (steps_per_epoch, steps_per_epoch * per_step(cfg)) == (390, 49_920)
    assert cfg.trainer.max_epochs == 200
    assert cfg.optim.scheduler.warmup_steps == 3900 == 10 * steps_per_epoch  # 10 epochs
    assert (cfg.trainer.check_val_every_n_epoch, cfg.trainer.val_check_interval) == (1, None)  # every epoch
    assert definition(cfg) == definition(resolved(TABLE_3, []))


def test_the_per_device_limit_is_a_memory_choice_that_keeps_the_recipe():
    reference = definition(resolved(TABLE_1, []))
    smaller = resolved(TABLE_1, ["batch.per_device=4"])
    assert (smaller.data.batch_size, smaller.trainer.accumulate_grad_batches) == (4, 16)
    assert definition(smaller) == reference
    by_hand = resolved(TABLE_1, ["trainer=ddp", "trainer.devices=2", "data.batch_size=8"])  # accumulation follows
    assert (by_hand.trainer.accumulate_grad_batches, by_hand.trainer.val_check_interval) == (4, 4000)
    assert definition(by_hand) == reference


def test_a_new_global_batch_is_a_deviation_from_the_table_cell():
    cfg = resolved(TABLE_1, ["batch.global_size=128"])
    assert (cfg.data.batch_size, cfg.trainer.accumulate_grad_batches, cfg.trainer.val_check_interval) == (16, 8, 8000)
    ours, reference = definition(cfg), definition(resolved(TABLE_1, []))
    assert {key for key in ours if ours[key] != reference[key]} == {"global_batch"}
    assert (reference["global_batch"], ours["global_batch"]) == (64, 128)


@pytest.mark.parametrize(
    ("experiment", "overrides", "message"),
    [
        (
            TABLE_1,
            ["trainer=ddp", "trainer.devices=3"],
            "batch.global_size=64 cannot be split evenly over 3 processes "
            "(trainer.devices=3 x trainer.num_nodes=1): use a number of processes that divides it (1, 2, 4, 8, 16, 32, 64)",
        ),
        (
            TABLE_3,
            ["trainer=ddp", "trainer.devices=8", "trainer.num_nodes=32"],
            "batch.global_size=128 cannot be split evenly over 256 processes",
        ),
        (TABLE_1, ["data.batch_size=5"], "data.batch_size=5 does not divide the 64 samples each of the 1 processes"),
        (
            TABLE_1,
            ["trainer.devices=auto"],
            "trainer.devices='auto': a recipe's global batch (batch.global_size) is split",
        ),
    ],
)
def test_a_world_that_cannot_reach_the_global_batch_is_refused_saying_what_to_set(experiment, overrides, message):
    with pytest.raises(InterpolationResolutionError) as error:
        resolved(experiment, overrides)
    assert message in str(error.value)
    assert "\n" not in str(error.value).split("\n    full_key:")[0]  # one line (cli/app.py drops the location)


def test_an_accumulation_set_by_hand_that_misses_the_global_batch_is_refused():
    cfg = resolved(TABLE_1, ["trainer.accumulate_grad_batches=1"])
    with pytest.raises(ValueError, match=r"= 16 samples per optimizer step, but the recipe's global batch is "
                                         r"batch.global_size=64: .* or set batch.global_size=16"):  # fmt: skip
        definition(cfg)


def test_the_recipe_reads_as_what_it_states_in_cfg_job_output():
    text = OmegaConf.to_yaml(compose_run(TABLE_1, [], "/tmp/unused"))  # what `--cfg job` prints
    for line in ("global_size: 64", "per_device: 16", "batch_size: ${ha.batch:per_device}",
                 "accumulate_grad_batches: ${ha.batch:accumulate}", "val_check_interval: ${ha.optimizer_steps:1000}"):  # fmt: skip
        assert line in text


# -- a real two-process run -------------------------------------------------------------------------------------
def run_module(module: str, *overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS_DIR), env.get("PYTHONPATH")]))  # StepRecorder
    command = [sys.executable, "-m", f"hopfield_attention.{module}", *overrides]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_two_processes_accumulate_to_the_recipes_global_batch(tmp_path):
    data = data_overrides(
        {key: value for key, value in write_wikitext_fixture(tmp_path / "data").items() if key != "batch_size"}
    )
    recipe = [f"experiment={TABLE_1}", "model=gpt2_tiny", "batch.global_size=16", "batch.per_device=4", *data]
    prepared = run_module("prepare", *recipe, f"paths.log_dir={tmp_path / 'logs'}", cwd=tmp_path)
    assert prepared.returncode == 0, prepared.stderr[-3000:]

    run_dir = tmp_path / "run"
    result = run_module(
        "train", *recipe, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true",
        "trainer.max_steps=3", "trainer.limit_train_batches=4", "trainer.val_check_interval=${ha.optimizer_steps:2}", "trainer.log_every_n_steps=1",
        "trainer.num_sanity_val_steps=0", "trainer.limit_val_batches=1", "test=false", "callbacks.progress_bar=null",
        "+trainer.enable_progress_bar=false", "+callbacks.steps._target_=support.steps.StepRecorder",
        f"+callbacks.steps.directory={run_dir / 'steps'}", f"hydra.run.dir={run_dir}", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]

    saved = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    assert (saved.data.batch_size, saved.trainer.accumulate_grad_batches, saved.trainer.val_check_interval) == (4, 2, 4)
    for rank in (0, 1):
        record = json.loads((run_dir / "steps" / f"rank{rank}.json").read_text())
        assert (record["world_size"], record["accumulate_grad_batches"]) == (2, 2)
        # Every optimizer step took two micro-batches of 4 on each of the 2 processes: 16 sequences.
        assert record["micro_batches_per_step"] == [[4, 4], [4, 4], [4, 4]]
        assert record["validated_at_steps"] == [2]  # every 2 optimizer steps, not every 2 micro-batches
    assert len(logged(run_dir, "train/loss")) == 3
    results = json.loads((run_dir / "results.json").read_text())
    assert results["cell"]["definition"]["global_batch"] == 16
