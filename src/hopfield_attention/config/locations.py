"""Where the code's files are read from and where outputs are written: two separate settings.

What the package reads (its own, never written):
- the configs: $HOPFIELD_ATTENTION_CONFIG_DIR when set, else the package's own copy. A wheel ships them as
  package data (<site-packages>/hopfield_attention/configs); an editable install (`pip install -e .`) reads the
  checkout's configs/ in place, so an edit there is seen at once.
- the tables' specifications, results/paper_numbers.yaml (the paper's reported numbers) and
  results/own_tables.yaml: shipped the same way (<site-packages>/hopfield_attention/reference/), read in place from
  a checkout.

Where outputs go (logs/, data_cache/, data/, results/): the work directory, `paths.work_dir` in the configs
(configs/paths/default.yaml), which reads $HOPFIELD_ATTENTION_WORK_DIR. Unset, it is the source checkout for an
editable install (the committed results/ stay where they are) and the current directory for any other install.

The console scripts are named `hopfield-<command>` (underscores as hyphens: hopfield-train, hopfield-paper-small);
`python -m hopfield_attention.<command>` runs the same command (pyproject.toml, [project.scripts]).
"""

from __future__ import annotations

import os
from pathlib import Path

CONFIG_DIR_VARIABLE = "HOPFIELD_ATTENTION_CONFIG_DIR"
WORK_DIR_VARIABLE = "HOPFIELD_ATTENTION_WORK_DIR"
# Set by earlier versions to move both the configs and the outputs; refused now (check_locations), never read.
RETIRED_VARIABLES = {
    "HOPFIELD_ATTENTION_ROOT": f"set {WORK_DIR_VARIABLE} for the outputs (logs/, data_cache/, data/, results/); "
    f"the configs come from the package ({CONFIG_DIR_VARIABLE} names another config folder)",
}

PACKAGE_DIR = Path(__file__).resolve().parents[1]


def source_checkout() -> Path | None:
    """The checkout this package runs from (an editable install: <checkout>/src/hopfield_attention), or None
    for an installed wheel, whose configs lie beside its modules."""
    if (PACKAGE_DIR / "configs").is_dir():
        return None
    checkout = PACKAGE_DIR.parents[1]
    return checkout if (checkout / "configs" / "train.yaml").is_file() else None


SOURCE_CHECKOUT = source_checkout()
# The package's own files: the checkout's folders for an editable install, the package data of a wheel.
_SHIPPED = {"configs": PACKAGE_DIR / "configs", "reference": PACKAGE_DIR / "reference"}
_IN_CHECKOUT = {"configs": "configs", "reference": "results"}


def package_files(kind: str) -> Path:
    return SOURCE_CHECKOUT / _IN_CHECKOUT[kind] if SOURCE_CHECKOUT else _SHIPPED[kind]


CONFIG_DIR = Path(os.environ.get(CONFIG_DIR_VARIABLE) or package_files("configs")).expanduser().resolve()
PAPER_NUMBERS = package_files("reference") / "paper_numbers.yaml"
OWN_TABLES = package_files("reference") / "own_tables.yaml"


def default_work_dir() -> Path:
    return SOURCE_CHECKOUT if SOURCE_CHECKOUT else Path.cwd()


WORK_DIR = Path(os.environ.get(WORK_DIR_VARIABLE) or default_work_dir()).expanduser().resolve()
# configs/paths/default.yaml reads the work directory from this variable: set once, child processes inherit it.
os.environ.setdefault(WORK_DIR_VARIABLE, str(WORK_DIR))


def check_locations() -> None:
    """Before a command composes its config: a retired variable or a missing config folder, named plainly."""
    for name, instead in RETIRED_VARIABLES.items():
        if os.environ.get(name):
            raise ValueError(f"{name} is no longer read: {instead}")
    if not (CONFIG_DIR / "train.yaml").is_file():
        where = f"${CONFIG_DIR_VARIABLE}={os.environ[CONFIG_DIR_VARIABLE]}" if os.environ.get(CONFIG_DIR_VARIABLE) \
            else f"the package's configs at {CONFIG_DIR}"  # fmt: skip
        raise FileNotFoundError(f"no configs found: {where} has no train.yaml "
                                f"(unset {CONFIG_DIR_VARIABLE} to use the package's own)")  # fmt: skip
