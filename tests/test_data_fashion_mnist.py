"""Fashion-MNIST: idx files (Debian's dataset-fashion-mnist layout) read through the ordinary VisionDataModule."""

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf

from hopfield_attention.data import DatasetUnavailableError, VisionDataModule
from hopfield_attention.data.idx import read_idx

from support.data import data_config, write_fashion_mnist_fixture, write_idx_file

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")


def build(overrides, tmp_path) -> VisionDataModule:
    return instantiate(data_config("fashion_mnist", overrides, tmp_path / "unused_cache"))


def test_idx_files_round_trip_and_bad_files_are_named(tmp_path):
    images = np.arange(3 * 28 * 28, dtype=np.uint32).reshape(3, 28, 28).astype(np.uint8)
    write_idx_file(tmp_path / "x-images-idx3-ubyte.gz", images)
    np.testing.assert_array_equal(read_idx(tmp_path / "x-images-idx3-ubyte.gz"), images)
    (tmp_path / "bad-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05\x01\x02")  # 5 promised, 2 given
    with pytest.raises(ValueError, match=r"bad-labels-idx1-ubyte: 10 bytes, but its header \(5,\) of uint8 needs 13"):
        read_idx(tmp_path / "bad-labels-idx1-ubyte")


def test_fashion_mnist_splits_shapes_and_grayscale_as_three_equal_channels(tmp_path):
    datamodule = build(write_fashion_mnist_fixture(tmp_path, train=20, test=8), tmp_path)
    datamodule.prepare_data()
    datamodule.setup("fit")
    # Validation is held out of train by seed; test is the t10k files, untouched.
    assert {stage: len(rows) for stage, rows in datamodule.data.items()} == {"train": 16, "validation": 4, "test": 8}
    images, labels = next(iter(datamodule.train_dataloader()))
    assert images.shape == (4, 3, 28, 28) and images.dtype == torch.float32 and labels.dtype == torch.long
    test_labels = torch.cat([labels for _, labels in datamodule.test_dataloader()])
    assert test_labels.tolist() == [i % 10 for i in range(8)]  # the idx labels, in file order

    # Evaluation: the 28x28 image as it is, its one channel repeated, normalised by Fashion-MNIST's statistics.
    image, _ = datamodule.data["test"][0]
    raw = read_idx(Path(datamodule.source.local_path) / "t10k-images-idx3-ubyte.gz")[0]
    expected = (torch.from_numpy(raw.astype(np.float32)) / 255 - 0.2860) / 0.3530
    for channel in range(3):
        torch.testing.assert_close(image[channel], expected)


def test_idx_files_are_converted_once_into_an_arrow_cache(tmp_path):
    overrides = write_fashion_mnist_fixture(tmp_path)
    first = build(overrides, tmp_path)
    assert not first.source.is_prepared()
    first.setup()
    assert first.source.is_prepared()
    (cached,) = (tmp_path / "hf_cache" / "idx").iterdir()
    assert cached.name.startswith("fashion-mnist-") and (cached / "dataset_dict.json").exists()
    second = build(overrides, tmp_path)
    second.setup()
    assert all(Path(f["filename"]).is_relative_to(cached) for f in second.data["test"].rows.cache_files)
    # Changed files are a different dataset: a new copy, never the stale one.
    write_idx_file(Path(overrides["local_path"]) / "t10k-labels-idx1-ubyte.gz", np.zeros(8, dtype=np.uint8))
    assert not build(overrides, tmp_path).source.is_prepared()


def test_missing_package_names_the_apt_command(tmp_path):
    config = OmegaConf.to_container(
        data_config("fashion_mnist", {"local_path": str(tmp_path / "nowhere")}, tmp_path / "cache"), resolve=True
    )
    datamodule = get_class(config.pop("_target_"))(**config)
    with pytest.raises(
        DatasetUnavailableError, match=r"does not exist.\nInstall it with:  apt-get install -y dataset-fashion-mnist"
    ):
        datamodule.setup()


@pytest.mark.skipif(
    not DEBIAN_DIR.is_dir(), reason="Debian package dataset-fashion-mnist not installed (make data-fashion-mnist)"
)
def test_the_debian_package_holds_the_real_splits():
    labels = {split: read_idx(DEBIAN_DIR / f"{split}-labels-idx1-ubyte.gz") for split in ("train", "t10k")}
    assert {split: len(values) for split, values in labels.items()} == {"train": 60000, "t10k": 10000}
    assert np.bincount(labels["train"]).tolist() == [6000] * 10  # balanced, 10 classes
    assert read_idx(DEBIAN_DIR / "t10k-images-idx3-ubyte.gz").shape == (10000, 28, 28)
