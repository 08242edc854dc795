"""The errors a run raises when its data cannot be found, or is not ready for a distributed run."""


class DatasetUnavailableError(RuntimeError):
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
    return (
        f"Dataset {dataset_name!r}: {what}, and this is a distributed run of {world_size} processes: preparing "
        f"the data here would keep the other processes waiting past the process-group timeout.\n"
        f"Prepare it once first, with the same experiment and data overrides as this run:\n"
        f"  python -m hopfield_attention.prepare experiment=<name> [data.*=...]\n"
        f"or on SLURM:  sbatch slurm/prepare.sbatch experiment=<name> [data.*=...]  and submit the training "
        f"job with --dependency=afterok:<that job's id>. Every node must see the prepared cache (a shared "
        f"file system), or prepare on each node."
    )
