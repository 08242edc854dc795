"""A job that reaches its time limit checkpoints, is requeued and resumes (local SLURM cluster).

SLURM's --time counts whole minutes, so waiting for a real limit would take minutes. Instead the test
does what SLURM does `signal_delay_s` before the limit: the launcher's script asks for
`--signal=USR1@<delay>`, which makes slurmctld send SIGUSR1 to the job's steps; `scancel --signal=USR1
<job>` sends the same signal to the same processes now. Everything after the signal is real: Lightning's
SLURMEnvironment (the one owner of the signal) writes hpc_ckpt_1.ckpt and calls `scontrol requeue`,
SLURM ends and restarts the job (about 20 s with the local cluster's AuthInfo=cred_expire=10), and
the restarted job resumes in the same run directory. About a minute in all.
"""

import subprocess

import pytest
import torch

from support.data import write_cifar100_fixture
from support.slurm import (
    REPOSITORY_DIR,
    assert_resumed_where_it_stopped,
    cluster_or_skip,
    job_environment,
    read_json,
    sweep_dirs,
    tiny_vit_overrides,
    train_command,
    wait_for,
)

pytestmark = pytest.mark.slurm

EXPERIMENT = "t3_vit_tiny_cifar100_mha_a0.5"
MAX_STEPS = 40


@pytest.fixture(scope="module", autouse=True)
def local_cluster():
    cluster_or_skip()


def _progress(path):
    try:
        return read_json(path) if path.is_file() else None
    except ValueError:
        return None


def test_job_signalled_before_its_time_limit_checkpoints_requeues_and_resumes_from_the_checkpoint(tmp_path):
    # 80 images in batches of 4: 20 steps per epoch, so no epoch-end last.ckpt lands between signal and requeue.
    data = write_cifar100_fixture(tmp_path / "cifar100", train=80)
    log_dir, steps_dir = tmp_path / "logs", tmp_path / "steps"
    overrides = [
        f"experiment={EXPERIMENT}",
        *tiny_vit_overrides(data, log_dir, MAX_STEPS),
        "+callbacks.steps._target_=support.slurm.StepRecorder",
        f"+callbacks.steps.directory={steps_dir}",
        "+callbacks.steps.seconds_per_step=0.25",  # about 10 s of training: time to signal it midway
    ]
    output = (tmp_path / "submitter.log").open("w")
    submitter = subprocess.Popen(
        train_command(*overrides), cwd=REPOSITORY_DIR, env=job_environment(), stdout=output, stderr=subprocess.STDOUT
    )
    try:
        first = wait_for(
            lambda: (p := _progress(steps_dir / "rank0-restart0.json")) and p["step"] >= 3 and p,
            timeout=180,
            what="the job to train 3 steps",
        )
        # What slurmctld does signal_delay_s before the time limit: SIGUSR1 to the job's steps.
        subprocess.run(["scancel", "--signal=USR1", first["slurm_job_id"]], check=True, timeout=30)
        submitter.wait(timeout=240)
    finally:
        if submitter.poll() is None:
            submitter.kill()
        output.close()

    assert submitter.returncode == 0, (tmp_path / "submitter.log").read_text()[-4000:]
    (run_dir,) = sweep_dirs(log_dir, EXPERIMENT)
    checkpoint = run_dir / "hpc_ckpt_1.ckpt"
    assert checkpoint.is_file(), "Lightning did not checkpoint at the signal"
    signalled_step = torch.load(checkpoint, map_location="cpu", weights_only=False)["global_step"]
    assert 3 <= signalled_step < MAX_STEPS

    restarted = read_json(steps_dir / "rank0-restart1.json")  # SLURM_RESTART_COUNT=1: the requeued run
    assert restarted["slurm_job_id"] == first["slurm_job_id"]
    assert_resumed_where_it_stopped(read_json(steps_dir / "rank0-restart0.json"), restarted, run_dir, signalled_step)
    assert restarted["end_step"] == MAX_STEPS
    record = read_json(run_dir / "results.json")
    assert (record["status"], record["global_step"]) == ("finished", MAX_STEPS)
