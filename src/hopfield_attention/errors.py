"""Errors whose message says all a user needs: what is wrong and what to do. The command line shows them as
one short message, without their type or a traceback (cli/app.py); every other error also names its type."""

from __future__ import annotations

import re

import hydra
from hydra.errors import (
    ConfigCompositionException,
    MissingConfigException,
    OverrideParseException,
)
from omegaconf.errors import OmegaConfBaseException


class UserFacingError(Exception):
    """Raised for a run that cannot go on as asked (a busy or conflicting run directory, missing data)."""


class Interrupted(UserFacingError):
    """A run stopped by a signal after saving what it had (raised at a safe point, runs/signals.py)."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum


class DiskFull(UserFacingError, OSError):
    """A write that failed because its disk is full: the path, not the writer's own error (a zip writer's
    "unexpected pos", a bare errno 28). The original stays chained as the cause."""

    def __init__(self, path: object):
        super().__init__(f"no space left on the device while writing {path}")
        self.errno = 28  # ENOSPC
        self.filename = str(path)

    def __str__(self) -> str:
        return str(self.args[0])


MAX_LINES = 3
# Errors whose message is the whole story (a value, key or file the user chose); others also name their type.
USER_ERRORS = (UserFacingError, ValueError, TypeError, FileNotFoundError, KeyError, OmegaConfBaseException,
               hydra.errors.HydraException)  # fmt: skip


def short_message(error: BaseException) -> str:
    """`error` as at most MAX_LINES lines for a person: the message, condensed where a library's is long."""
    text = str(error).strip()
    if isinstance(error, MissingConfigException):
        text = _condensed_missing_config(text)
    elif isinstance(error, (ConfigCompositionException, OverrideParseException)):
        text = _condensed_override_error(error, text)
    elif isinstance(error, OmegaConfBaseException):
        text = text.split("\n    full_key:")[0]
    if not text:
        text = type(error).__name__
    elif not isinstance(error, USER_ERRORS):
        text = f"{type(error).__name__}: {text}"
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    if len(lines) > MAX_LINES:
        lines = lines[: MAX_LINES - 1] + [lines[MAX_LINES - 1] + " ..."]
    return "\n".join(lines)


def _condensed_missing_config(text: str) -> str:
    """Hydra's 'Could not find ...' with its option list on one line and without the search path."""
    head = text.split("\n")[0]
    options = re.search(r"Available options in '([^']+)':\n((?:\t.*\n?)+)", text)
    if options:
        names = ", ".join(line.strip() for line in options.group(2).splitlines() if line.strip())
        head += f"; options of {options.group(1)}: {names}"
    return head


def _condensed_override_error(error: BaseException, text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("To append")]
    cause = error.__cause__
    if isinstance(cause, OmegaConfBaseException):
        lines.append(str(cause).split("\n")[0])
    lines = [line for line in lines if not line.lstrip().startswith(("full_key:", "object_type"))]
    if "is not in struct" in " ".join(lines):
        key = re.search(r"Could not override '([^']+)'", text)
        hint = f" (a new key is added with +{key.group(1)}=...)" if key else ""
        return f"{lines[0]} {lines[-1]}{hint}"
    return "\n".join(lines)
