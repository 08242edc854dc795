"""The errors a run raises when its data cannot be found, or is not ready for a distributed run."""

from ..errors import UserFacingError


class DatasetUnavailableError(UserFacingError, RuntimeError):
    """A dataset (or tokenizer) is neither reachable on the Hub nor supplied as a local copy.

    Raised at once from `prepare_data`/`setup`, `from None`, so the user reads one message that says
    what is missing and how to supply it, not a chain of network retries and tracebacks.
    """


class DataNotPreparedError(DatasetUnavailableError):
    """A distributed run found its data not prepared (token cache missing, dataset never converted).

    Preparing it there would keep every other process waiting at a barrier for as long as it takes
    (tokenizing BookCorpus: the best part of an hour; the process-group timeout: 30 minutes), so every
    rank raises this at once, before any collective, and the message says how to prepare the data.
    """


def not_prepared_message(dataset_name: str, what: str, world_size: int) -> str:
    """Three lines: what is missing, the command that prepares it, and the same on SLURM."""
    return (
        f"Dataset {dataset_name!r}: {what}; a distributed run ({world_size} processes) does not prepare data, the "
        f"others would wait past the process-group timeout.\n"
        f"Prepare it once, with this run's experiment and data overrides: python -m hopfield_attention.prepare "
        f"experiment=<name> [data.*=...]\n"
        f"(SLURM: sbatch slurm/prepare.sbatch experiment=<name>, then this job with --dependency=afterok:<its id>; "
        f"every node must see the prepared cache)"
    )
