"""The project's default locations (logs/, results/), found from the working directory, not hard-coded."""

from __future__ import annotations

import os
from pathlib import Path

MARKER = Path("results") / "paper_numbers.yaml"


def project_root() -> Path:
    """$PROJECT_ROOT, else the nearest directory at or above the working directory holding
    results/paper_numbers.yaml, else the source checkout this package was installed from (editable)."""
    if os.environ.get("PROJECT_ROOT"):
        return Path(os.environ["PROJECT_ROOT"]).resolve()
    here = Path.cwd().resolve()
    for directory in (here, *here.parents):
        if (directory / MARKER).is_file():
            return directory
    checkout = Path(__file__).resolve().parents[3]
    if (checkout / MARKER).is_file():
        return checkout
    raise ValueError(
        f"cannot find the project root (no {MARKER} at or above {here}); set PROJECT_ROOT or pass "
        "runs_dir=, paper_numbers=, out_dir= and figures_dir= explicitly"
    )
