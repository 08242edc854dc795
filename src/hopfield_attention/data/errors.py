"""The one error a run raises when its data cannot be found."""

from hopfield_attention.errors import UserFacingError


class DatasetUnavailableError(UserFacingError, RuntimeError):
    """A dataset (or tokenizer) is neither reachable on the Hub nor supplied as a local copy.

    Raised at once from `prepare_data`/`setup`, `from None`, so the user reads one message that says
    what is missing and how to supply it, not a chain of network retries and tracebacks.
    """
