"""Token ids of one split on disk: tokenized once, then memory-mapped by every later run.

Layout: <cache_dir>/<dataset>/<stage>-<tokenizer>-<key hash>.bin holds the ids back to back (uint16 when
the vocabulary fits, else uint32); a .json beside it records dtype, token count and the full key. The key
covers the data (Hub name/config or local files), the split choice, the text field, the document
separator and the tokenizer's vocabulary hash, so changing any of them tokenizes again.
"""

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
from transformers import PreTrainedTokenizerBase

WRITE_ROWS_PER_CHUNK = 4096


@dataclass(frozen=True)
class TokenFile:
    """A finished token file: what TokenBlocks needs to memory-map it."""

    path: Path
    dtype: str
    num_tokens: int

    def open(self) -> np.memmap:
        return np.memmap(self.path, dtype=self.dtype, mode="r", shape=(self.num_tokens,))


def token_file_path(cache_dir: str | Path, dataset_name: str, stage: str, tokenizer_label: str, key: Mapping) -> Path:
    digest = hashlib.sha256(json.dumps(dict(key), sort_keys=True, default=str).encode()).hexdigest()[:16]
    safe_label = "".join(c if c.isalnum() or c in "-_." else "_" for c in tokenizer_label)[-40:]
    return Path(cache_dir).expanduser() / dataset_name / f"{stage}-{safe_label}-{digest}.bin"


def read_token_file(path: Path) -> TokenFile | None:
    """The cached file, or None when it was never finished (the .json is written last)."""
    meta_path = path.with_suffix(".json")
    if not (path.exists() and meta_path.exists()):
        return None
    meta = json.loads(meta_path.read_text())
    return TokenFile(path=path, dtype=meta["dtype"], num_tokens=meta["num_tokens"])


def write_token_file(
    dataset: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    *,
    text_field: str,
    separator: str,
    path: Path,
    key: Mapping,
    num_proc: int | None = None,
    description: str = "Tokenizing",
) -> TokenFile:
    """Tokenize `dataset[text_field]` in batches (in parallel with num_proc) into a memory-mapped file.

    separator "eos" appends the tokenizer's end-of-text id after every row (documents); any other string
    is appended to every row's text before tokenization ("" for rows that already end with a newline).
    """
    eos_id = tokenizer.eos_token_id if separator == "eos" else None
    if separator == "eos" and eos_id is None:
        raise ValueError(f"data.separator='eos' but tokenizer {tokenizer.name_or_path!r} has no eos token")

    def encode(batch: dict) -> dict:
        texts = batch[text_field] if separator == "eos" else [text + separator for text in batch[text_field]]
        ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
        if eos_id is not None:
            ids = [row + [eos_id] for row in ids]
        return {"ids": ids, "num_ids": [len(row) for row in ids]}

    tokenized = dataset.map(
        encode,
        batched=True,
        num_proc=num_proc if num_proc and num_proc > 1 else None,
        remove_columns=dataset.column_names,
        desc=description,
    )
    num_tokens = int(np.sum(tokenized.with_format("numpy")["num_ids"]))
    if num_tokens == 0:
        raise ValueError(f"{description}: the split holds no tokens (is data.text_field={text_field!r} right?)")
    dtype = "uint16" if len(tokenizer) <= np.iinfo(np.uint16).max + 1 else "uint32"

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.with_name(path.name + f".tmp{os.getpid()}")
    ids_out = np.memmap(tmp_path, dtype=dtype, mode="w+", shape=(num_tokens,))
    position = 0
    for start in range(0, len(tokenized), WRITE_ROWS_PER_CHUNK):
        rows = tokenized[start : start + WRITE_ROWS_PER_CHUNK]["ids"]
        chunk = np.fromiter((i for row in rows for i in row), dtype=dtype)
        ids_out[position : position + len(chunk)] = chunk
        position += len(chunk)
    ids_out.flush()
    del ids_out
    os.replace(tmp_path, path)
    meta = {"dtype": dtype, "num_tokens": num_tokens, "tokenizer": tokenizer.name_or_path, "key": dict(key)}
    meta_tmp = path.with_name(path.name + f".json.tmp{os.getpid()}")
    meta_tmp.write_text(json.dumps(meta, indent=2, default=str))
    os.replace(meta_tmp, path.with_suffix(".json"))  # last: marks the cache entry complete
    return TokenFile(path=path, dtype=dtype, num_tokens=num_tokens)
