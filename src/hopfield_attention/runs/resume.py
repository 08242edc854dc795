"""What an existing run directory, or an explicit `ckpt_path`, means for a run about to start.

    fresh     no earlier attempt that trained (no checkpoint): start from scratch, or from `ckpt_path`
    resume    the directory holds checkpoints of the same run: continue from the newest intact one, by the
              step recorded inside it (runs/newest.py: hpc_ckpt_<n>.ckpt, checkpoints/last.ckpt or a best
              checkpoint; a damaged one is skipped and listed); also a finished run whose step or epoch budget
              has grown
    finished  its record says finished, for the same run and budget: nothing to do

The same run means the same cell definition (runs/definition.py) except the step or epoch budget, which may
grow. Anything else is refused with the keys that differ: another config in a directory that holds checkpoints,
a `ckpt_path` trained with other settings, or a `ckpt_path` beside a directory's own checkpoints (the directory's
newest is what a requeued job must continue from; naming another file there would silently go back in time).

The directory's `.hydra/config.yaml` is what the run last wrote, not an input: a run takes its settings from its
command line. One edited by hand since (its fingerprint, `.hydra/config.yaml.sha256`, no longer matches) is
moved aside as `config.yaml.edited`, never overwritten, and a warning names the keys where it differs from the
settings the run uses (`saved_config_guard`, around the run's save of the file).
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from ..errors import UserFacingError
from .atomic import atomic_file
from .definition import BUDGET_KEYS, definition, describe, differences, flat
from .newest import newest_intact
from .record import RESULTS_FILE, read_record


class RunConflict(UserFacingError):
    """The run cannot start here as configured; the message says why and what to do."""


@dataclass(frozen=True)
class Plan:
    action: str  # fresh | resume | finished
    ckpt_path: str | None = None
    previous: dict | None = None  # the earlier attempt's record, if readable
    step: int | None = None  # the step recorded in the checkpoint resumed from
    skipped: tuple[tuple[str, str], ...] = ()  # (path, why): the directory's checkpoints that could not be used
    set_aside: str | None = None  # where an earlier results.json that is no valid record was moved

    def resume_facts(self) -> dict | None:
        """What the record says about the checkpoint this run continues from (None for a fresh run)."""
        if self.action != "resume" and not self.skipped:
            return None
        return {"ckpt_path": self.ckpt_path, "step": self.step, "skipped": [list(item) for item in self.skipped]}


def checkpoint_config(path: str | Path, key: str = "ckpt_path") -> dict[str, Any]:
    """The run config stored in a checkpoint written by hopfield_attention.train; clear errors otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{key}={str(path)!r} is not a file")
    if path.stat().st_size == 0:
        raise ValueError(f"{key}={str(path)!r} is empty (0 bytes): not a checkpoint")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{key}={str(path)!r} is not a checkpoint written by torch.save (not a torch zip archive)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # noqa: BLE001 - any reason it cannot be read is the same message to the user
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"{key}={str(path)!r} cannot be read as a checkpoint ({reason[:200]})") from None
    cfg = (checkpoint.get("hyper_parameters") or {}).get("cfg") if isinstance(checkpoint, dict) else None
    if not isinstance(cfg, dict):
        raise ValueError(f"{key}={str(path)!r} was not written by hopfield_attention.train (it holds no run config)")
    return cfg


def same_run(new: dict, old: dict) -> dict[str, list]:
    """Where two definitions differ, budget aside."""
    return differences(new, old, ignore=BUDGET_KEYS)


def plan_run(run_dir: str | Path, run_definition: dict, ckpt_path: str | None) -> Plan:
    run_dir = Path(run_dir)
    previous, set_aside = _previous_record(run_dir)
    found = newest_intact(run_dir)
    newest, skipped = found.path, tuple(found.skipped)
    earlier = _earlier_definition(previous, newest)
    if earlier is not None:
        changed = same_run(run_definition, earlier)
        if changed and (newest is not None or (previous or {}).get("status") == "finished"):
            raise RunConflict(
                f"{run_dir} holds a run with other settings ({describe(changed)}); continue it with its own "
                f"settings, or start afresh in a new directory (leave hydra.run.dir unset, or delete {run_dir})"
            )
    if newest is not None and ckpt_path is not None and Path(ckpt_path).resolve() != newest.resolve():
        raise RunConflict(
            f"ckpt_path={ckpt_path!r}, but {run_dir} holds its own checkpoints (newest: {newest.name}), which a run "
            f"in this directory continues from; drop ckpt_path to continue them, or start in a new directory to "
            f"continue from {ckpt_path}"
        )
    budget_grew = earlier is not None and bool(differences(run_definition, earlier, ignore={"seed"}))
    if previous is not None and previous.get("status") == "finished" and earlier is not None and not budget_grew:
        return Plan("finished", previous=previous, skipped=skipped, set_aside=set_aside)
    if newest is not None:
        return Plan("resume", str(newest), previous, found.step, skipped, set_aside)
    if ckpt_path is not None:
        changed = same_run(run_definition, definition(OmegaConf.create(checkpoint_config(ckpt_path))))
        if changed:
            raise RunConflict(
                f"ckpt_path={ckpt_path!r} was trained with other settings ({describe(changed)}); resume it with the "
                "same settings (only trainer.max_steps and trainer.max_epochs may change)"
            )
        return Plan("resume", str(ckpt_path), previous, None, skipped, set_aside)
    return Plan("fresh", None, previous, None, skipped, set_aside)


def _previous_record(run_dir: Path) -> tuple[dict | None, str | None]:
    """The earlier attempt's record; one that is no valid record is moved aside (kept, never overwritten) and
    the checkpoints alone decide. Returns (record, where a bad one went)."""
    path = run_dir / RESULTS_FILE
    if not path.is_file():
        return None, None
    try:
        return read_record(path), None
    except (OSError, ValueError) as error:
        aside = path.with_name(f"{RESULTS_FILE}.invalid")
        path.replace(aside)
        print(f"warning: {error}; moved to {aside.name}, a new record replaces it", file=sys.stderr)
        return None, str(aside)


def _earlier_definition(previous: dict | None, newest: Path | None) -> dict | None:
    cell = (previous or {}).get("cell") or {}
    if isinstance(cell.get("definition"), dict):
        return cell["definition"]
    if newest is not None:
        return definition(OmegaConf.create(checkpoint_config(newest, key="the run directory's checkpoint")))
    return None


SAVED_CONFIG = Path(".hydra") / "config.yaml"


def _fingerprint_path(config_path: Path) -> Path:
    return config_path.with_name(config_path.name + ".sha256")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def edited_saved_config(run_dir: str | Path, cfg: DictConfig) -> str | None:
    """If the run directory's .hydra/config.yaml was edited since the run wrote it, move it aside (kept as
    config.yaml.edited) and return the warning that says so, naming the keys where the edited file differs from
    `cfg`, the settings this run uses; else None. A file without a fingerprint (written before fingerprints,
    or by another tool) is left to be overwritten as before."""
    path = Path(run_dir) / SAVED_CONFIG
    fingerprint = _fingerprint_path(path)
    if not path.is_file() or not fingerprint.is_file():
        return None
    if fingerprint.read_text(encoding="utf-8").strip() == _sha256(path):
        return None
    try:
        edited = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
        changed = differences(flat(edited), flat(OmegaConf.to_container(cfg, resolve=True)), ignore=())
        what = (
            f"(this run's setting -> the edited file's: {describe(changed)})"
            if changed
            else "(the same settings, written differently)"
        )
    except Exception:  # noqa: BLE001 - an edit that broke the YAML is still an edit
        what = "(no longer readable YAML)"
    aside = path.with_name(path.name + ".edited")
    path.replace(aside)
    return (
        f"warning: {path} was edited since this run wrote it {what}; a run takes its settings from its command "
        f"line, not from that file: the edit is kept as {aside.name} and {path.name} is rewritten with the settings "
        "used (to change a setting, pass it on the command line)"
    )


@contextlib.contextmanager
def saved_config_guard(run_dir: str | Path, cfg: DictConfig) -> Iterator[None]:
    """Around the run's save of .hydra/config.yaml: first a hand edit of the earlier file is moved aside with a
    warning on stderr (`edited_saved_config`), then the new file's fingerprint is written beside it."""
    warning = edited_saved_config(run_dir, cfg)
    if warning:
        print(warning, file=sys.stderr)
    yield
    path = Path(run_dir) / SAVED_CONFIG
    if path.is_file():
        with atomic_file(_fingerprint_path(path)) as handle:  # a full disk is reported with the path
            handle.write(_sha256(path) + "\n")
