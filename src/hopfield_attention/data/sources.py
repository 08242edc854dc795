"""Where raw examples come from: a Hub dataset by name, or a local copy in the same schema.

`local_path` (the `data.local_path=` override) takes, in order of preference:
  * a directory of data files whose names carry the split, as in a Hub snapshot's config folder
    (`train-00000-of-00002.parquet`, `validation-*.parquet`, `test.jsonl`, or `train/`, `test/` folders,
    also image folders `train/<class>/<image>.png`): `datasets` infers the format and the splits;
  * a directory written by `DatasetDict.save_to_disk` (Arrow, with `dataset_dict.json`);
  * a directory of idx files (MNIST's format: `train-images-idx3-ubyte.gz`, `t10k-labels-idx1-ubyte`, ...),
    read into `image`/`label` columns once and cached (data/idx.py);
  * one file (.parquet, .json, .jsonl, .csv, .txt, .arrow): used as the train split;
  * a mapping split -> file or list of files, e.g. `data.local_path={train:a.parquet,test:b.parquet}`.

Held-out stages (`data.holdout`) are carved from the train split when a dataset has no validation or
test split of its own. `order` says how, and must be given: `contiguous` takes the last rows of the split
(a corpus whose rows are sentences of books in order keeps its order: the train stream and each held-out
stretch are runs of consecutive rows), `shuffled` draws the rows by `seed` (images, whose order means
nothing). `sizes` are fractions of the whole train split (or row counts), carved in the order given.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from .errors import DatasetUnavailableError
from .hub import hub_offline_mode, hub_unavailable_reason
from .idx import idx_cache_dir, is_idx_directory, load_idx_dataset

STAGES = ("train", "validation", "test")
HOLDOUT_ORDERS = ("contiguous", "shuffled")
BUILDER_BY_SUFFIX = {
    ".parquet": "parquet",
    ".json": "json",
    ".jsonl": "json",
    ".csv": "csv",
    ".txt": "text",
    ".arrow": "arrow",
}


@dataclass(frozen=True)
class DatasetSource:
    """A dataset as named on the Hub, optionally replaced by a local copy with the same columns."""

    name: str  # our name (wikitext103, cifar100): in messages and cache keys
    hub_name: str | None
    hub_config: str | None = None
    local_path: Any = None  # str, path, or mapping split -> file(s); see the module docstring
    hf_cache_dir: str | None = None  # None: the Hugging Face default (HF_HOME / HF_DATASETS_CACHE)
    hub_revision: str | None = None  # a branch or commit, e.g. refs/convert/parquet for script-era datasets
    install_hint: str | None = None  # how to get a missing local copy (e.g. the Debian package's apt command)

    def identity(self) -> str:
        """What the data is, for cache keys: the Hub name and config, or the resolved local files."""
        if self.local_path is None:
            return f"hub:{self.hub_name}:{self.hub_config}:{self.hub_revision}"
        if isinstance(self.local_path, Mapping):
            files = {split: [str(Path(f).expanduser().resolve()) for f in _as_list(v)] for split, v in self.local_path.items()}
            return f"local:{sorted(files.items())}"
        return f"local:{Path(self.local_path).expanduser().resolve()}"

    def load(self) -> datasets.DatasetDict:
        """All splits of the dataset; raises DatasetUnavailableError when it cannot be had.

        The first call downloads and/or converts the data into the Hugging Face cache (Arrow files);
        later calls memory-map that copy.
        """
        if self.local_path is None:
            if self.hub_name is None:
                raise ValueError(f"dataset {self.name!r} has no hub_name: set data.local_path=<dir or files>")
            return self._load_hub()
        directory = self._local_directory()
        if directory is not None and (directory / "dataset_dict.json").exists():
            return _as_dataset_dict(datasets.load_from_disk(str(directory)))
        if directory is not None and is_idx_directory(directory):
            return load_idx_dataset(directory, self._cache_root())
        path, kwargs = self._builder_arguments()
        return _as_dataset_dict(datasets.load_dataset(path, **kwargs))

    def is_prepared(self) -> bool:
        """Would `load` find a finished copy in the cache, with no download or conversion? Reads no data."""
        if self.local_path is None and self.hub_name is None:
            return False
        if self.local_path is None and hub_unavailable_reason() is not None and not hub_offline_mode():
            return False  # asking would retry the unreachable Hub for half a minute
        directory = self._local_directory() if self.local_path is not None else None
        if directory is not None and (directory / "dataset_dict.json").exists():
            return True
        if directory is not None and is_idx_directory(directory):
            return idx_cache_dir(directory, self._cache_root()).is_dir()
        path, kwargs = self._builder_arguments()
        try:
            builder = datasets.load_dataset_builder(path, **kwargs)
        except Exception:  # offline and never downloaded, or gone from the Hub: certainly not prepared
            return False
        return Path(builder.cache_dir).is_dir()  # written under another name, renamed when complete

    def _local_directory(self) -> Path | None:
        if isinstance(self.local_path, Mapping):
            return None
        path = self._existing(self.local_path)
        return path if path.is_dir() else None

    def _builder_arguments(self) -> tuple[str, dict]:
        """(path, keyword arguments) of datasets.load_dataset / load_dataset_builder for this source."""
        if self.local_path is None:
            return self.hub_name, {"name": self.hub_config, "revision": self.hub_revision, "cache_dir": self.hf_cache_dir}
        if isinstance(self.local_path, Mapping):
            files = {str(split): [str(self._existing(f)) for f in _as_list(v)] for split, v in self.local_path.items()}
            first = next(iter(files.values()))[0]
            return _builder_for(first, self.name), {"data_files": files, "cache_dir": self.hf_cache_dir}
        path = self._existing(self.local_path)
        if path.is_file():
            return _builder_for(path, self.name), {"data_files": {"train": str(path)}, "cache_dir": self.hf_cache_dir}
        return str(path), {"cache_dir": self.hf_cache_dir}

    def _cache_root(self) -> Path:
        return Path(self.hf_cache_dir or datasets.config.HF_DATASETS_CACHE).expanduser()

    def _load_hub(self) -> datasets.DatasetDict:
        reason = hub_unavailable_reason()
        if reason is not None and not hub_offline_mode():
            # Not in offline mode but no network: the libraries would retry for ~24 s, then fail.
            raise DatasetUnavailableError(self.unavailable_message(reason)) from None
        path, kwargs = self._builder_arguments()
        try:
            loaded = datasets.load_dataset(path, **kwargs)
        except (ConnectionError, FileNotFoundError) as exc:  # offline and not cached; or gone from the Hub
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DatasetUnavailableError(self.unavailable_message(reason or detail)) from None
        return _as_dataset_dict(loaded)

    def _existing(self, path: Any) -> Path:
        resolved = Path(str(path)).expanduser()
        if resolved.exists():
            return resolved
        if self.install_hint:
            raise DatasetUnavailableError(
                f"Dataset {self.name!r}: data.local_path entry {str(path)!r} does not exist.\n"
                f"Install it with:  {self.install_hint}\n"
                f"or point data.local_path=<directory> at a copy in the same format."
            )
        raise FileNotFoundError(f"{self.name}: data.local_path entry {str(path)!r} does not exist")

    def unavailable_message(self, reason: str) -> str:
        hub = f"{self.hub_name!r}" + (f" (config {self.hub_config!r})" if self.hub_config else "")
        config_arg = f", {self.hub_config!r}" if self.hub_config else ""
        if self.hub_revision:
            config_arg += f", revision={self.hub_revision!r}"
        return (
            f"Dataset {self.name!r} (Hugging Face Hub: {hub}) is not available: {reason}, and it is not in "
            f"the local Hugging Face cache.\n"
            f"Supply a local copy with the same columns:  data.local_path=<directory or files>  (parquet, json, "
            f"csv, txt or arrow files named by split, e.g. train-*.parquet and validation-*.parquet, or a "
            f"DatasetDict.save_to_disk directory),\n"
            f"or download it once on a machine with network access:  "
            f"python -c \"import datasets; datasets.load_dataset({self.hub_name!r}{config_arg})\"  "
            f"and then run with HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 to use that cached copy."
        )


def validate_splits(splits: Mapping[str, str], holdout: Mapping | None, dataset_name: str) -> None:
    """Check stage names and the holdout before any data is read."""
    unknown = sorted(set(splits) - set(STAGES))
    if unknown:
        raise ValueError(f"{dataset_name}: unknown stage(s) {unknown} in data.splits; allowed: {list(STAGES)}")
    if "train" not in splits:
        raise ValueError(f"{dataset_name}: data.splits must name the dataset split used for 'train'")
    for stage, split in splits.items():
        if not isinstance(split, str) or not split:
            raise ValueError(f"{dataset_name}: data.splits.{stage}={split!r} must be a dataset split name")
    if holdout is not None:
        validate_holdout(holdout, dataset_name)


def validate_holdout(holdout: Mapping, dataset_name: str) -> None:
    order = holdout.get("order")
    if order not in HOLDOUT_ORDERS:
        raise ValueError(
            f"{dataset_name}: data.holdout.order={order!r}; allowed: 'contiguous' (the last rows of the train "
            f"split, corpus order kept) or 'shuffled' (rows drawn by data.holdout.seed)"
        )
    allowed = {"sizes", "order"} | ({"seed"} if order == "shuffled" else set())
    if not isinstance(holdout.get("sizes"), Mapping) or set(holdout) - allowed or (order == "shuffled") != ("seed" in holdout):
        raise ValueError(
            f"{dataset_name}: data.holdout with order {order!r} takes the keys {sorted(allowed)}, got {sorted(holdout)}"
        )
    for stage, size in holdout["sizes"].items():
        if stage not in ("validation", "test"):
            raise ValueError(f"{dataset_name}: data.holdout.sizes.{stage}: only 'validation' and 'test' can be held out")
        is_fraction = isinstance(size, float) and 0.0 < size < 1.0
        is_count = isinstance(size, int) and not isinstance(size, bool) and size > 0
        if not (is_fraction or is_count):
            raise ValueError(
                f"{dataset_name}: data.holdout.sizes.{stage}={size!r}; allowed: a fraction in (0, 1) or a count > 0"
            )


def select_splits(
    loaded: datasets.DatasetDict, splits: Mapping[str, str], holdout: Mapping | None, dataset_name: str
) -> dict[str, datasets.Dataset]:
    """Map our stages to the dataset's splits; carve held-out stages from the train split."""
    for stage, split in splits.items():
        if split not in loaded:
            raise ValueError(
                f"{dataset_name}: split {split!r} (data.splits.{stage}) is not in the dataset; "
                f"available splits: {sorted(loaded)}"
            )
    chosen = {stage: loaded[split] for stage, split in splits.items()}
    if holdout is not None:
        chosen.update(carve_holdout(chosen["train"], holdout, dataset_name))
    return chosen


def carve_holdout(rows: datasets.Dataset, holdout: Mapping, dataset_name: str) -> dict[str, datasets.Dataset]:
    """The held-out stages and what is left for train (the module docstring says how)."""
    total = len(rows)
    counts = {stage: math.ceil(size * total) if isinstance(size, float) else size for stage, size in holdout["sizes"].items()}
    if sum(counts.values()) >= total:
        raise ValueError(
            f"{dataset_name}: data.holdout.sizes {dict(holdout['sizes'])} hold out {sum(counts.values())} of the "
            f"{total} train rows, leaving none to train on"
        )
    carved = {}
    if holdout["order"] == "contiguous":  # [train | first held-out stage | second ...]: every part a row range
        end = total
        for stage, count in reversed(counts.items()):
            carved[stage] = rows.select(range(end - count, end))
            end -= count
        carved["train"] = rows.select(range(end))
        return carved
    rest = rows
    for stage, count in counts.items():  # fixed order of the config: reproducible
        parts = rest.train_test_split(test_size=count, seed=holdout["seed"], shuffle=True)
        rest, carved[stage] = parts["train"], parts["test"]
    carved["train"] = rest
    return carved


def require_columns(dataset: datasets.Dataset, fields: Mapping[str, str], dataset_name: str) -> None:
    """Each configured field (text_field, image_field, label_field) must be a column of the data."""
    for key, column in fields.items():
        if column not in dataset.column_names:
            raise ValueError(
                f"{dataset_name}: data.{key}={column!r} is not a column of the dataset; "
                f"available columns: {dataset.column_names}"
            )


def _as_dataset_dict(loaded: datasets.Dataset | datasets.DatasetDict) -> datasets.DatasetDict:
    return loaded if isinstance(loaded, datasets.DatasetDict) else datasets.DatasetDict({"train": loaded})


def _as_list(value: Any) -> list:
    return [value] if isinstance(value, (str, Path)) else list(value) if isinstance(value, Sequence) else [value]


def _builder_for(path: Any, dataset_name: str) -> str:
    suffix = Path(str(path)).suffix.lower()
    if suffix not in BUILDER_BY_SUFFIX:
        raise ValueError(
            f"{dataset_name}: cannot read {str(path)!r}; allowed file types: {sorted(BUILDER_BY_SUFFIX)} "
            f"(or a directory of them, or a save_to_disk directory)"
        )
    return BUILDER_BY_SUFFIX[suffix]
