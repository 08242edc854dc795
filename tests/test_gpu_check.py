"""scripts/gpu_check.py end to end in its --dry-run form (tiny shapes on the CPU): every section runs and passes,
and the JSON holds what a GPU session reads (equality of every implementation, kernels, bench rows, one step)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import test_attention_paths
import test_backbones_implementations

from hopfield_attention.attention.paths import IMPLEMENTATION_CHOICES

from support.data import write_shakespeare_fixture
from support.train import compose_run, data_overrides

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
SCRIPT = SCRIPTS / "gpu_check.py"
sys.path.insert(0, str(SCRIPTS))

import gpu_check as gpu_check_module  # noqa: E402
from attention_bench import equality  # noqa: E402

OTHERS = {name for name in IMPLEMENTATION_CHOICES if name != "explicit"}


def gpu_check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """One --dry-run (a minute or so), shared by the slow tests below."""
    tmp = tmp_path_factory.mktemp("gpu_check")
    data = data_overrides(write_shakespeare_fixture(tmp / "data"))  # a small corpus: the training step in seconds
    out = tmp / "check.json"
    done = gpu_check("--dry-run", "--out", str(out), "--train-args", *data)
    return done, json.loads(out.read_text())


@pytest.mark.slow
def test_dry_run_passes_every_section(dry_run):
    done, report = dry_run
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert report["dry_run"] and report["passed"]
    assert list(report["sections"]) == ["equality", "kernels", "bench", "train"]
    assert all(section["passed"] and section["seconds"] > 0 for section in report["sections"].values())
    assert "all passed" in done.stdout


@pytest.mark.slow
def test_dry_run_compares_every_implementation_in_both_dtypes(dry_run):
    rows = dry_run[1]["sections"]["equality"]["rows"]
    checks = {"layer", "chain", "deep-chain", "model"}
    seen = {(r["check"], r["dtype"], r["variant"], r["implementation"]) for r in rows}
    dtypes, variants = ("float32", "bfloat16"), ("mha", "realformer")
    expected = {(c, d, v, i) for c in checks for d in dtypes for v in variants for i in OTHERS}
    assert seen == expected
    models = {r["setting"] for r in rows if r["check"] == "model"}
    assert models == {"GPT2LMHeadModel", "LlamaForCausalLM", "VisionTransformer"}  # every registered family
    assert all(r["passed"] and r["max_relative_error"] < 0.05 for r in rows)


@pytest.mark.slow
def test_dry_run_reads_the_kernels_off_the_profiler(dry_run):
    rows = dry_run[1]["sections"]["kernels"]["rows"]
    stacked = [r for r in rows if r["implementation"] == "stacked"]
    assert {r["depth"] for r in stacked} == {1, 2, 3} and {r["dtype"] for r in stacked} == {"float32", "bfloat16"}
    for row in stacked:  # the CPU flash kernel (v padded to the stacked width), never the math fallback
        assert row["forward"] == row["backward"] == ["flash (CPU)"], row
    fused = [r for r in rows if r["implementation"] == "fused"]
    assert all(r["forward"] == ["flash (CPU)"] and r["backward"] == [] for r in fused)  # its own backward node


@pytest.mark.slow
def test_dry_run_benchmarks_and_trains(dry_run):
    report = dry_run[1]["sections"]
    bench = report["bench"]
    assert bench["settings"]["dtype"] == "bfloat16"
    cases = {(r["case"], r["method"]) for r in bench["results"]}
    assert {m for c, m in cases if c == "layer"} == {"softmax", *(f"mha-{i}" for i in OTHERS), "mha-explicit"}
    for case in ("gpt2-small", "gpt2-medium", "vit-base"):
        assert {m for c, m in cases if c == case} == {"softmax"} | {f"{v}-{i}" for v in ("mha", "realformer")
                                                                   for i in IMPLEMENTATION_CHOICES}  # fmt: skip
    assert bench["crossover"]["per_case"] and bench["crossover"]["recommended_max_width"] is not None
    train = report["train"]
    assert train["returncode"] == 0 and train["status"] == "finished" and len(train["train_loss"]) == 2
    assert "trainer=cpu" in train["command"] and train["switches"] == []  # the GPU switches are for the GPU


def test_the_gpu_training_step_is_the_entry_point_with_the_switches_on(tmp_path):
    command = gpu_check_module.train_command(False, gpu_check_module.GPU_SWITCHES, ["data.batch_size=4"], tmp_path)
    assert command[:3] == [sys.executable, "-m", "hopfield_attention.train"]
    assert "trainer=gpu" in command and "trainer.max_steps=2" in command and command[-1] == "data.batch_size=4"
    assert set(gpu_check_module.GPU_SWITCHES) <= set(command) and gpu_check_module.GPU_SWITCHES  # never silently empty
    # They are real keys of the training config, each switched on.
    cfg = compose_run(gpu_check_module.TRAIN_EXPERIMENT, list(gpu_check_module.GPU_SWITCHES), tmp_path)
    assert cfg.speed.compile and cfg.speed.activation_checkpointing and cfg.speed.tf32
    assert cfg.speed.throughput_window == 2


def test_tolerances_are_the_tests():
    assert equality.FP32_TOL == test_attention_paths.FP32_TOL == test_backbones_implementations.TOL
    assert equality.BF16_TOL == test_attention_paths.BF16_TOL
    assert equality.CHAIN_GRAD_TOL == dict(rtol=1e-4, atol=1e-4)  # test_paths_equal_through_three_layers
    shapes = [(module.B, module.H, module.T, module.D) for module in (equality, test_attention_paths)]
    assert shapes[0] == shapes[1]


def test_without_a_gpu_the_full_check_refuses_to_start(tmp_path):
    if __import__("torch").cuda.is_available():
        pytest.skip("a GPU is present: the full check would run")
    done = gpu_check("--out", str(tmp_path / "x.json"))
    assert done.returncode == 2 and "no CUDA device here" in done.stderr and "--dry-run" in done.stderr
    assert not (tmp_path / "x.json").exists()
