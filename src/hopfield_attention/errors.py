"""Errors whose message says all a user needs: what is wrong and what to do. The command line shows them as
one short message, without their type or a traceback (cli.py); every other error also names its type."""


class UserFacingError(Exception):
    """Raised for a run that cannot go on as asked (a busy or conflicting run directory, missing data)."""


class Interrupted(UserFacingError):
    """A run stopped by a signal after saving what it had (raised at a safe point, runs/signals.py)."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum
