"""The tested version range: pyproject's floors are the ones `make test-lowest` runs, and outside the range
`import hopfield_attention` warns once, briefly."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

from hopfield_attention.versions import TESTED, untested

REPOSITORY_DIR = Path(__file__).resolve().parents[1]

PYPROJECT = tomllib.loads((REPOSITORY_DIR / "pyproject.toml").read_text())
CLAIMED = {Requirement(line).name: Requirement(line).specifier for line in PYPROJECT["project"]["dependencies"]}
LOWEST = dict(
    line.split("==") for line in (REPOSITORY_DIR / "constraints" / "lowest.txt").read_text().splitlines()
    if line and not line.startswith("#")
)  # fmt: skip


def floor(specifier) -> str:
    (bound,) = [s.version for s in specifier if s.operator == ">="]
    return bound


def test_pyproject_floors_are_the_tested_floors_and_make_test_lowest_installs_them():
    for package, tested in TESTED.items():
        assert floor(CLAIMED[package]) == floor(tested), package
        assert LOWEST[package].startswith(floor(tested)), package  # 5.24 -> 5.24.0
    assert floor(CLAIMED["torchvision"]) == LOWEST["torchvision"].removesuffix(".0")


CPU_PINS = dict(
    line.split("==") for line in (REPOSITORY_DIR / "constraints" / "cpu.txt").read_text().splitlines()
    if line and not line.startswith("#")
)  # fmt: skip


def test_make_install_pins_the_tested_ceiling_and_pyproject_claims_no_more_than_was_tested():
    for package, tested in TESTED.items():
        assert tested.contains(CPU_PINS[package]), (package, CPU_PINS[package], str(tested))
    for package in ("transformers", "timm"):  # the libraries whose internals the backbones reach into
        assert CLAIMED[package] == TESTED[package], package


def test_the_installed_stack_is_inside_the_tested_range():
    assert untested() == {}


def test_an_untested_version_warns_once_at_import_without_a_traceback():
    script = (
        "import importlib.metadata as m; real = m.version; "
        "m.version = lambda name: '2.99.0' if name == 'torch' else real(name); import hopfield_attention"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    lines = [line for line in run.stderr.splitlines() if "UserWarning" in line]
    assert len(lines) == 1 and f"torch 2.99.0 (tested {TESTED['torch']})" in lines[0]
    assert "Traceback" not in run.stderr
