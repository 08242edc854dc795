"""Language-modelling data: a text dataset tokenized once, memory-mapped, cut into fixed-length blocks.

Batches are {"input_ids": LongTensor (B, T)}; labels are the inputs, shifted inside the model.
"""

from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import datasets
import lightning as L
from torch.utils.data import Dataset
from transformers import PreTrainedTokenizerBase

from .blocks import TokenBlocks
from .errors import DataNotPreparedError, not_prepared_message
from .loaders import SplitLoaders
from .options import plain, require_int
from .sources import DatasetSource, require_columns, select_splits, validate_splits
from .token_cache import (
    TokenFile,
    read_token_file,
    token_dtype,
    token_file_path,
    write_token_file,  # fmt: skip
)
from .tokenizer import load_tokenizer, tokenizer_fingerprint

DEFAULT_CACHE_DIR = "~/.cache/hopfield_attention/tokens"
DEFAULT_SPLITS = {"train": "train", "validation": "validation", "test": "test"}


class LanguageDataModule(SplitLoaders, L.LightningDataModule):
    """Causal-LM data from a Hugging Face text dataset (Hub name by default, or `local_path`).

    prepare_data tokenizes each configured split once (batched, `num_proc` processes) into
    <cache_dir>/<name>/<stage>-<tokenizer>-<hash>.bin; later runs find the file and read nothing else.
    """

    def __init__(
        self,
        name: str,
        hub_name: str | None = None,
        hub_config: str | None = None,
        hub_revision: str | None = None,
        text_field: str = "text",
        splits: Mapping[str, str] | None = None,
        holdout: Mapping | None = None,
        separator: str = "eos",
        local_path: Any = None,
        tokenizer: str | None = "gpt2",
        block_size: int = 1024,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        num_proc: int = 1,
        cache_dir: str = DEFAULT_CACHE_DIR,
        hf_cache_dir: str | None = None,
        pin_memory: bool = False,
    ):
        super().__init__()
        splits = plain(splits) if splits is not None else dict(DEFAULT_SPLITS)
        holdout = plain(holdout)
        validate_splits(splits, holdout, name)
        require_int(block_size, "block_size", name, minimum=2)  # a block must hold one input and one target
        require_int(batch_size, "batch_size", name)
        if eval_batch_size is not None:
            require_int(eval_batch_size, "eval_batch_size", name)
        require_int(num_proc, "num_proc", name)
        if not isinstance(separator, str):
            raise ValueError(f"{name}: data.separator={separator!r}; allowed: 'eos' or a string appended to each row")
        self.name = name
        self.source = DatasetSource(name, hub_name, hub_config, plain(local_path), hf_cache_dir, hub_revision)
        self.text_field = text_field
        self.splits = splits
        self.holdout = holdout
        self.separator = separator
        self.tokenizer_spec = tokenizer
        self.block_size = block_size
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.num_proc = num_proc
        self.cache_dir = Path(cache_dir).expanduser()
        self.pin_memory = pin_memory
        self.blocks: dict[str, TokenBlocks] = {}

    # -- what subclasses (the quickstart corpus) replace ------------------------------------------------
    def load_raw_splits(self) -> dict[str, datasets.Dataset]:
        """Our stages -> raw text datasets."""
        return select_splits(self.source.load(), self.splits, self.holdout, self.name)

    def build_tokenizer(self) -> PreTrainedTokenizerBase:
        if self.tokenizer_spec is None:
            raise ValueError(f"{self.name}: data.tokenizer is required ('gpt2' or a saved tokenizer directory)")
        return load_tokenizer(self.tokenizer_spec)

    def split_identity(self, stage: str) -> dict:
        """Which rows a stage holds: the split name, plus the holdout that carved it (if any)."""
        return {"data": self.source.identity(), "split": self.splits.get(stage), "holdout": self.holdout}

    # -- public attributes -----------------------------------------------------------------------------
    @cached_property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        return self.build_tokenizer()

    @cached_property
    def tokenizer_hash(self) -> str:
        return tokenizer_fingerprint(self.tokenizer)

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    @property
    def stages(self) -> list[str]:
        return list(self.splits) + [s for s in (self.holdout or {}).get("sizes", {}) if s not in self.splits]

    def token_file_path(self, stage: str) -> Path:
        key = {
            **self.split_identity(stage),
            "stage": stage,
            "text_field": self.text_field,
            "separator": self.separator,
            "tokenizer": self.tokenizer_hash,
        }
        label = Path(str(self.tokenizer.name_or_path)).name or "tokenizer"
        return token_file_path(self.cache_dir, self.name, stage, label, key)

    # -- Lightning hooks -------------------------------------------------------------------------------
    def missing_stages(self) -> list[str]:
        """The stages whose token file is not in the cache yet."""
        return [stage for stage in self.stages if self.cached(stage) is None]

    def cached(self, stage: str) -> TokenFile | None:
        """The stage's token file, checked against its metadata (TokenCacheMismatch); None when not built."""
        return read_token_file(self.token_file_path(stage), expected_dtype=token_dtype(self.vocab_size))

    def prepare_data(self) -> None:
        """Tokenize every stage whose token file is not cached yet.

        Not under DDP: Lightning runs this on one rank while the others wait at a barrier, so a missing
        cache is reported by `setup` on every rank instead (`python -m hopfield_attention.prepare` builds it).
        """
        missing = self.missing_stages()
        if not missing or self.world_size > 1:
            return
        raw = self.load_raw_splits()
        for stage in missing:
            require_columns(raw[stage], {"text_field": self.text_field}, self.name)
            path = self.token_file_path(stage)
            write_token_file(
                raw[stage],
                self.tokenizer,
                text_field=self.text_field,
                separator=self.separator,
                path=path,
                key={"dataset": self.name, "stage": stage, "file": path.name},
                num_proc=self.num_proc,
                description=f"Tokenizing {self.name} {stage}",
            )

    def setup(self, stage: str | None = None) -> None:
        if self.blocks:
            return
        token_files = self._token_files()
        if token_files is None and self.world_size > 1:
            what = f"the token cache of stage(s) {self.missing_stages()} is missing under {self.cache_dir}"
            raise DataNotPreparedError(not_prepared_message(self.name, what, self.world_size))
        if token_files is None:  # used without a Trainer, or prepare_data skipped: build the cache now
            self.prepare_data()
            token_files = self._token_files()
        self.blocks = {name: TokenBlocks(file, self.block_size) for name, file in token_files.items()}
        if len(self.blocks["train"]) < self.batch_size:
            raise ValueError(
                f"{self.name}: the train split gives {len(self.blocks['train'])} blocks of {self.block_size} tokens, "
                f"fewer than batch_size={self.batch_size}"
            )

    def _token_files(self) -> dict[str, TokenFile] | None:
        files = {stage: self.cached(stage) for stage in self.stages}
        return None if any(f is None for f in files.values()) else files

    @property
    def split_data(self) -> Mapping[str, Dataset]:
        return self.blocks

