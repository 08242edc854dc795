"""Run the project's commands as a user does (a subprocess of `python -m hopfield_attention.<command>`), or
their function on a config composed exactly as the command composes it (Hydra's compose API)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

from hopfield_attention.config.locations import CONFIG_DIR

REPOSITORY_DIR = Path(__file__).resolve().parents[2]  # the checkout under test

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true"}


def composed(config_name: str, overrides: list[str]):
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name, overrides=overrides)


def run_command(command: str, *overrides: str, cwd: Path | str = REPOSITORY_DIR, timeout: float = 600,
                env: dict | None = None) -> subprocess.CompletedProcess:  # fmt: skip
    """`python -m hopfield_attention.<command> <overrides>` in a child process, output captured."""
    environment = {**os.environ, **OFFLINE, **(env or {})}
    environment.pop("HYDRA_FULL_ERROR", None)
    environment.pop("HOPFIELD_ATTENTION_SHORT_ERRORS", None)
    return subprocess.run([sys.executable, "-m", f"hopfield_attention.{command}", *overrides], cwd=cwd,
                          env=environment, capture_output=True, text=True, timeout=timeout)  # fmt: skip


def error_message(stderr: str) -> str:
    """What a refused command said: stderr from its first "Error" line on. Lines before it (a library's warning
    on this machine's versions, Lightning's banners) are not the message, so a test never breaks on them."""
    lines = stderr.strip().splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("Error")), None)
    assert start is not None, stderr[-2000:]
    return "\n".join(lines[start:])
