"""Two-node DDP jobs on the local two-node SLURM cluster (`slurm/local-cluster.sh start --nodes 2`).

Each node of that cluster is a slurmd in its own network namespace with its own hostname and address on a
private bridge. A sweep with `trainer.num_nodes=2 trainer.devices=1` asks SLURM for two nodes with one
task each; the two DDP ranks (gloo, CPU) find each other only over the bridge: rank 1 reaches rank 0 at
MASTER_ADDR, which Lightning's SLURMEnvironment takes from the first node of SLURM_NODELIST. StepRecorder
records from inside each rank its steps, world size and the node it runs on. Skipped with the reason
when the cluster has fewer than two nodes.
"""

import socket
import subprocess

import pytest
import torch

from support.data import write_cifar100_fixture
from support.slurm import (
    REPOSITORY_DIR,
    assert_resumed_where_it_stopped,
    cluster_nodes,
    cluster_or_skip,
    job_environment,
    prepare_data,
    read_json,
    run_sweep,
    sweep_dirs,
    tiny_vit_overrides,
    train_command,
    wait_for,
)

pytestmark = pytest.mark.slurm

EXPERIMENT = "t3_vit_tiny_cifar100_mha_a0.5"
TWO_NODES_ONE_DEVICE_EACH = ["trainer.num_nodes=2", "trainer.devices=1", "+trainer.strategy=ddp"]
RANKS = (0, 1)
MAX_STEPS = 20  # of the requeue test


@pytest.fixture(scope="module", autouse=True)
def two_node_cluster():
    cluster_or_skip(nodes=2)


def _step_recorder(steps_dir, seconds_per_step: float = 0.0) -> list[str]:
    return [
        "+callbacks.steps._target_=support.slurm.StepRecorder",
        f"+callbacks.steps.directory={steps_dir}",
        f"+callbacks.steps.seconds_per_step={seconds_per_step}",
    ]


def _assert_ranks_ran_on_two_nodes(ranks: list[dict]) -> None:
    """One rank per node, each where SLURM put it, and rank 1 connected to rank 0's node."""
    hostnames = [rank["hostname"] for rank in ranks]
    assert hostnames == [rank["slurm_node"] for rank in ranks]  # the node's own name is its hostname
    assert len(set(hostnames)) == 2 and set(hostnames) <= set(cluster_nodes())
    # Each name resolves, from this machine too, to the address its node has inside its own namespace.
    assert [rank["address"] for rank in ranks] == [socket.gethostbyname(hostname) for hostname in hostnames]
    assert len({rank["address"] for rank in ranks}) == 2
    assert len({rank["network_namespace"] for rank in ranks}) == 2
    assert [rank["master_addr"] for rank in ranks] == [hostnames[0], hostnames[0]]
    assert [rank["world_size"] for rank in ranks] == [2, 2]
    assert [rank["backend"] for rank in ranks] == ["gloo", "gloo"]
    assert ranks[0]["slurm_job_id"] == ranks[1]["slurm_job_id"]  # two tasks of one job, not two jobs


def _assert_recorded_once_by_rank_zero(log_dir, run_dir, rank_zero: dict, global_step: int, attempts: int) -> None:
    assert sorted(log_dir.rglob("results.json")) == [run_dir / "results.json"]
    record = read_json(run_dir / "results.json")
    assert (record["status"], record["global_step"], record["attempts"]) == ("finished", global_step, attempts)
    assert record["hardware"]["host"] == rank_zero["hostname"]  # written by rank 0 alone


def test_two_node_ddp_job_trains_with_one_rank_per_node_at_the_same_global_step(tmp_path):
    data = write_cifar100_fixture(tmp_path / "cifar100")
    log_dir, steps_dir = tmp_path / "logs", tmp_path / "steps"
    overrides = [
        f"experiment={EXPERIMENT}",
        *tiny_vit_overrides(data, log_dir, 4),
        *TWO_NODES_ONE_DEVICE_EACH,
        *_step_recorder(steps_dir),
    ]
    prepare_data(EXPERIMENT, overrides, tmp_path / "prepare")  # a DDP run does not prepare data itself

    result = run_sweep(overrides, cwd=REPOSITORY_DIR, timeout=300)

    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    ranks = [read_json(steps_dir / f"rank{rank}-restart0.json") for rank in RANKS]
    _assert_ranks_ran_on_two_nodes(ranks)
    assert ranks[0]["end_step"] == ranks[1]["end_step"] == 4
    (run_dir,) = sweep_dirs(log_dir, EXPERIMENT)
    _assert_recorded_once_by_rank_zero(log_dir, run_dir, ranks[0], global_step=4, attempts=1)
    (script,) = (run_dir.parent / ".submitit").glob("*/*_submission.sh")
    text = script.read_text()
    assert "#SBATCH --nodes=2" in text
    assert "#SBATCH --ntasks-per-node=1" in text


def _progress(path):
    try:
        return read_json(path) if path.is_file() else None
    except ValueError:
        return None


def test_two_node_job_signalled_before_its_time_limit_resumes_from_its_checkpoint_on_both_nodes(tmp_path):
    # 160 images in batches of 4 over 2 ranks: one epoch is MAX_STEPS steps, so no epoch-end last.ckpt lands
    # between the signal and the requeue. The signal is the one SLURM sends before the limit (test_slurm_requeue).
    data = write_cifar100_fixture(tmp_path / "cifar100", train=4 * 2 * MAX_STEPS)
    log_dir, steps_dir = tmp_path / "logs", tmp_path / "steps"
    overrides = [
        f"experiment={EXPERIMENT}",
        *tiny_vit_overrides(data, log_dir, MAX_STEPS),
        *TWO_NODES_ONE_DEVICE_EACH,
        *_step_recorder(steps_dir, seconds_per_step=0.25),  # 5 s of training or more: time to signal it midway
    ]
    prepare_data(EXPERIMENT, overrides, tmp_path / "prepare")
    output = (tmp_path / "submitter.log").open("w")
    submitter = subprocess.Popen(
        train_command(*overrides), cwd=REPOSITORY_DIR, env=job_environment(), stdout=output, stderr=subprocess.STDOUT
    )
    try:
        first = [
            wait_for(
                lambda rank=rank: (p := _progress(steps_dir / f"rank{rank}-restart0.json")) and p["step"] >= 3 and p,
                timeout=180,
                what=f"rank {rank} to train 3 steps",
            )
            for rank in RANKS
        ]
        # What slurmctld does signal_delay_s before the time limit: SIGUSR1 to the job's steps, on every node.
        subprocess.run(["scancel", "--signal=USR1", first[0]["slurm_job_id"]], check=True, timeout=30)
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

    restarted = [read_json(steps_dir / f"rank{rank}-restart1.json") for rank in RANKS]  # the requeued job
    _assert_ranks_ran_on_two_nodes(restarted)
    for number, rank in zip(RANKS, restarted):
        assert rank["slurm_job_id"] == first[0]["slurm_job_id"]
        stopped = read_json(steps_dir / f"rank{number}-restart0.json")
        assert_resumed_where_it_stopped(stopped, rank, run_dir, signalled_step)  # not step 0, on both nodes
        assert rank["end_step"] == MAX_STEPS
    _assert_recorded_once_by_rank_zero(log_dir, run_dir, restarted[0], global_step=MAX_STEPS, attempts=2)
