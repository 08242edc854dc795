"""slurm/train.sbatch, the plain sbatch template, runs one training on the local SLURM cluster."""

import subprocess
import sys

import pytest

from support.data import write_cifar100_fixture
from support.slurm import (
    REPOSITORY_DIR,
    cluster_or_skip,
    job_environment,
    read_json,
    tiny_vit_overrides,
    wait_for,
)

pytestmark = pytest.mark.slurm

EXPERIMENT = "t3_vit_tiny_cifar100_mha_a0.5"


@pytest.fixture(scope="module", autouse=True)
def local_cluster():
    cluster_or_skip()


def _job_gone(job_id: str) -> bool:
    queue = subprocess.run(["squeue", "--noheader", f"--jobs={job_id}"], capture_output=True, text=True)
    return queue.returncode != 0 or not queue.stdout.strip()


def test_sbatch_template_trains_in_a_run_dir_named_after_the_job(tmp_path):
    data = write_cifar100_fixture(tmp_path / "cifar100")
    log_dir = tmp_path / "logs"
    env = {**job_environment(), "PYTHON": sys.executable}  # the template's `srun $PYTHON -m ...`
    # The template asks for a GPU; the local cluster has none: a CPU run as the template's header says.
    submit = [
        "sbatch",
        "--parsable",
        "--gpus-per-node=0",
        "--cpus-per-task=1",
        "--time=5",
        f"--output={tmp_path}/slurm-%j.out",
        "slurm/train.sbatch",
        f"experiment={EXPERIMENT}",
        *tiny_vit_overrides(data, log_dir, 2),
    ]

    job_id = subprocess.run(submit, cwd=REPOSITORY_DIR, env=env, capture_output=True, text=True, check=True).stdout
    job_id = job_id.strip().split(";")[0]
    wait_for(lambda: _job_gone(job_id), timeout=240, interval=1, what=f"job {job_id} to end")

    run_dir = log_dir / "runs" / EXPERIMENT / f"slurm-{job_id}"
    log = (tmp_path / f"slurm-{job_id}.out").read_text()
    assert f"job {job_id}, restart 0, 1 node(s) x 1 task(s)" in log
    record = read_json(run_dir / "results.json")
    assert (record["status"], record["global_step"]) == ("finished", 2)
