"""Two-process DDP (gloo, CPU) through the real command lines: shards, exact resume, exact evaluation,
and unprepared data refused at once.

Each run is `python -m hopfield_attention.train ... trainer.devices=2 +trainer.strategy=ddp`; Lightning starts
the second process itself. support.data.BatchRecorder writes what each rank trained on.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from hopfield_attention.data.loaders import EpochShuffle
from hopfield_attention.eval import evaluate
from hopfield_attention.tasks import load_task
from hopfield_attention.train import CONFIG_DIR, train

from support.data import write_wikitext_fixture
from support.train import CPU, compose_run, data_overrides, logged

pytestmark = pytest.mark.slow

TESTS_DIR = Path(__file__).resolve().parent
EXPERIMENT = "t1_gpt2_small_wikitext103_mha_a0.5"
SEED = 1234  # configs/train.yaml
# Epochs of 4 batches of 4 blocks per rank, validation (and last.ckpt) every 2; dropout on. 6 steps in all.
RUN = ["model=gpt2_tiny", "model.dropout=0.1", "trainer.limit_train_batches=4", "trainer.accumulate_grad_batches=1",
       "trainer.val_check_interval=2", "trainer.check_val_every_n_epoch=1", "optim.scheduler.total_steps=6",
       "optim.scheduler.warmup_steps=2", "test=false", *CPU]  # fmt: skip
DDP = ["trainer.devices=2", "+trainer.strategy=ddp"]
EVAL_CPU = ["trainer=cpu", "+trainer.enable_progress_bar=false", "+trainer.enable_model_summary=false"]
TOLERANCE = 1e-5  # relative: the same per-token losses summed in another grouping


def environment() -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS_DIR), env.get("PYTHONPATH")]))  # BatchRecorder
    return env


def run_module(module: str, *overrides: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", f"hopfield_attention.{module}", *overrides]
    return subprocess.run(command, cwd=cwd, env=environment(), capture_output=True, text=True, timeout=timeout)


def train_ddp(data: list[str], run_dir: Path, *extra: str) -> None:
    recorder = [
        "+callbacks.batches._target_=support.data.BatchRecorder",
        f"+callbacks.batches.directory={run_dir / 'batches'}",
    ]
    result = run_module(
        "train",
        f"experiment={EXPERIMENT}",
        *RUN,
        *DDP,
        *data,
        *recorder,
        f"hydra.run.dir={run_dir}",
        *extra,
        cwd=run_dir.parent,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]


def read_batches(run_dir: Path) -> list[dict]:
    return [json.loads((run_dir / "batches" / f"rank{rank}.json").read_text()) for rank in (0, 1)]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> list[str]:
    """The WikiText fixture with its token cache built by `prepare` (a DDP run refuses to build it)."""
    root = tmp_path_factory.mktemp("wikitext")
    data = data_overrides(write_wikitext_fixture(root))
    result = run_module(
        "prepare", f"experiment={EXPERIMENT}", "model=gpt2_tiny", *data, f"paths.log_dir={root / 'logs'}", cwd=root
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return data


def test_unprepared_data_stops_both_ranks_at_once_with_the_prepare_command(tmp_path):
    data = data_overrides(write_wikitext_fixture(tmp_path / "data"))
    started = time.monotonic()
    result = run_module("train", f"experiment={EXPERIMENT}", *RUN, *DDP, *data, "trainer.max_steps=2",
                        f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, timeout=300)  # fmt: skip
    seconds = time.monotonic() - started
    assert result.returncode == 1
    assert result.stderr.count("python -m hopfield_attention.prepare experiment=<name>") == 2  # each rank says it
    assert "a distributed run (2 processes)" in result.stderr and "Traceback" not in result.stderr
    assert seconds < 240, f"took {seconds:.0f} s"  # two interpreters' imports on a shared machine; no waiting
    assert not list((tmp_path / "data" / "token_cache").rglob("*.bin"))  # nothing was tokenized


def test_each_rank_trains_on_its_own_shard_and_a_resumed_run_logs_the_same_losses(prepared, tmp_path):
    train_ddp(prepared, tmp_path / "full", "trainer.max_steps=6")
    train_ddp(prepared, tmp_path / "first_part", "trainer.max_steps=2")
    last = tmp_path / "first_part" / "checkpoints" / "last.ckpt"
    train_ddp(prepared, tmp_path / "resumed", "trainer.max_steps=6", f"ckpt_path={last}")

    # Our sampler, not Lightning's wrapper: rank r reads every other index of the epoch's seeded order from r.
    full = read_batches(tmp_path / "full")
    assert [(r["sampler"], r["rank"], r["num_replicas"], r["world_size"]) for r in full] == [
        ("EpochShuffle", 0, 2, 2),
        ("EpochShuffle", 1, 2, 2),
    ]
    cfg = compose_run(EXPERIMENT, [*RUN, *prepared], tmp_path / "unused")
    blocks = instantiate(cfg.data)
    blocks.setup()
    train_blocks = blocks.blocks["train"]
    for rank, record in enumerate(full):
        assert [(b["epoch"], b["batch_idx"]) for b in record["batches"]] == [
            (0, 0),
            (0, 1),
            (0, 2),
            (0, 3),
            (1, 0),
            (1, 1),
        ]
        for batch in record["batches"]:
            order = EpochShuffle(train_blocks, lambda: 0, seed=SEED, num_replicas=2, rank=rank).order(
                SEED, batch["epoch"]
            )
            indices = order[4 * batch["batch_idx"] : 4 * batch["batch_idx"] + 4]
            expected = torch.stack([train_blocks[i]["input_ids"] for i in indices]).tolist()
            assert batch["input_ids"] == expected
    first_epoch = [[tuple(block) for b in r["batches"][:4] for block in b["input_ids"]] for r in full]
    assert not set(first_epoch[0]) & set(first_epoch[1])  # the two shards are disjoint

    # The resumed run continues each rank's shard mid-epoch, then draws the next epoch as the full run did.
    for rank, record in enumerate(read_batches(tmp_path / "resumed")):
        assert record["batches"] == full[rank]["batches"][2:]
    losses = logged(tmp_path / "full", "train/loss")
    assert len(losses) == 6 and logged(tmp_path / "first_part", "train/loss") == losses[:2]
    assert logged(tmp_path / "resumed", "train/loss") == losses[2:]  # bit-identical
    assert logged(tmp_path / "resumed", "val/loss") == logged(tmp_path / "full", "val/loss")[1:]
    # Both ranks' gradients went into the weights: the same weights at the end as the uninterrupted run.
    weights = [
        torch.load(tmp_path / run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
        for run in ("full", "resumed")
    ]
    for name, value in weights[0].items():
        torch.testing.assert_close(weights[1][name], value, rtol=0, atol=0, msg=name)


def test_whole_split_perplexity_on_two_processes_is_that_of_one(prepared, tmp_path):
    # A checkpoint to evaluate: two steps of one process.
    train(compose_run(EXPERIMENT, [*RUN, *prepared, "trainer.max_steps=2"], tmp_path / "run"))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"

    # The validation split has an odd number of blocks: a padding sampler would count one block twice.
    module, run_cfg = load_task(ckpt)
    datamodule = instantiate(run_cfg.data)
    datamodule.setup()
    validation = datamodule.blocks["validation"]
    assert len(validation) % 2 == 1
    module.eval()
    with torch.no_grad():
        per_block = [module.summed_nll(validation[i]["input_ids"][None]) for i in range(len(validation))]
    nll, tokens = sum(float(n) for n, _ in per_block), sum(t for _, t in per_block)
    exact = math.exp(nll / tokens)
    padded = math.exp((nll + float(per_block[0][0])) / (tokens + per_block[0][1]))  # DistributedSampler's padding
    assert abs(padded - exact) > 10 * TOLERANCE * exact  # the check below would see the padding

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        one = evaluate(
            compose("eval", [f"ckpt_path={ckpt}", "split=val", *EVAL_CPU, f"paths.output_dir={tmp_path / 'eval1'}"])
        )
    result = run_module(
        "eval", f"ckpt_path={ckpt}", "split=val", *EVAL_CPU, *DDP, f"hydra.run.dir={tmp_path / 'eval2'}", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-4000:]
    two = json.loads((tmp_path / "eval2" / "eval.json").read_text())["metrics"]
    assert one["val/ppl"] == pytest.approx(exact, rel=TOLERANCE)
    assert two["val/ppl"] == pytest.approx(exact, rel=TOLERANCE)  # float sums in another order, nothing more
