"""`python -m hopfield_attention.prepare`: the training config's data, built once and reported; nothing trained."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hydra.utils import instantiate

from hopfield_attention.data.token_cache import read_token_file
from hopfield_attention.prepare import prepare

from support.data import write_cifar100_fixture, write_wikitext_fixture
from support.slurm import (
    REPOSITORY_DIR,
    cluster_or_skip,
    job_environment,
    read_json,
    tiny_vit_overrides,
    wait_for,
)
from support.train import compose_run, data_overrides

EXPERIMENT = "t1_gpt2_small_wikitext103_softmax"
VIT_EXPERIMENT = "t3_vit_tiny_cifar100_mha_a0.5"


def run_prepare(*overrides: str, cwd) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "hopfield_attention.prepare",
        f"experiment={EXPERIMENT}",
        "model=gpt2_tiny",
        *overrides,
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_prepare_builds_the_token_cache_of_the_training_config_once(tmp_path):
    overrides = [*data_overrides(write_wikitext_fixture(tmp_path / "data")), f"paths.log_dir={tmp_path / 'logs'}"]
    first = run_prepare(*overrides, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    for stage in ("train", "validation", "test"):
        assert f"wikitext103 {stage}: built " in first.stdout
    again = run_prepare(*overrides, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "wikitext103 train: found " in again.stdout and "built" not in again.stdout

    # What prepare built is exactly what the training run reads: the same composed config, the same files.
    cfg = compose_run(EXPERIMENT, ["model=gpt2_tiny", *overrides], tmp_path / "run")
    datamodule = instantiate(cfg.data)
    assert datamodule.missing_stages() == []
    train_file = read_token_file(datamodule.token_file_path("train"))
    assert str(train_file.path) in first.stdout and f"{train_file.num_tokens:,} tokens" in first.stdout
    # Its log is not a run: nothing under logs/runs/, one folder per preparation under logs/prepare/<experiment>/.
    assert not (tmp_path / "logs" / "runs").exists()
    log_dirs = list((tmp_path / "logs" / "prepare" / EXPERIMENT).iterdir())
    assert len(log_dirs) == 2 and all((d / ".hydra" / "config.yaml").exists() for d in log_dirs)


def test_prepare_converts_and_checks_a_vision_dataset(tmp_path):
    fixture = write_cifar100_fixture(tmp_path / "data")
    cfg = compose_run(VIT_EXPERIMENT, ["model=vit_tiny_test", *data_overrides(fixture)], tmp_path / "run")
    first = prepare(cfg)
    assert first["status"] == "built"
    assert {stage: info["images"] for stage, info in first["stages"].items()} == {
        "train": 12,
        "validation": 6,
        "test": 6,
    }
    assert all(info["shape"] == [3, 32, 32] for info in first["stages"].values())
    assert all(folder.startswith(str(tmp_path / "data" / "hf_cache")) for folder in first["stages"]["train"]["cache"])
    assert prepare(cfg)["status"] == "found"


@pytest.mark.slurm
def test_prepare_job_then_a_two_task_ddp_job_after_it_on_slurm(tmp_path):
    """slurm/prepare.sbatch on one CPU task, then slurm/train.sbatch with --dependency=afterok: as the README says."""
    cluster_or_skip()
    log_dir = tmp_path / "logs"
    overrides = [
        f"experiment={VIT_EXPERIMENT}",
        *tiny_vit_overrides(write_cifar100_fixture(tmp_path / "cifar100"), log_dir, 2),
    ]
    env = {**job_environment(), "PYTHON": sys.executable}

    def sbatch(*arguments: str) -> str:
        submitted = subprocess.run(
            ["sbatch", "--parsable", *arguments],
            cwd=REPOSITORY_DIR,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        return submitted.stdout.strip().split(";")[0]

    # The local cluster has no GPU and little memory: the scripts' requests are narrowed on the command line.
    prep = sbatch(
        "--cpus-per-task=1",
        "--mem=1G",
        "--time=5",
        f"--output={tmp_path}/prepare-%j.out",
        "slurm/prepare.sbatch",
        *overrides,
    )
    train_job = sbatch(
        f"--dependency=afterok:{prep}", "--gpus-per-node=0", "--ntasks-per-node=2", "--cpus-per-task=1", "--time=5",
        f"--output={tmp_path}/train-%j.out", "slurm/train.sbatch", *overrides, "+trainer.strategy=ddp",
    )  # fmt: skip
    wait_for(lambda: _job_gone(train_job), timeout=400, interval=1, what=f"job {train_job} to end")

    prepare_log = (tmp_path / f"prepare-{prep}.out").read_text()
    assert "cifar100: Arrow copy built" in prepare_log and "cifar100 train: 12 images" in prepare_log
    train_log = (tmp_path / f"train-{train_job}.out").read_text()
    assert f"job {train_job}, restart 0, 1 node(s) x 2 task(s)" in train_log
    record = read_json(log_dir / "runs" / VIT_EXPERIMENT / f"slurm-{train_job}" / "results.json")
    assert (record["status"], record["global_step"]) == ("finished", 2), train_log[-3000:]


def _job_gone(job_id: str) -> bool:
    queue = subprocess.run(["squeue", "--noheader", f"--jobs={job_id}"], capture_output=True, text=True)
    return queue.returncode != 0 or not queue.stdout.strip()
