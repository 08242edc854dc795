"""Sweeps submitted to the real local SLURM cluster through hydra/launcher=slurm (submitit job arrays).

Needs `slurm/local-cluster.sh start` (root); skipped with the reason otherwise. Each job trains a 2 x 32
ViT for a few steps on the CIFAR-100 fixture, so a job takes seconds after its imports.
"""

import time

import pytest

from support.data import write_cifar100_fixture
from support.slurm import (
    REPOSITORY_DIR,
    cluster_nodes,
    cluster_or_skip,
    prepare_data,
    read_json,
    run_sweep,
    sweep_dirs,
    tiny_vit_overrides,
)

pytestmark = pytest.mark.slurm

EXPERIMENT = "t3_vit_tiny_cifar100_mha_a0.5"


@pytest.fixture(scope="module", autouse=True)
def local_cluster():
    cluster_or_skip()


@pytest.fixture
def cifar100(tmp_path):
    return write_cifar100_fixture(tmp_path / "cifar100")


def test_two_point_sweep_runs_as_one_job_array_and_both_jobs_write_their_results(tmp_path, cifar100):
    log_dir = tmp_path / "logs"
    overrides = ["sweep=t6a_alpha_prime", "attention.alpha_prime=0.0,0.2", *tiny_vit_overrides(cifar100, log_dir, 2)]

    result = run_sweep(overrides, cwd=REPOSITORY_DIR, timeout=300)

    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    jobs = sweep_dirs(log_dir, "t6a_alpha_prime")
    records = [read_json(job / "results.json") for job in jobs]
    assert [record["status"] for record in records] == ["finished", "finished"]
    assert [record["global_step"] for record in records] == [2, 2]
    # Each point is recorded as the paper cell it reproduces.
    assert [record["paper"]["row"] for record in records] == ["alpha'=0.0", "alpha'=0.2"]
    experiments = [record["experiment"] for record in records]
    assert experiments == ["t6a_vit_tiny_cifar100_ap0.0", "t6a_vit_tiny_cifar100_ap0.2"]
    assert [record["attention"]["alpha_prime"] for record in records] == [0.0, 0.2]
    # Both ran as SLURM jobs of one array, whose script asks for Lightning's requeue signal.
    (script,) = (jobs[0].parent / ".submitit").glob("*/*_submission.sh")
    text = script.read_text()
    assert "#SBATCH --array=0-1%2" in text
    assert "#SBATCH --signal=USR1@120" in text
    assert "#SBATCH --ntasks-per-node=1" in text
    job_ids = [record["hardware"]["slurm_job_id"] for record in records]
    assert None not in job_ids and len(set(job_ids)) == 2

    # Submitted again, the array finds both jobs finished in their directories and trains nothing.
    checkpoints = {job: (job / "checkpoints" / "last.ckpt").stat().st_mtime_ns for job in jobs}
    again = run_sweep(overrides, cwd=REPOSITORY_DIR, timeout=300)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-4000:]
    assert sweep_dirs(log_dir, "t6a_alpha_prime") == jobs
    assert {job: (job / "checkpoints" / "last.ckpt").stat().st_mtime_ns for job in jobs} == checkpoints
    assert [read_json(job / "results.json")["attempts"] for job in jobs] == [1, 1]
    logs = [path.read_text() for path in (jobs[0].parent / ".submitit").glob("*/*_log.err")]
    assert sum("finished already" in text for text in logs) == 2


def test_two_process_ddp_job_trains_and_both_ranks_agree_on_the_step_count(tmp_path, cifar100):
    log_dir, steps_dir = tmp_path / "logs", tmp_path / "steps"
    overrides = [
        f"experiment={EXPERIMENT}",
        *tiny_vit_overrides(cifar100, log_dir, 4),
        # One SLURM task per device: the launcher asks for 2 tasks because trainer.devices is 2.
        "trainer.devices=2",
        "+trainer.strategy=ddp",
        "+callbacks.steps._target_=support.slurm.StepRecorder",
        f"+callbacks.steps.directory={steps_dir}",
    ]
    prepare_data(EXPERIMENT, overrides[1:], tmp_path / "prepare")  # a DDP run does not prepare data itself

    result = run_sweep(overrides, cwd=REPOSITORY_DIR, timeout=300)

    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    ranks = [read_json(steps_dir / f"rank{rank}-restart0.json") for rank in (0, 1)]
    assert [rank["world_size"] for rank in ranks] == [2, 2]
    assert ranks[0]["end_step"] == ranks[1]["end_step"] == 4
    assert ranks[0]["slurm_job_id"] == ranks[1]["slurm_job_id"]  # two tasks of one job, not two jobs
    (job,) = sweep_dirs(log_dir, EXPERIMENT)
    record = read_json(job / "results.json")
    assert (record["status"], record["global_step"]) == ("finished", 4)
    (script,) = (job.parent / ".submitit").glob("*/*_submission.sh")
    assert "#SBATCH --ntasks-per-node=2" in script.read_text()


@pytest.mark.parametrize(
    ("request_override", "slurm_message"),
    [
        ("+slurm.cpus_per_task=4096", "More processors requested than permitted"),
        ("trainer.num_nodes={one_node_more}", "Node count specification invalid"),
    ],
    ids=["more-cpus-than-the-node", "more-nodes-than-the-cluster"],
)
def test_request_the_cluster_cannot_satisfy_fails_at_submission_with_slurms_message(
    tmp_path, cifar100, request_override, slurm_message
):
    request_override = request_override.format(one_node_more=len(cluster_nodes()) + 1)
    overrides = [f"experiment={EXPERIMENT}", *tiny_vit_overrides(cifar100, tmp_path / "logs", 2), request_override]

    started = time.monotonic()
    result = run_sweep(overrides, cwd=REPOSITORY_DIR, timeout=120)

    assert result.returncode != 0
    assert slurm_message in result.stdout + result.stderr
    assert time.monotonic() - started < 90  # refused at submission, not left pending


def test_failing_job_leaves_a_failed_record_and_fails_the_sweep(tmp_path, cifar100):
    log_dir = tmp_path / "logs"
    broken = {**cifar100, "local_path": str(tmp_path / "no_such_dataset")}
    overrides = [f"experiment={EXPERIMENT}", *tiny_vit_overrides(broken, log_dir, 2)]

    result = run_sweep(overrides, cwd=REPOSITORY_DIR, timeout=300)

    assert result.returncode != 0
    (job,) = sweep_dirs(log_dir, EXPERIMENT)
    record = read_json(job / "results.json")
    assert record["status"] == "failed"
    assert "no_such_dataset" in str(record["error"])
