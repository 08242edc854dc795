"""How every command runs: Hydra reads the options, and any error ends in a short message.

All entry points (train, eval, prepare, analyze, tables, status, quickstart, paper_small, readings) are Hydra apps
over a config in configs/, so options are `key=value` overrides everywhere, checked against that config (a misspelt
key fails at once). An error prints `Error: <message>` on stderr, at most three lines that name the key or file and
what is allowed, and exits with status 1; an interrupted command exits with 128 + the signal number. The traceback is
shown only on request, `HYDRA_FULL_ERROR=1`; a training run also keeps it in its results.json.

In a sweep (`-m`) a failed job reports its error and the sweep goes on with the other jobs (Hydra's own
launchers collect the failures); the command then exits with status 1, naming the first failure. A signal
(SIGTERM, Ctrl-C) stops the whole sweep after its job saved a checkpoint; the same command later runs only the
jobs that did not finish (each job's directory is named after its overrides: configs/hydra/default.yaml).

Each command runs as a console script, `hopfield-<command>` with hyphens for underscores (hopfield-train,
hopfield-paper-small; pyproject.toml), or as `python -m hopfield_attention.<command>`: the same `main`. Its `--help`
opens with one line saying what it does (`hydra.help.header` of its root config; configs/hydra/help/), and Hydra's
tab completion works for the console scripts: `eval "$(hopfield-train -sc install=bash)"`. The configs are the
package's own; outputs go under `paths.work_dir` (config/locations.py).
"""

from __future__ import annotations

import functools
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ..config.locations import CONFIG_DIR, check_locations
from ..errors import USER_ERRORS, Interrupted, short_message

FULL_ERROR = "HYDRA_FULL_ERROR"
# Set together with HYDRA_FULL_ERROR when we, not the user, asked Hydra to re-raise (children inherit both).
QUIET_MARKER = "HOPFIELD_ATTENTION_SHORT_ERRORS"


def wants_traceback() -> bool:
    return bool(os.environ.get(FULL_ERROR)) and not os.environ.get(QUIET_MARKER)


def exit_status(error: BaseException) -> int:
    if isinstance(error, Interrupted):
        return 128 + error.signum
    if isinstance(error, KeyboardInterrupt):
        return 128 + signal.SIGINT
    return 1


def report(error: BaseException, prefix: str = "Error: ") -> None:
    message = short_message(error)
    if not isinstance(error, USER_ERRORS + (KeyboardInterrupt,)):
        message += "\n(the traceback: run again with HYDRA_FULL_ERROR=1)"
    print(f"{prefix}{message}", file=sys.stderr, flush=True)


def _in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def hydra_command(config_name: str) -> Callable[[Callable[[DictConfig], Any]], Callable[[], None]]:
    """Decorator: `task(cfg)` becomes a console `main()` over configs/<config_name>.yaml with short errors."""

    def decorate(task: Callable[[DictConfig], Any]) -> Callable[[], None]:
        failures: list[BaseException] = []

        @functools.wraps(task)
        def job(cfg: DictConfig) -> Any:
            try:
                return task(cfg)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as error:
                if wants_traceback():
                    raise
                report(error)
                error.__hopfield_reported__ = True  # the outer handler must not print it twice
                if _in_multirun() and not isinstance(error, Interrupted):
                    failures.append(error)
                    raise  # Hydra's launcher runs the remaining jobs and fails at the end
                raise SystemExit(exit_status(error)) from None  # a signal stops the whole sweep

        app = hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name=config_name)(job)

        @functools.wraps(task)
        def main() -> None:
            if not os.environ.get(FULL_ERROR):
                os.environ[FULL_ERROR] = os.environ[QUIET_MARKER] = "1"  # Hydra re-raises; we report
            try:
                check_locations()  # before Hydra, which would only say "Primary config directory not found"
                app()
            except SystemExit:
                raise
            except BaseException as error:
                if wants_traceback():
                    raise
                if getattr(error, "__hopfield_reported__", False):
                    count = f"{len(failures)} job(s)" if failures else "a job"
                    print(f"Error: {count} of the sweep failed; the first: {short_message(error)}", file=sys.stderr)
                else:
                    report(error)
                raise SystemExit(exit_status(error)) from None

        return main

    return decorate


def save_config(cfg: DictConfig) -> None:
    """<output dir>/.hydra/config.yaml (the resolved config) and overrides.yaml (the command line's overrides).
    Hydra's own copies are off (configs/hydra/default.yaml): a training run writes them once it owns its
    directory, a second process refused at the lock must not overwrite them."""
    directory = Path(cfg.paths.output_dir) / ".hydra"
    directory.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, directory / "config.yaml")
    if HydraConfig.initialized():
        OmegaConf.save(OmegaConf.create(list(HydraConfig.get().overrides.task)), directory / "overrides.yaml")


def instantiate_all(group: DictConfig | None) -> list:
    """The instantiated entries of a dict of configs (callbacks, loggers); null entries are switched off."""
    return [instantiate(entry) for entry in (group or {}).values() if entry is not None]
