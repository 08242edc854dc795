"""The versions of torch, transformers and timm this release was tested with, and a warning outside them.

The floors are pyproject.toml's (tests/test_versions.py holds them equal) and were run by `make test-lowest`;
the ceilings are the newest versions tested. Outside the range the package may well work: the backbones
reach into transformers' attention plumbing and timm's blocks, which move between releases.
"""

from __future__ import annotations

import warnings
from importlib.metadata import PackageNotFoundError, version

from packaging.specifiers import SpecifierSet

TESTED = {
    "torch": SpecifierSet(">=2.6,<2.15"),
    "transformers": SpecifierSet(">=5.24,<5.25"),
    "timm": SpecifierSet(">=1.0.31,<1.1"),
}


def untested() -> dict[str, str]:
    """{package: installed version} for each package of TESTED installed outside its tested range."""
    outside = {}
    for package, tested in TESTED.items():
        try:
            installed = version(package)
        except PackageNotFoundError:
            continue  # a missing package fails at its import, with its own message
        if not tested.contains(installed, prereleases=True):  # GPU images ship builds like 2.11.0a0+nv25.05
            outside[package] = installed
    return outside


def warn_if_untested() -> None:
    outside = untested()
    if outside:
        found = ", ".join(f"{package} {installed} (tested {TESTED[package]})" for package, installed in outside.items())
        warnings.warn(f"hopfield_attention is untested with {found}", UserWarning, stacklevel=2)
