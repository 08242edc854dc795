"""The README and the docs site say only what runs: every fenced `bash` and `python` block of README.md and
docs/**/*.md is executed here, and the site builds with `mkdocs build --strict`.

A block says how it is tested in an HTML comment on the line before its fence (docs/install.md, "How these docs
are tested"): `python` blocks run as scripts, each in a fresh namespace and its own scratch folder, all in one
child process; `run` blocks run their commands for real, made tiny by `fill` and `append`; `compose` blocks, for
commands that need a GPU, a data set or SLURM, compose every config the command would run (every point of a sweep,
the SLURM launcher's request, an sbatch script's training arguments) and check it as `train` does before it runs;
`make-dry-run` blocks check the target with `make -n` and compose the command it would run; `help-flags` blocks
check each option against the program's `--help`; `not-run` blocks must say why.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from support.data import write_fashion_mnist_fixture, write_shakespeare_fixture
from support.train import data_overrides

REPOSITORY = Path(__file__).resolve().parents[1]
PAGES = [REPOSITORY / "README.md", *sorted((REPOSITORY / "docs").rglob("*.md"))]
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
MODES = {"python", "run", "compose", "make-dry-run", "help-flags", "slurm-settings", "not-run"}
# Fences that would hide a command from this test: a command is `bash`, a snippet `python`, an output `text`.
DISGUISED = {"sh", "shell", "console", "zsh", "py", "python3", "pycon"}

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)[ \t]*(?P<lang>[\w+-]*)[^\n]*$")
ANNOTATION = re.compile(r"^\s*<!-- docs-test: (?P<mode>[\w-]+)(?P<rest>.*?)-->\s*$")
ATTRIBUTE = re.compile(r'([\w.-]+)="([^"]*)"')


@dataclasses.dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    mode: str | None
    attrs: dict

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPOSITORY)}:{self.line}"


def blocks_of(page: Path) -> list[Block]:
    lines = page.read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip().startswith(fence) and not lines[j].strip()[len(fence):].strip())  # fmt: skip
        code = textwrap.dedent("\n".join(line[len(indent):] if line.startswith(indent) else line for line in lines[i + 1 : end]))  # fmt: skip
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        annotation = ANNOTATION.match(before)
        mode = annotation["mode"] if annotation else None
        attrs = dict(ATTRIBUTE.findall(annotation["rest"])) if annotation else {}
        found.append(Block(page, i + 1, opening["lang"].lower(), code + "\n", mode, attrs))
        i = end + 1
    return found


BLOCKS = [block for page in PAGES for block in blocks_of(page)]
COMMAND_BLOCKS = [block for block in BLOCKS if block.lang in ("bash", "python")]


def by_mode(*modes: str) -> list:
    return [pytest.param(b, id=b.where) for b in COMMAND_BLOCKS if (b.mode or ("python" if b.lang == "python" else None)) in modes]  # fmt: skip


# -- the blocks are what they say -------------------------------------------------------------------------------
def test_every_command_block_says_how_it_is_tested():
    assert len(COMMAND_BLOCKS) >= 30, "the docs lost their commands, or this test stopped finding them"
    for block in BLOCKS:
        assert block.lang not in DISGUISED, f"{block.where}: a ```{block.lang} fence; use bash, python or text"
    for block in COMMAND_BLOCKS:
        if block.lang == "bash":
            assert block.mode in MODES - {"python", "slurm-settings"}, (
                f"{block.where}: a bash block needs <!-- docs-test: run|compose|make-dry-run|help-flags|not-run --> "
                f"on the line before it, got {block.mode!r}"
            )
        else:
            assert block.mode in (None, "python", "not-run"), f"{block.where}: a python block runs, or is not-run"
        if block.mode == "not-run":
            assert block.attrs.get("reason"), f'{block.where}: not-run needs reason="..."'


def test_the_readme_is_a_door():
    text = (REPOSITORY / "README.md").read_text(encoding="utf-8")
    lines = text.splitlines()
    assert len(lines) <= 300
    first_screen = "\n".join(lines[:45])
    # A newcomer finds the 8-GPU SLURM example, the conversion API and the verdicts without scrolling far.
    assert "docs/slurm-8-gpus.md" in first_screen and "8 GPUs" in first_screen
    assert "convert_model" in first_screen and "docs/using-mha.md" in first_screen
    assert "<!-- generated: reading study" in first_screen
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        assert (REPOSITORY / target).exists(), f"README links to {target}, which does not exist"


# -- fixtures: tiny data, a tiny finished run ------------------------------------------------------------------
@pytest.fixture(scope="module")
def docs_env(tmp_path_factory) -> dict:
    """The values `{name}` stands for in annotations."""
    tmp = tmp_path_factory.mktemp("docs")
    logs = tmp / "logs"
    text = write_shakespeare_fixture(tmp / "shakespeare")
    images = write_fashion_mnist_fixture(tmp / "fashion")
    tiny_data = " ".join(f"data.{key}={value}" for key, value in text.items())
    quiet = ("trainer.limit_val_batches=2 callbacks.progress_bar=null +trainer.enable_progress_bar=false "
             "+trainer.enable_model_summary=false trainer.num_sanity_val_steps=0 trainer.val_check_interval=1")  # fmt: skip
    tiny_train = f"{tiny_data} model=gpt2_tiny trainer=cpu batch.global_size=null {quiet} paths.log_dir={logs}"
    tiny_vision = " ".join(shlex.quote(o) for o in data_overrides(images))
    tiny_vision += f" trainer=cpu batch.global_size=null {quiet} paths.log_dir={logs}"
    env = {"{tmp}": str(tmp), "{logs}": str(logs), "{tiny_data}": tiny_data, "{tiny_train}": tiny_train,
           "{tiny_vision}": tiny_vision}  # fmt: skip
    run_dir = tmp / "fixture_run"
    result = hopfield("train", ["experiment=quickstart_mha", *shlex.split(tiny_train), "trainer.max_steps=2",
                                f"hydra.run.dir={run_dir}"], cwd=REPOSITORY)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run_dir / "checkpoints" / "last.ckpt").exists()
    env["{run_dir}"] = str(run_dir)
    return env


def expand(value: str, env: dict) -> str:
    for name, replacement in env.items():
        value = value.replace(name, replacement)
    unknown = re.findall(r"\{(?:tmp|logs|tiny_\w+|run_dir|\w+_dir)\}", value)
    assert not unknown, f"unknown placeholders {unknown} in an annotation"
    return value


def hopfield(command: str, args: list[str], cwd: Path, env: dict | None = None,
             script: bool = False) -> subprocess.CompletedProcess:  # fmt: skip
    """`python -m hopfield_attention.<command> <args>`, or with `script` its console script `hopfield-<command>`
    (the one installed beside this interpreter)."""
    environment = {**os.environ, **OFFLINE, **(env or {})}
    for key in ("HYDRA_FULL_ERROR", "HOPFIELD_ATTENTION_SHORT_ERRORS"):
        environment.pop(key, None)
    program = [str(Path(sys.executable).parent / f"hopfield-{command.replace('_', '-')}")] if script \
        else [sys.executable, "-m", f"hopfield_attention.{command}"]  # fmt: skip
    return subprocess.run([*program, *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=900)


# -- parsing a bash block into commands ------------------------------------------------------------------------
@dataclasses.dataclass
class Command:
    text: str
    env: dict
    argv: list[str]

    @property
    def script(self) -> bool:
        """`hopfield-train ...`: a console script (pyproject.toml, [project.scripts])."""
        return bool(self.argv) and self.argv[0].startswith("hopfield-")

    @property
    def hopfield(self) -> str | None:
        """`train` for `python -m hopfield_attention.train ...`, `paper_small` for `hopfield-paper-small ...`."""
        if self.script:
            return self.argv[0].removeprefix("hopfield-").replace("-", "_")
        if len(self.argv) >= 3 and self.argv[0] in ("python", "python3") and self.argv[1] == "-m":
            module = self.argv[2]
            if module.startswith("hopfield_attention."):
                return module.split(".", 1)[1]
        return None

    @property
    def args(self) -> list[str]:
        """The command's own arguments, after `hopfield-<command>` or `python -m hopfield_attention.<command>`."""
        return self.argv[1:] if self.script else self.argv[3:]


def commands_of(code: str, fill: str = "") -> list[Command]:
    for pair in filter(None, (p.strip() for p in fill.split(";"))):
        old, new = (part.strip() for part in pair.split(" -> "))
        assert old in code, f"fill: {old!r} is not in the block"
        code = code.replace(old, new)
    commands, exported = [], {}
    for line in code.replace("\\\n", " ").splitlines():
        assignment = re.match(r"^\s*\w+=\$\((.*)\)\s*$", line)  # prep=$(sbatch ...): the command inside
        words = shlex.split(assignment[1] if assignment else line, comments=True)
        if not words:
            continue
        export = words[0] == "export"  # `export NAME=value`: every later command of the block has it
        env = {} if export else dict(exported)
        words = words[1:] if export else words
        while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
            key, value = words.pop(0).split("=", 1)
            env[key] = os.path.expandvars(value)
        if export:
            assert not words, f"{line.strip()!r}: export NAME=value only"
            exported.update(env)
            continue
        commands.append(Command(line.strip(), env, words))
    return commands


def key_of(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def merged(args: list[str], extra: list[str]) -> list[str]:
    """`args` with each `key=value` of `extra` replacing the same key, or appended."""
    args = list(args)
    for override in extra:
        same = [i for i, arg in enumerate(args) if "=" in arg and not arg.startswith("-") and key_of(arg) == key_of(override)]  # fmt: skip
        if same:
            args[same[0]] = override
        else:
            args.append(override)
    return args


# -- composing a command's configs as the command would ---------------------------------------------------------
@dataclasses.dataclass
class Composed:
    jobs: list[dict]  # each job's resolved config
    launcher: dict | None  # the resolved hydra.launcher of the first job (hydra/launcher=slurm)


def compose_command(command: str, args: list[str], slurm_job: bool = False) -> Composed:
    """The configs `python -m hopfield_attention.<command> <args>` would run, resolved, each checked by
    train.check_config for train. With -m every point of the grid (Hydra's own basic sweeper splits it)."""
    from hydra import compose, initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf, open_dict

    from hopfield_attention.config import resolvers  # noqa: F401  (the ha.* resolvers)
    from hopfield_attention.config.locations import CONFIG_DIR

    multirun = "-m" in args or "--multirun" in args
    printed = args.index("-p") if "-p" in args else None
    show = args[printed + 1] if printed is not None else None
    overrides = [a for i, a in enumerate(args) if not a.startswith("-") and (printed is None or i != printed + 1)
                 and a not in ("job", "hydra", "all")]  # fmt: skip
    saved = os.environ.get("SLURM_JOB_ID")
    if slurm_job:  # the check of a multi-node run looks for the variables a SLURM job has
        os.environ["SLURM_JOB_ID"] = "docs-test"
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
            parsed = parser.parse_overrides(overrides)
            fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
            if multirun:
                master = compose(command, overrides=fixed, return_hydra_config=True)
                params = {key: f"{key}={value}" for key, value in (master.hydra.sweeper.params or {}).items()}
                for override in overrides:
                    params[key_of(override)] = override
                (points,) = BasicSweeper.split_arguments(parser.parse_overrides(list(params.values())), None)
            else:
                assert all(not o.is_sweep_override() for o in parsed), "a sweep override without -m"
                points = [overrides]
            jobs, launcher = [], None
            for point in points:
                job = compose(command, overrides=list(point), return_hydra_config=True)
                if launcher is None and "slurm" in str(job.hydra.launcher.get("_target_")).lower():
                    launcher = OmegaConf.to_container(job.hydra.launcher, resolve=True)
                with open_dict(job):
                    del job["hydra"]  # the job's own config, as the command sees it
                    if "paths" in job and "output_dir" in job.paths:
                        job.paths.output_dir = "<run dir>"
                if command == "train" and "--cfg" not in args:  # --cfg only prints: train checks nothing
                    from hopfield_attention.train import check_config

                    check_config(job)
                resolved = OmegaConf.to_container(job, resolve=True)
                if show is not None:
                    assert OmegaConf.select(job, show) is not None, f"-p {show}: no such key"
                jobs.append(resolved)
    finally:
        GlobalHydra.instance().clear()
        if saved is None:
            os.environ.pop("SLURM_JOB_ID", None)
        else:
            os.environ["SLURM_JOB_ID"] = saved
    return Composed(jobs, launcher)


SBATCH_DEFAULT = re.compile(r"^#SBATCH --(?P<key>[\w-]+)=(?P<value>\S+)", re.MULTILINE)


def compose_sbatch(argv: list[str]) -> Composed:
    """`sbatch [options] slurm/<script>.sbatch <args>`: the script exists and parses, and the command it runs
    with srun composes, with trainer.num_nodes and trainer.devices taken from the job's shape as the script does."""
    script_at = next(i for i, word in enumerate(argv) if word.endswith(".sbatch"))
    script = REPOSITORY / argv[script_at]
    assert script.exists(), f"{argv[script_at]} does not exist"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0, f"{script} does not parse"
    options = dict(SBATCH_DEFAULT.findall(script.read_text()))
    for option in argv[1:script_at]:
        key, _, value = option.lstrip("-").partition("=")
        options[key] = value
    command = re.search(r"-m hopfield_attention\.(\w+)", script.read_text())[1]
    args = argv[script_at + 1 :]
    if command == "train":
        nodes, devices = int(options.get("nodes", 1)), int(options.get("ntasks-per-node", 1))
        composed = compose_command("train", [*args, f"trainer.num_nodes={nodes}", f"trainer.devices={devices}"],
                                   slurm_job=True)  # fmt: skip
        if "gpus-per-node" in options and composed.jobs[0]["trainer"]["accelerator"] in ("gpu", "cuda", "auto"):
            assert int(options["gpus-per-node"]) == devices, "one GPU per task"
        return composed
    return compose_command(command, args)


@contextlib.contextmanager
def environment(env: dict):
    """The command's `NAME=value` prefixes (and the block's `export`s) set while it composes, as the shell would
    set them; a variable the package no longer reads is refused as the commands refuse it."""
    from hopfield_attention.config.locations import check_locations

    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        check_locations()
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def check_compose(command: Command) -> Composed | None:
    with environment(command.env):
        composed = check_compose_here(command)
    work_dir = command.env.get("HOPFIELD_ATTENTION_WORK_DIR")
    for job in composed.jobs if composed and work_dir else []:  # every output of the job under that folder
        assert job["paths"]["work_dir"] == work_dir, f"paths.work_dir is {job['paths']['work_dir']}, not {work_dir}"
    return composed


def check_compose_here(command: Command) -> Composed | None:
    argv = command.argv
    if command.hopfield:
        args = command.args
        slurm = "hydra/launcher=slurm" in args
        composed = compose_command(command.hopfield, args, slurm_job=slurm)
        if slurm:
            launcher = composed.launcher
            assert launcher is not None, "hydra/launcher=slurm did not select the submitit launcher"
            trainer = composed.jobs[0]["trainer"]
            assert (launcher["nodes"], launcher["tasks_per_node"]) == (trainer["num_nodes"], trainer["devices"])
        return composed
    if argv[0] == "sbatch":
        return compose_sbatch(argv)
    if argv[0] == "make":
        check_make(argv)
        return None
    if argv[0] == "mkdir":
        return None  # creates the folder sbatch's --output writes into; nothing to check
    if argv[0] in ("python", "python3"):
        check_help_flags(argv)
        return None
    raise AssertionError(f"a compose block holds {command.text!r}, which this test cannot check")


def check_make(argv: list[str]) -> None:
    result = subprocess.run(["make", "-n", *argv[1:]], cwd=REPOSITORY, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"make -n {' '.join(argv[1:])}: {result.stderr[-2000:]}"
    for line in result.stdout.splitlines():
        found = re.search(r"-m hopfield_attention\.(\w+)(.*)$", line)
        if found and found[1] not in ("quickstart", "paper_small", "readings"):  # pipelines: their own tests run them
            compose_command(found[1], shlex.split(found[2]))
        elif found:
            compose_command(found[1], [a for a in shlex.split(found[2]) if "=" in a])


def check_help_flags(argv: list[str]) -> None:
    first_option = next((i for i, word in enumerate(argv) if word.startswith("--")), len(argv))
    program = [sys.executable, *argv[1:first_option]] if argv[0] in ("python", "python3") else argv[:first_option]
    if argv[0] not in ("python", "python3"):
        program = [str(Path(sys.executable).parent / argv[0]), *argv[1:first_option]]
    result = subprocess.run([*program, "--help"], cwd=REPOSITORY, capture_output=True, text=True, timeout=300,
                            env={**os.environ, **OFFLINE})  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    for option in (word.split("=", 1)[0] for word in argv[first_option:] if word.startswith("--")):
        if option == "--help":
            continue  # what ran: it answered
        assert option in result.stdout, f"{' '.join(argv[:first_option])} --help does not list {option}"


# -- the tests of the blocks -------------------------------------------------------------------------------------
PYTHON_RUNNER = r"""
import json, os, sys, traceback, torch
blocks, out = json.load(open(sys.argv[1])), {}
for index, (where, code, folder) in enumerate(blocks):
    os.makedirs(folder, exist_ok=True)
    os.chdir(folder)
    torch.manual_seed(0)
    try:
        exec(compile(code, where, "exec"), {"__name__": "__main__"})
        out[where] = None
    except BaseException:
        out[where] = traceback.format_exc()[-4000:]
json.dump(out, open(sys.argv[2], "w"))
"""


@pytest.fixture(scope="module")
def python_results(tmp_path_factory) -> dict:
    """Every python block, each in a fresh namespace and folder, in one child process (one import of torch)."""
    tmp = tmp_path_factory.mktemp("snippets")
    blocks = [(b.where, b.code, str(tmp / f"block{i}")) for i, b in enumerate(COMMAND_BLOCKS)
              if b.lang == "python" and b.mode != "not-run"]  # fmt: skip
    (tmp / "blocks.json").write_text(json.dumps(blocks))
    result = subprocess.run([sys.executable, "-c", PYTHON_RUNNER, str(tmp / "blocks.json"), str(tmp / "out.json")],
                            cwd=tmp, env={**os.environ, **OFFLINE}, capture_output=True, text=True, timeout=900)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((tmp / "out.json").read_text())


@pytest.mark.parametrize("block", by_mode("python"))
def test_python_snippet_runs(block, python_results):
    assert block.where in python_results
    assert python_results[block.where] is None, f"{block.where} failed:\n{python_results[block.where]}"


@pytest.mark.parametrize("block", by_mode("compose"))
def test_command_composes(block):
    for command in commands_of(block.code, block.attrs.get("fill", "")):
        check_compose(command)


@pytest.mark.parametrize("block", by_mode("make-dry-run"))
def test_make_target_exists_and_its_command_composes(block):
    for command in commands_of(block.code):
        assert command.argv[0] == "make", f"{block.where}: {command.text!r} in a make-dry-run block"
        check_make(command.argv)


@pytest.mark.parametrize("block", by_mode("help-flags"))
def test_command_options_exist(block):
    for command in commands_of(block.code):
        check_help_flags(command.argv)


@pytest.mark.slow
@pytest.mark.parametrize("block", by_mode("run"))
def test_command_runs(block, docs_env, tmp_path):
    fill = expand(block.attrs.get("fill", ""), docs_env)
    for command in commands_of(block.code, fill):
        if command.hopfield:
            extra = expand(block.attrs.get("append", "") + " " + block.attrs.get(f"append.{command.hopfield}", ""), docs_env)  # fmt: skip
            args = merged(command.args, shlex.split(extra))
            result = hopfield(command.hopfield, args, cwd=REPOSITORY, env=command.env, script=command.script)
        else:
            assert command.argv[0] in ("python", "python3", "mkdir"), f"{block.where}: cannot run {command.text!r}"
            argv = [sys.executable, *command.argv[1:]] if command.argv[0].startswith("python") else command.argv
            result = subprocess.run(argv, cwd=REPOSITORY if argv[0] == sys.executable else tmp_path,
                                    env={**os.environ, **OFFLINE, **command.env}, capture_output=True, text=True,
                                    timeout=900)  # fmt: skip
        assert result.returncode == 0, f"{block.where}: {command.text}\n{result.stderr[-3000:]}"


@pytest.mark.parametrize("block", [pytest.param(b, id=b.where) for b in BLOCKS if b.mode == "slurm-settings"])
def test_slurm_settings_example_is_accepted(block):
    from omegaconf import OmegaConf

    from hopfield_attention.config.cluster import slurm_settings

    settings = slurm_settings(OmegaConf.create(yaml.safe_load(block.code)["slurm"]))
    assert settings.partition and settings.timeout_min > 0


# -- what the worked 8-GPU example claims -------------------------------------------------------------------------
def eight_gpu_commands() -> list[Command]:
    page = REPOSITORY / "docs" / "slurm-8-gpus.md"
    return [c for b in blocks_of(page) if b.mode == "compose" for c in commands_of(b.code)
            if "t1_gpt2_small" in c.text and "prepare" not in c.text and "--cfg" not in c.text]  # fmt: skip


def test_the_8_gpu_example_asks_slurm_for_8_gpus_and_keeps_the_recipe_global_batch():
    commands = eight_gpu_commands()
    assert len(commands) == 4, [c.text for c in commands]  # launcher and sbatch, 1 x 8 and 2 x 4 each
    shapes = set()
    for command in commands:
        composed = check_compose(command)
        (job,) = composed.jobs
        trainer = job["trainer"]
        shapes.add((trainer["num_nodes"], trainer["devices"]))
        assert trainer["num_nodes"] * trainer["devices"] == 8 and trainer["accelerator"] == "gpu"
        # Table 1's recipe: 64 sequences a step over 8 processes, 8 each, nothing accumulated.
        assert (job["data"]["batch_size"], trainer["accumulate_grad_batches"]) == (8, 1)
        if composed.launcher is not None:
            launcher = composed.launcher
            assert launcher["gpus_per_node"] == launcher["tasks_per_node"] == trainer["devices"]
            assert launcher["nodes"] == trainer["num_nodes"]
            # Where the page says submitit's files are: the sweep directory's .submitit/<job id>.
            assert launcher["submitit_folder"].endswith("/multiruns/t1_gpt2_small_wikitext103_mha_a0.5/.submitit/%j")
    assert shapes == {(1, 8), (2, 4)}
    assert "logs/multiruns/<experiment>/.submitit/<job id>/" in (REPOSITORY / "docs" / "slurm-8-gpus.md").read_text()


# -- the site ------------------------------------------------------------------------------------------------------
def test_the_site_builds_strictly_with_the_api_page_and_the_committed_results(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs extra: pip install -e '.[docs]' (the test extra has it)")
    pytest.importorskip("material", reason="mkdocs-material")
    pytest.importorskip("mkdocstrings", reason="mkdocstrings[python]")
    site = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                            cwd=REPOSITORY, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    assert 'id="hopfield_attention.convert_model"' in api  # rendered from the docstring, not typed
    performance = (site / "performance" / "index.html").read_text(encoding="utf-8")
    bench = json.loads((REPOSITORY / "results" / "bench" / "cpu-2-cores.json").read_text())
    softmax = next(r for r in bench["results"] if r["case"] == "gpt2-small" and r["method"] == "softmax")
    assert f"{softmax['peak_mb']:.0f} MB" in performance  # the benchmark table is the committed JSON's
    results = (site / "results" / "index.html").read_text(encoding="utf-8")
    verdicts = (REPOSITORY / "results" / "tables" / "readings.md").read_text(encoding="utf-8")
    assert "Default:" in verdicts and "agrees with the most fingerprints" in results
