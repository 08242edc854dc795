"""Tokenizers: GPT-2's from the Hub (or its cache), a saved directory, or a byte-level BPE trained here."""

import hashlib
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from ..runs.atomic import reporting_full_disk
from .errors import DatasetUnavailableError
from .hub import hub_offline_mode, hub_unavailable_reason

END_OF_TEXT = "<|endoftext|>"  # GPT-2's document separator, reused by our own tokenizers


def load_tokenizer(spec: str) -> PreTrainedTokenizerBase:
    """`spec` is a Hub tokenizer name ("gpt2") or a directory saved with `save_pretrained`."""
    if not isinstance(spec, (str, os.PathLike)) or not str(spec):
        raise ValueError(f"data.tokenizer={spec!r}: give a Hub tokenizer name such as 'gpt2' or a saved directory")
    path = Path(spec).expanduser()
    if path.is_dir():
        return AutoTokenizer.from_pretrained(str(path))
    if path.is_absolute() or str(spec).startswith((".", "~")) or path.exists():
        raise ValueError(f"data.tokenizer={str(spec)!r} is not a directory saved with tokenizer.save_pretrained")
    reason = hub_unavailable_reason()
    # Without offline mode but with no network, transformers would retry for half a minute: read the cache only.
    local_only = reason is not None and not hub_offline_mode()
    try:
        return AutoTokenizer.from_pretrained(str(spec), local_files_only=local_only)
    except OSError:
        raise DatasetUnavailableError(
            f"Tokenizer {str(spec)!r} is not available: {reason or 'the Hub did not provide it'}, and it is not in "
            f"the local Hugging Face cache.\n"
            f"Supply a saved tokenizer directory with  data.tokenizer=<dir>  (written by "
            f"tokenizer.save_pretrained(<dir>)), or download it once with network access:  "
            f"python -c \"from transformers import AutoTokenizer; AutoTokenizer.from_pretrained({str(spec)!r})\""
        ) from None


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """A short hash of the full vocabulary and merges: a retrained tokenizer never reuses a stale cache."""
    if tokenizer.is_fast:
        serialized = tokenizer.backend_tokenizer.to_str()
    else:
        serialized = json.dumps(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(serialized.encode()).hexdigest()[:12]


def train_byte_level_bpe(texts: Iterable[str], vocab_size: int, out_dir: Path) -> PreTrainedTokenizerFast:
    """Train a GPT-2-style byte-level BPE on `texts` and save it where `AutoTokenizer` can load it.

    Built from a `tokenizers.Tokenizer` object: `GPT2TokenizerFast(vocab_file=...)` silently ignores its
    files in transformers 5.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if not isinstance(vocab_size, int) or vocab_size <= 257:
        raise ValueError(f"tokenizer vocab_size={vocab_size!r}: must be an integer > 257 (256 bytes + {END_OF_TEXT})")
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte is a token: no unknowns
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=END_OF_TEXT, eos_token=END_OF_TEXT, unk_token=END_OF_TEXT
    )
    tmp_dir = out_dir.with_name(out_dir.name + f".tmp{os.getpid()}")
    try:
        with reporting_full_disk(out_dir / "tokenizer.json"):  # judged before the partial copy goes
            tokenizer.save_pretrained(str(tmp_dir))
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    try:
        os.replace(tmp_dir, out_dir)  # atomic: a concurrent run sees the whole tokenizer or none
    except OSError:  # another process finished first: keep its copy
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return AutoTokenizer.from_pretrained(str(out_dir))
