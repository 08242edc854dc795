"""Errors whose message says all a user needs: what is wrong and what to do. The command line shows them as
one short message, without their type or a traceback (cli.py); every other error also names its type."""


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
