"""The speed switches (tasks/speed.py): compile and activation checkpointing train to the same losses on the CPU;
TF32 and fused AdamW reach torch only on CUDA; the throughput monitor logs samples, tokens and FLOPs per second."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf
from torch._dynamo.utils import (
    counters,  # dynamo's own statistics: whether it compiled anything
)

from hopfield_attention.backbones.build import build_model
from hopfield_attention.tasks import load_task
from hopfield_attention.tasks.flops import causal_lm_flops_per_sequence
from hopfield_attention.tasks.optim import build_optimization, use_fused
from hopfield_attention.tasks.speed import (
    enable_activation_checkpointing,
    matmul_precision,
    speed_settings,
    uses_cuda,
)
from hopfield_attention.train import CONFIG_DIR, train

from support.data import write_cifar100_fixture, write_wikitext_fixture
from support.train import CPU, compose_run, data_overrides, logged

LANGUAGE = "t1_gpt2_small_wikitext103_mha_a0.5"
VISION = "t3_vit_tiny_cifar100_mha_a0.5"
STEPS = ["trainer.max_steps=4", "trainer.limit_train_batches=4", "trainer.val_check_interval=null",
         "trainer.check_val_every_n_epoch=1", "trainer.limit_val_batches=1", "test=false"]  # fmt: skip
# Compiled through dynamo and AOTAutograd (what graph breaks and the backward graph depend on); inductor's C++
# code generation takes minutes on two shared cores and is left to the GPU check.
COMPILE = ["speed.compile=true", "+speed.compile_options.backend=aot_eager"]
TOLERANCE = dict(rel=1e-4, abs=1e-5)


@pytest.fixture(scope="module")
def wikitext(tmp_path_factory):
    return data_overrides(write_wikitext_fixture(tmp_path_factory.mktemp("wikitext")))


@pytest.fixture(scope="module")
def cifar100(tmp_path_factory):
    return data_overrides(write_cifar100_fixture(tmp_path_factory.mktemp("cifar100"), train=16))


def losses(experiment: str, model: str, data: list[str], run_dir, *switches: str) -> list[float]:
    train(compose_run(experiment, [f"model={model}", *CPU, *STEPS, *data, *switches], run_dir))
    return [value for _, value in logged(run_dir, "train/loss")]


@pytest.mark.parametrize("switches", [COMPILE, ["speed.activation_checkpointing=true"], [*COMPILE, "speed.activation_checkpointing=true"]],
                         ids=["compile", "checkpointing", "both"])  # fmt: skip
def test_switches_train_a_language_model_to_the_same_losses(switches, wikitext, tmp_path):
    plain = losses(LANGUAGE, "gpt2_tiny", wikitext, tmp_path / "plain")
    torch._dynamo.reset()
    counters.clear()
    switched = losses(LANGUAGE, "gpt2_tiny", wikitext, tmp_path / "switched", *switches)
    assert (counters["stats"]["unique_graphs"] > 0) == (COMPILE[0] in switches)  # dynamo compiled the backbone
    assert len(plain) == 4 and all(math.isfinite(v) for v in plain)
    assert switched == pytest.approx(plain, **TOLERANCE)
    assert plain[-1] != plain[0]  # the weights moved: later losses depend on earlier steps' gradients


def test_switches_train_a_vit_to_the_same_losses(cifar100, tmp_path):
    plain = losses(VISION, "vit_tiny_test", cifar100, tmp_path / "plain")
    switched = losses(
        VISION, "vit_tiny_test", cifar100, tmp_path / "switched", *COMPILE, "speed.activation_checkpointing=true"
    )
    assert len(plain) == 4
    assert switched == pytest.approx(plain, **TOLERANCE)


@pytest.mark.parametrize("name", ["gpt2_tiny", "llama_tiny", "vit_tiny_test"])
def test_checkpointing_recomputes_each_block_in_backward(name):
    dims = {"num_classes": 10, "image_size": 32} if name.startswith("vit") else {"vocab_size": 64}
    inputs = torch.randn(2, 3, 32, 32) if name.startswith("vit") else torch.randint(0, 64, (2, 16))
    for checkpointing, calls_per_step in ((False, 1), (True, 2)):
        model = build_model(OmegaConf.load(CONFIG_DIR / "model" / f"{name}.yaml"), {"name": "mha"}, **dims).train()
        if checkpointing:
            enable_activation_checkpointing(model)
        blocks = (
            model.blocks
            if name.startswith("vit")
            else model.base_model.layers
            if name.startswith("llama")
            else model.transformer.h
        )
        calls = []  # a pre-hook: the recompute stops early, once the last saved tensor is rebuilt
        blocks[0].mlp.register_forward_pre_hook(lambda *_: calls.append(1))
        out = model(inputs) if name.startswith("vit") else model(input_ids=inputs).logits
        out.float().sum().backward()
        assert len(calls) == calls_per_step  # forward, and with checkpointing once more in backward


def test_tf32_reaches_torch_only_on_cuda(wikitext, tmp_path):
    assert (matmul_precision(True, on_cuda=True), matmul_precision(False, on_cuda=True)) == ("high", "highest")
    assert matmul_precision(True, on_cuda=False) is None  # the CPU's precision is never changed
    assert (uses_cuda("gpu"), uses_cuda("cuda"), uses_cuda("cpu")) == (True, True, False)
    assert uses_cuda("auto") == torch.cuda.is_available()
    assert speed_settings(compose_run(LANGUAGE, [], "/tmp/unused"))["tf32"] is True  # on by default
    before = torch.get_float32_matmul_precision()
    train(compose_run(LANGUAGE, ["model=gpt2_tiny", *CPU, *STEPS, "trainer.max_steps=1", *wikitext], tmp_path))
    assert torch.get_float32_matmul_precision() == before


def test_fused_adamw_only_on_cuda_unless_forced():
    assert use_fused(None, torch.device("cuda", 0)) is True
    assert use_fused(None, torch.device("cpu")) is False
    assert (use_fused(True, torch.device("cpu")), use_fused(False, torch.device("cuda"))) == (True, False)
    optim = compose_run(LANGUAGE, [], "/tmp/unused").optim
    assert optim.optimizer.fused is None  # the recipes leave it to the device
    model = torch.nn.Linear(4, 4)
    assert build_optimization(model, optim, 10)["optimizer"].defaults["fused"] is False
    optim.optimizer.fused = True  # torch's fused kernel also runs on the CPU: the flag reaches AdamW
    assert build_optimization(model, optim, 10)["optimizer"].defaults["fused"] is True


def test_bad_switches_are_refused():
    for key, value, message in (("compile", "yes", "speed.compile must be true or false"),
                                ("throughput_window", 1, "speed.throughput_window must be an integer >= 2")):  # fmt: skip
        cfg = compose_run(LANGUAGE, [f"speed.{key}={value}"], "/tmp/unused")
        with pytest.raises(ValueError, match=message):
            speed_settings(cfg)
    with pytest.raises(ValueError, match=r"speed: unknown key\(s\) \['fast'\]"):
        speed_settings(compose_run(LANGUAGE, ["+speed.fast=true"], "/tmp/unused"))


def test_throughput_of_a_language_model_in_sequences_tokens_and_flops(wikitext, tmp_path):
    train(compose_run(LANGUAGE, ["model=gpt2_tiny", *CPU, *STEPS, *wikitext, "speed.throughput_window=2"], tmp_path))
    samples = dict(logged_by_step(tmp_path, "train/device/samples_per_sec"))
    tokens = dict(logged_by_step(tmp_path, "train/device/items_per_sec"))
    flops = dict(logged_by_step(tmp_path, "train/device/flops_per_sec"))
    assert samples and samples.keys() == tokens.keys() == flops.keys()
    module, cfg = load_task(tmp_path / "checkpoints" / "last.ckpt")
    # the count itself is held to torch's FlopCounterMode in tests/test_flops.py
    per_sequence = causal_lm_flops_per_sequence(module.model, int(cfg.data.block_size), batch=int(cfg.data.batch_size))
    assert per_sequence == module.flops_per_sample()
    for step, rate in samples.items():
        assert tokens[step] == pytest.approx(rate * cfg.data.block_size, rel=1e-6)
        assert flops[step] == pytest.approx(rate * per_sequence, rel=1e-6)
    header = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert "mfu" not in header  # no peak FLOPs known for a CPU
    assert "validate/" not in header  # validation is timed, not logged at its own batch counter


def test_throughput_of_a_vit_in_images(cifar100, tmp_path):
    train(compose_run(VISION, ["model=vit_tiny_test", *CPU, *STEPS, *cifar100, "speed.throughput_window=2"], tmp_path))
    images = logged_by_step(tmp_path, "train/device/samples_per_sec")
    assert images and all(rate > 0 for _, rate in images)
    assert "items_per_sec" not in (tmp_path / "csv" / "metrics.csv").read_text().splitlines()[0]


def test_no_throughput_monitor_when_switched_off(wikitext, tmp_path):
    train(compose_run(LANGUAGE, ["model=gpt2_tiny", *CPU, *STEPS, *wikitext, "speed.throughput_window=null"], tmp_path))
    assert "samples_per_sec" not in (tmp_path / "csv" / "metrics.csv").read_text().splitlines()[0]


def logged_by_step(run_dir, key: str) -> list[tuple[int, float]]:
    import csv

    with open(run_dir / "csv" / "metrics.csv", newline="", encoding="utf-8") as handle:
        return [(int(row["step"]), float(row[key])) for row in csv.DictReader(handle) if row.get(key)]
