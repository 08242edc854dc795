"""Images and labels in the idx format (MNIST, Fashion-MNIST) as a DatasetDict with `image`/`label` columns.

A directory holds `<split>-images-idx3-ubyte[.gz]` and `<split>-labels-idx1-ubyte[.gz]` pairs; the split
`t10k` is named `test`, as in MNIST's own file names. The first read converts the files into an Arrow
copy (images as PNG, as Hub image datasets store them) under <cache root>/idx/<directory name>-<hash of
the files>/, with `DatasetDict.save_to_disk`; later reads memory-map that copy. Changed files get a new
hash, hence a new copy.

The format (LeCun et al.): two zero bytes, a type code, the number of dimensions, each dimension as a
big-endian uint32, then the values in C order.
"""

import gzip
import hashlib
import os
import re
import shutil
from pathlib import Path

import datasets
import numpy as np

IDX_FILE = re.compile(r"^(?P<split>.+)-(?P<kind>images|labels)-idx(?P<ndim>[13])-ubyte(\.gz)?$")
SPLIT_NAMES = {"t10k": "test"}
IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """The array stored in one idx file (gzip-compressed when its name ends in .gz)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_DTYPES:
        raise ValueError(f"{path}: not an idx file (header {data[:4].hex()})")
    ndim = data[3]
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_DTYPES[data[2]])
    expected = 4 + 4 * ndim + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(f"{path}: {len(data)} bytes, but its header {shape} of {dtype} needs {expected}")
    return np.frombuffer(data, dtype=dtype, offset=4 + 4 * ndim).reshape(shape)


def idx_files(directory: Path) -> dict[str, dict[str, Path]]:
    """split -> {"images": path, "labels": path} for every idx file in `directory`."""
    found: dict[str, dict[str, Path]] = {}
    for path in sorted(directory.iterdir()):
        match = IDX_FILE.match(path.name)
        if match:
            split = SPLIT_NAMES.get(match["split"], match["split"])
            found.setdefault(split, {})[match["kind"]] = path
    return found


def is_idx_directory(directory: Path) -> bool:
    return any(IDX_FILE.match(path.name) for path in directory.iterdir())


def idx_cache_dir(directory: Path, cache_root: Path) -> Path:
    digest = hashlib.sha256()
    for split, files in sorted(idx_files(directory).items()):
        for kind, path in sorted(files.items()):
            digest.update(f"{split}/{kind}/{path.name}\0".encode())
            digest.update(path.read_bytes())
    return cache_root / "idx" / f"{directory.name}-{digest.hexdigest()[:16]}"


def load_idx_dataset(directory: Path, cache_root: Path) -> datasets.DatasetDict:
    """The idx files of `directory` as a DatasetDict (converted on the first call, then read from the cache)."""
    cached = idx_cache_dir(directory, cache_root)
    if not cached.is_dir():
        _convert(directory, cached)
    return datasets.load_from_disk(str(cached))


def _convert(directory: Path, out_dir: Path) -> None:
    pairs = idx_files(directory)
    incomplete = sorted(split for split, files in pairs.items() if set(files) != {"images", "labels"})
    if incomplete:
        raise ValueError(f"{directory}: split(s) {incomplete} lack an images or a labels idx file")
    arrays = {split: (read_idx(files["images"]), read_idx(files["labels"])) for split, files in pairs.items()}
    for split, (images, labels) in arrays.items():
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(
                f"{directory}: split {split!r} has images {images.shape} and labels {labels.shape}; "
                f"expected (N, H, W) and (N,)"
            )
    num_classes = 1 + max(int(labels.max()) for _, labels in arrays.values())
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=num_classes)})
    splits = datasets.DatasetDict(
        {
            split: datasets.Dataset.from_dict({"image": list(images), "label": labels.astype(np.int64)}, features=features)
            for split, (images, labels) in arrays.items()
        }
    )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = out_dir.with_name(out_dir.name + f".tmp{os.getpid()}")
    splits.save_to_disk(str(tmp_dir))
    try:
        os.replace(tmp_dir, out_dir)  # atomic: a concurrent reader sees the whole copy or none
    except OSError:  # another process finished first: keep its copy
        shutil.rmtree(tmp_dir, ignore_errors=True)
