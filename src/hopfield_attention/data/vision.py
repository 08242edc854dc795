"""Image classification data from Hugging Face image datasets (Hub name by default, or `local_path`).

Batches are (images FloatTensor (B, 3, H, W), labels LongTensor (B,)). Every image is converted to RGB
before its transform (data/image_transforms.py): grayscale sets (Fashion-MNIST) repeat their one channel
three times, so every model keeps in_chans = 3 and the timm transforms their three-channel statistics.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import datasets
import lightning as L
import torch
from torch.utils.data import Dataset

from .errors import DataNotPreparedError, not_prepared_message
from .image_transforms import build_eval_transform, build_train_transform
from .loaders import SplitLoaders
from .options import plain, require_int
from .sources import DatasetSource, require_columns, select_splits, validate_splits

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageClassificationSplit(Dataset):
    """One split as (transformed image, label) pairs; images are decoded one row at a time."""

    def __init__(self, rows: datasets.Dataset, image_field: str, label_field: str, transform: Callable):
        self.rows = rows.select_columns([image_field, label_field])  # decode nothing else
        self.image_field = image_field
        self.label_field = label_field
        self.transform = transform

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        row = self.rows[index]
        image = row[self.image_field].convert("RGB")  # grayscale sets; grayscale / CMYK images in ImageNet
        return self.transform(image), int(row[self.label_field])  # (3, H, W), label


class VisionDataModule(SplitLoaders, L.LightningDataModule):
    """An image classification dataset with the train augmentation of its recipe (see image_transforms.py)."""

    def __init__(
        self,
        name: str,
        num_classes: int,
        image_size: int,
        hub_name: str | None = None,
        hub_config: str | None = None,
        hub_revision: str | None = None,
        image_field: str = "image",
        label_field: str = "label",
        splits: Mapping[str, str] | None = None,
        holdout: Mapping | None = None,
        local_path: Any = None,
        augment: Mapping[str, Any] | None = None,
        interpolation: str = "bilinear",
        eval_crop_pct: float = 1.0,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        hf_cache_dir: str | None = None,
        pin_memory: bool = False,
        install_hint: str | None = None,
    ):
        super().__init__()
        splits = plain(splits) if splits is not None else {"train": "train", "validation": "test", "test": "test"}
        holdout = plain(holdout)
        validate_splits(splits, holdout, name)
        require_int(num_classes, "num_classes", name, minimum=2)
        require_int(image_size, "image_size", name)
        require_int(batch_size, "batch_size", name)
        if eval_batch_size is not None:
            require_int(eval_batch_size, "eval_batch_size", name)
        self.name = name
        self.num_classes = num_classes
        self.image_size = image_size
        self.source = DatasetSource(
            name, hub_name, hub_config, plain(local_path), hf_cache_dir, hub_revision, install_hint=install_hint
        )
        self.image_field = image_field
        self.label_field = label_field
        self.splits = splits
        self.holdout = holdout
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        mean, std = list(plain(mean)), list(plain(std))
        # Built now, so a bad recipe fails at instantiation, before any data is read.
        self.train_transform = build_train_transform(plain(augment) or {}, image_size, mean, std, interpolation)
        self.eval_transform = build_eval_transform(image_size, mean, std, interpolation, eval_crop_pct)
        self.data: dict[str, ImageClassificationSplit] = {}

    def prepare_data(self) -> None:
        """Download and convert the dataset once; `datasets` caches it.

        Not under DDP: Lightning runs this on one rank while the others wait at a barrier, so data that
        is not prepared is reported by `setup` on every rank instead (`python -m hopfield_attention.prepare`).
        """
        if self.world_size == 1:
            self.source.load()

    def setup(self, stage: str | None = None) -> None:
        if self.data:
            return
        if self.world_size > 1 and not self.source.is_prepared():
            what = "it is not in the Hugging Face cache yet (never downloaded or converted)"
            raise DataNotPreparedError(not_prepared_message(self.name, what, self.world_size))
        rows = select_splits(self.source.load(), self.splits, self.holdout, self.name)
        for split_name, split_rows in rows.items():
            require_columns(split_rows, {"image_field": self.image_field, "label_field": self.label_field}, self.name)
            self._check_labels(split_rows)
            transform = self.train_transform if split_name == "train" else self.eval_transform
            self.data[split_name] = ImageClassificationSplit(split_rows, self.image_field, self.label_field, transform)
        if len(self.data["train"]) < self.batch_size:
            raise ValueError(
                f"{self.name}: the train split has {len(self.data['train'])} images, fewer than batch_size={self.batch_size}"
            )

    def _check_labels(self, rows: datasets.Dataset) -> None:
        """The label feature must agree with num_classes, or the classifier head has the wrong size."""
        feature = rows.features[self.label_field]
        if isinstance(feature, datasets.ClassLabel) and feature.num_classes != self.num_classes:
            raise ValueError(
                f"{self.name}: data.num_classes={self.num_classes}, but column {self.label_field!r} has "
                f"{feature.num_classes} classes"
            )

    @property
    def split_data(self) -> Mapping[str, Dataset]:
        return self.data
