"""Token ids of one split on disk: tokenized once, then memory-mapped by every later run.

Layout: <cache_dir>/<dataset>/<stage>-<tokenizer>-<key hash>.bin holds the ids back to back (uint16 when
the vocabulary fits, else uint32); a .json beside it records dtype, token count, byte size, the fingerprint of
its source (the hash of the full key, which also names the file) and a checksum of the file's first and last
SAMPLE_BYTES, and the full key. The key covers the data (Hub name/config or local files), the split choice,
the text field, the document separator and the tokenizer's vocabulary hash, so changing any of them tokenizes
again. Opening a file checks it against its .json cheaply (size, dtype, fingerprint, the sampled checksum; no
full read): a mismatch is one error naming the file and the `prepare` command, which rebuilds it.

Building a file: `datasets.map` tokenizes in batches (in `num_proc` processes) into Arrow files in a
temporary folder beside the token file; pyarrow flattens their id lists chunk by chunk into the .bin, with
no Python loop over rows or tokens; the folder is removed afterwards, so no tokenized copy is left behind
in the Hugging Face cache.
"""

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
from transformers import PreTrainedTokenizerBase

from ..errors import UserFacingError
from ..runs.atomic import reporting_full_disk, write_json

ROWS_PER_BATCH = 2000  # rows per tokenizer call and per Arrow record batch of the temporary files
SAMPLE_BYTES = 1 << 16  # the checksum covers this much at each end of the file
DTYPES = ("uint16", "uint32")


class TokenCacheMismatch(UserFacingError):
    """A token file that does not match its metadata (truncated, rewritten, of another source)."""

    def __init__(self, path: Path, why: str):
        super().__init__(f"token cache {path}: {why}; rebuild it with {rebuild_command()}")


@dataclass(frozen=True)
class TokenFile:
    """A finished token file: what TokenBlocks needs to memory-map it."""

    path: Path
    dtype: str
    num_tokens: int

    def open(self) -> np.memmap:
        return np.memmap(self.path, dtype=self.dtype, mode="r", shape=(self.num_tokens,))


def key_digest(key: Mapping) -> str:
    return hashlib.sha256(json.dumps(dict(key), sort_keys=True, default=str).encode()).hexdigest()[:16]


def token_file_path(cache_dir: str | Path, dataset_name: str, stage: str, tokenizer_label: str, key: Mapping) -> Path:
    digest = key_digest(key)
    safe_label = "".join(c if c.isalnum() or c in "-_." else "_" for c in tokenizer_label)[-40:]
    return Path(cache_dir).expanduser() / dataset_name / f"{stage}-{safe_label}-{digest}.bin"


def read_token_file(path: Path, expected_dtype: str | None = None) -> TokenFile | None:
    """The cached file checked against its .json, or None when it was never finished (the .json is written
    last); TokenCacheMismatch when it does not match. Older caches without the size, fingerprint and checksum
    fields get the checks their .json allows."""
    meta_path = path.with_suffix(".json")
    if not (path.exists() and meta_path.exists()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        dtype, num_tokens = meta["dtype"], meta["num_tokens"]
    except (ValueError, KeyError, TypeError) as error:
        raise TokenCacheMismatch(path, f"its metadata {meta_path.name} is unreadable ({error})") from None
    if dtype not in DTYPES or isinstance(num_tokens, bool) or not isinstance(num_tokens, int) or num_tokens < 1:
        raise TokenCacheMismatch(path, f"{meta_path.name} says dtype={dtype!r}, num_tokens={num_tokens!r} "
                                       f"(allowed: dtype one of {list(DTYPES)}, num_tokens >= 1)")  # fmt: skip
    if expected_dtype is not None and dtype != expected_dtype:
        raise TokenCacheMismatch(path, f"{meta_path.name} says {dtype}, the tokenizer's vocabulary needs {expected_dtype}")
    size, expected = path.stat().st_size, num_tokens * np.dtype(dtype).itemsize
    if size != expected:
        raise TokenCacheMismatch(path, f"{size:,} bytes, but {meta_path.name} says {num_tokens:,} tokens of {dtype} "
                                       f"({expected:,} bytes)")  # fmt: skip
    if "source" in meta and meta["source"] != path.stem.rsplit("-", 1)[-1]:
        raise TokenCacheMismatch(path, f"{meta_path.name} describes another source ({meta['source']})")
    if "sample_sha256" in meta and sample_checksum(path) != meta["sample_sha256"]:
        raise TokenCacheMismatch(path, "its contents differ from what was written (checksum of its ends)")
    return TokenFile(path=path, dtype=dtype, num_tokens=num_tokens)


def sample_checksum(path: Path) -> str:
    """sha256 of the first and last SAMPLE_BYTES (the whole file when smaller): cheap at any size."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        digest.update(handle.read(SAMPLE_BYTES))
        size = handle.seek(0, os.SEEK_END)
        handle.seek(max(SAMPLE_BYTES, size - SAMPLE_BYTES))
        digest.update(handle.read(SAMPLE_BYTES))
    return digest.hexdigest()


def rebuild_command() -> str:
    """`python -m hopfield_attention.prepare <this command's overrides>`: the same data, built again."""
    from hydra.core.hydra_config import HydraConfig

    overrides = []
    if HydraConfig.initialized():
        overrides = [o for o in HydraConfig.get().overrides.task if not o.lstrip("+~").startswith("hydra.")]
    return " ".join(["python -m hopfield_attention.prepare", *(overrides or ["experiment=<name> [data.*=...]"])])


def token_dtype(vocab_size: int) -> str:
    return "uint16" if vocab_size <= np.iinfo(np.uint16).max + 1 else "uint32"


def batch_encoder(tokenizer: PreTrainedTokenizerBase) -> Callable[[list[str]], list[list[int]]]:
    """texts -> token ids, no special tokens added.

    A fast tokenizer is called through its Rust backend (`encode_batch_fast`: threaded, no offsets): the
    transformers wrapper builds a BatchEncoding per call and costs about as much again as the encoding.
    """
    if tokenizer.is_fast:
        backend = tokenizer.backend_tokenizer
        encode_batch = getattr(backend, "encode_batch_fast", backend.encode_batch)  # _fast (no offsets): recent tokenizers
        return lambda texts: [e.ids for e in encode_batch(texts, add_special_tokens=False)]
    return lambda texts: tokenizer(texts, add_special_tokens=False)["input_ids"]


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
    Rows keep their order: the file is the split's token stream.
    """
    eos_id = tokenizer.eos_token_id if separator == "eos" else None
    if separator == "eos" and eos_id is None:
        raise ValueError(f"data.separator='eos' but tokenizer {tokenizer.name_or_path!r} has no eos token")
    dtype = token_dtype(len(tokenizer))
    encode = batch_encoder(tokenizer)
    suffix = "" if separator == "eos" else separator

    def encode_rows(batch: dict) -> dict:
        texts = batch[text_field] if not suffix else [text + suffix for text in batch[text_field]]
        return {"ids": encode(texts)}

    path.parent.mkdir(parents=True, exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(prefix=f".{path.stem}.", dir=path.parent))  # same disk as the result
    tmp_path = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        with reporting_full_disk(path), _one_thread_per_process(num_proc):  # judged before the files go
            tokenized = dataset.select_columns([text_field]).map(
                encode_rows,
                batched=True,
                batch_size=ROWS_PER_BATCH,
                writer_batch_size=ROWS_PER_BATCH,
                num_proc=num_proc if num_proc and num_proc > 1 else None,
                remove_columns=[text_field],
                features=datasets.Features({"ids": datasets.Sequence(datasets.Value(dtype))}),
                cache_file_name=str(work_dir / "ids.arrow"),
                load_from_cache_file=False,
                desc=description,
            )
            num_tokens = _write_ids(tokenized.data.column("ids"), tmp_path, dtype, eos_id)
        del tokenized  # closes the memory-mapped Arrow files before their folder goes
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    if num_tokens == 0:
        tmp_path.unlink(missing_ok=True)
        raise ValueError(f"{description}: the split holds no tokens (is data.text_field={text_field!r} right?)")
    os.replace(tmp_path, path)
    meta = {"dtype": dtype, "num_tokens": num_tokens, "bytes": path.stat().st_size,
            "source": path.stem.rsplit("-", 1)[-1], "sample_sha256": sample_checksum(path),
            "tokenizer": tokenizer.name_or_path, "key": dict(key)}  # fmt: skip
    write_json(path.with_suffix(".json"), meta, default=str)  # last, atomically: marks the cache entry complete
    return TokenFile(path=path, dtype=dtype, num_tokens=num_tokens)


@contextmanager
def _one_thread_per_process(num_proc: int | None) -> Iterator[None]:
    """With num_proc worker processes, each encodes on one thread: the processes are the parallelism.

    A fast tokenizer otherwise starts a thread per core in every worker (num_proc x cores threads). The
    worker processes inherit the environment, which the tokenizers library reads at each call; a value the
    user set is kept.
    """
    if not num_proc or num_proc <= 1 or "TOKENIZERS_PARALLELISM" in os.environ:
        yield
        return
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        yield
    finally:
        del os.environ["TOKENIZERS_PARALLELISM"]


def _write_ids(ids: pa.ChunkedArray, out_path: Path, dtype: str, eos_id: int | None) -> int:
    """Append each chunk's flattened ids (and an eos after every row) to `out_path`; returns the count."""
    num_tokens = 0
    with open(out_path, "wb") as out:
        for chunk in ids.chunks:  # a ListArray of rows
            values = chunk.flatten().to_numpy(zero_copy_only=False)  # (tokens in chunk,)
            if eos_id is not None:
                offsets = chunk.offsets.to_numpy()  # (rows + 1,), into the chunk's values
                row_ends = offsets[1:] - offsets[0]
                values = np.insert(values, row_ends, np.array(eos_id, dtype=values.dtype))
            out.write(np.ascontiguousarray(values, dtype=dtype).tobytes())
            num_tokens += values.size
    return num_tokens
