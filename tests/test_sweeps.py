"""The paper's grids as sweep configs (configs/sweep/), the SLURM launcher config and config/cluster.py.

Every point of every sweep is composed exactly as `python -m hopfield_attention.train -m sweep=<name>`
composes it (Hydra's own sweeper expands the grid), and must be the paper cell it claims: its `paper`
keys are a cell of results/paper_numbers.yaml, the grid covers its table exactly, and the point equals
the single run of the experiment file it is named after. No cluster needed.
"""

import functools
import os
import re
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf, open_dict

from hopfield_attention.config import cluster, resolvers

REPOSITORY_DIR = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPOSITORY_DIR / "configs"
PAPER = yaml.safe_load((REPOSITORY_DIR / "results" / "paper_numbers.yaml").read_text())["tables"]

# sweep file -> the paper table its default grid covers
TABLE_SWEEPS = {
    "t1_gpt2_wikitext103": "1",
    "t2_llama": "2",
    "t3_vit_cifar": "3",
    "t4_vit_imagenet": "4",
    "t6a_alpha_prime": "6a",
    "t6b_alpha": "6b",
    "t7_depth": "7",
}


@pytest.fixture(scope="module", autouse=True)
def hydra_configs():
    os.environ.setdefault("HOPFIELD_ATTENTION_WORK_DIR", str(REPOSITORY_DIR))
    GlobalHydra.instance().clear()  # another module's Hydra context must not leak in
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        yield


def sweep_points(sweep: str, *extra: str) -> list[list[str]]:
    """The job overrides Hydra's basic sweeper makes of `-m sweep=<sweep> <extra>`."""
    master = compose("train", overrides=[f"sweep={sweep}"], return_hydra_config=True)
    params = [f"{key}={value}" for key, value in master.hydra.sweeper.params.items()] + list(extra)
    parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
    (jobs,) = BasicSweeper.split_arguments(parser.parse_overrides(params), max_batch_size=None)
    return [[f"sweep={sweep}", *job] for job in jobs]


def run_config(overrides: list[str]) -> dict:
    """The composed run config, resolved as train.py resolves it (the run dir is Hydra's, left out)."""
    return _run_config(tuple(overrides))


@functools.cache  # each point is composed once for all the tests that look at it
def _run_config(overrides: tuple[str, ...]) -> dict:
    cfg = compose("train", overrides=list(overrides))
    with open_dict(cfg):
        cfg.paths.output_dir = "<run dir>"
    return OmegaConf.to_container(cfg, resolve=True)


def cell(config: dict) -> tuple:
    paper = config["paper"]
    return paper["table"], paper["dataset"], paper["row"], paper["column"]


@pytest.mark.parametrize("sweep", sorted(TABLE_SWEEPS))
def test_every_point_of_a_paper_sweep_is_one_cell_of_its_table_and_the_grid_covers_the_table(sweep):
    table = TABLE_SWEEPS[sweep]
    configs = [run_config(point) for point in sweep_points(sweep)]

    cells = [cell(config) for config in configs]
    expected = {(table, c["dataset"], c["row"], c["column"]) for c in PAPER[table]["cells"]}
    assert len(cells) == len(set(cells)), "two points of the grid claim the same cell"
    assert set(cells) == expected


@pytest.mark.parametrize("sweep", sorted(TABLE_SWEEPS))
def test_every_point_equals_the_single_run_of_the_experiment_it_is_named_after(sweep):
    for point in sweep_points(sweep):
        swept = run_config(point)
        single = run_config([f"experiment={swept['experiment']}"])
        assert swept == single, f"{point} differs from experiment={swept['experiment']}"


def test_extra_overrides_narrow_and_widen_a_sweep():
    narrowed = sweep_points("t6a_alpha_prime", "attention.alpha_prime=0.0,0.2")
    assert [cell(run_config(point))[2] for point in narrowed] == ["alpha'=0.0", "alpha'=0.2"]
    widened = sweep_points("t6a_alpha_prime", "attention.alpha_prime=0.25", "seed=1,2")
    assert [(cell(c := run_config(point))[2], c["seed"]) for point in widened] == [
        ("alpha'=0.25", 1),
        ("alpha'=0.25", 2),
    ]
    assert len(sweep_points("t7_depth", "model.depth=6")) == 4  # a depth outside the paper: 4 new cells
    assert {cell(run_config(p))[2] for p in sweep_points("t7_depth", "model.depth=6")} == {"depth 6"}


def test_sweeps_combine_as_a_list_and_their_axes_multiply():
    points = sweep_points("[t6b_alpha,seeds]")
    assert len(points) == 11 * 3
    configs = [run_config(point) for point in points]
    assert {config["seed"] for config in configs} == {1234, 1235, 1236}
    assert {config["attention"]["alpha_prime"] for config in configs} == {0.5}


def launcher(*overrides: str) -> dict:
    cfg = compose("train", overrides=["hydra/launcher=slurm", *overrides], return_hydra_config=True)
    return OmegaConf.to_container(cfg.hydra.launcher, resolve=True)


def test_slurm_launcher_asks_for_one_task_and_one_gpu_per_device_on_every_node():
    multi_node = launcher("experiment=t4_vit_base_imagenet1k_mha_a0.7", "trainer.num_nodes=2")
    assert (multi_node["nodes"], multi_node["tasks_per_node"], multi_node["gpus_per_node"]) == (2, 8, 8)
    cpu = launcher("trainer=cpu", "trainer.devices=2")
    assert (cpu["nodes"], cpu["tasks_per_node"], cpu["gpus_per_node"]) == (1, 2, None)


def test_slurm_launcher_leaves_the_signal_to_lightning():
    settings = launcher("+slurm.signal_delay_s=300", "+slurm.additional_parameters={mail-type: END}")
    assert settings["additional_parameters"] == {"mail-type": "END", "signal": "USR1@300"}
    assert settings["max_num_timeout"] == 0  # submitit never requeues


def test_slurm_launcher_takes_the_per_user_block_and_defaults_without_one():
    user = launcher("+slurm={partition: gpu, account: lab, timeout_min: 2880, setup: [module load cuda]}")
    assert (user["partition"], user["account"], user["timeout_min"], user["setup"]) == (
        "gpu",
        "lab",
        2880,
        ["module load cuda"],
    )
    default = launcher("data.num_workers=4")
    assert (default["partition"], default["timeout_min"], default["setup"]) == (None, 60, None)
    assert default["cpus_per_task"] == 5  # the data-loading workers and the training process
    assert launcher("data.num_workers=4", "+slurm.cpus_per_task=2")["cpus_per_task"] == 2


def test_per_user_file_configs_local_default_feeds_the_launcher(tmp_path):
    """configs/local/default.yaml, here found on an added search path (the repository's copy is the user's)."""
    if (CONFIG_DIR / "local" / "default.yaml").exists():
        pytest.skip("your own configs/local/default.yaml comes first in Hydra's search path")
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "default.yaml").write_text(
        "# @package _global_\nslurm:\n  partition: debug\n  timeout_min: 7\n  cpus_per_task: 3\n"
    )
    settings = launcher(f"hydra.searchpath=[file://{tmp_path}]")
    assert (settings["partition"], settings["timeout_min"], settings["cpus_per_task"]) == ("debug", 7, 3)


@pytest.mark.parametrize(
    ("block", "error", "message"),
    [
        ({"partiton": "gpu"}, ValueError, "unknown key(s) ['partiton']"),
        ({"additional_parameters": {"signal": "USR2@90"}}, ValueError, "owned by Lightning"),
        (["gpu"], TypeError, "must be a mapping"),
    ],
)
def test_bad_slurm_block_fails_naming_the_problem(block, error, message):
    with pytest.raises(error, match=re.escape(message)):
        cluster.slurm_settings(block)


@pytest.mark.parametrize("devices", ["auto", -1, 0, [0, 1], True])
def test_devices_that_are_not_a_count_fail_under_slurm(devices):
    with pytest.raises(ValueError, match="trainer.devices must be a positive int"):
        cluster.tasks_per_node(devices)


def test_unknown_accelerator_fails_under_slurm():
    with pytest.raises(ValueError, match="trainer.accelerator must be one of"):
        cluster.gpus_per_node("tpu", 8)


def test_decimal_names_rows_as_the_paper_does():
    assert [resolvers.decimal(v) for v in (0, 0.2, 1, 0.25, 1.0)] == ["0.0", "0.2", "1.0", "0.25", "1.0"]
    with pytest.raises(TypeError, match="ha.decimal needs a number"):
        resolvers.decimal("0.2")


@pytest.mark.filterwarnings("ignore:The `srun` command is available")  # outside a job, as meant
def test_lightning_listens_on_the_signal_the_launcher_asks_slurm_for():
    """The one owner: Lightning's SLURMEnvironment (auto-requeue) handles the signal the launcher requests."""
    import signal

    from lightning.fabric.plugins.environments import SLURMEnvironment

    environment = SLURMEnvironment()
    assert environment.auto_requeue
    assert environment.requeue_signal == getattr(signal, f"SIG{cluster.REQUEUE_SIGNAL}")
    assert launcher()["additional_parameters"]["signal"].startswith(f"{cluster.REQUEUE_SIGNAL}@")
