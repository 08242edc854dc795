"""Where the project lives: the repository root and its configs, found one way for every entry point.

The root is $HOPFIELD_ATTENTION_ROOT when set, else the source checkout this package is installed from
(`pip install -e .`, the only supported install, keeps the package at <root>/src/hopfield_attention).
The configs are <root>/configs unless $HOPFIELD_ATTENTION_CONFIG_DIR names another directory. Data caches,
logs and results default to folders of the root (configs/paths/default.yaml reads the same variable).
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT_VARIABLE = "HOPFIELD_ATTENTION_ROOT"
CONFIG_DIR_VARIABLE = "HOPFIELD_ATTENTION_CONFIG_DIR"


def repository_root() -> Path:
    if os.environ.get(ROOT_VARIABLE):
        return Path(os.environ[ROOT_VARIABLE]).expanduser().resolve()
    checkout = Path(__file__).resolve().parents[3]
    if not (checkout / "configs" / "train.yaml").is_file():
        raise RuntimeError(
            f"hopfield_attention is not installed from a source checkout ({checkout} has no configs/); "
            f"install it with `pip install -e <checkout>` or set {ROOT_VARIABLE}=<checkout>"
        )
    return checkout


REPOSITORY_DIR = repository_root()
CONFIG_DIR = Path(os.environ.get(CONFIG_DIR_VARIABLE) or REPOSITORY_DIR / "configs")
PAPER_NUMBERS = REPOSITORY_DIR / "results" / "paper_numbers.yaml"

# configs/paths/default.yaml resolves its root_dir from this variable: set it once, for child processes too.
os.environ.setdefault(ROOT_VARIABLE, str(REPOSITORY_DIR))
