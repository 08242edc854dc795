"""Every configs/data/*.yaml instantiates its datamodule (no data is read until prepare_data/setup)."""

from pathlib import Path

import pytest
from hydra.utils import instantiate

from hopfield_attention.data import (
    LanguageDataModule,
    ShakespeareDataModule,
    VisionDataModule,
)

from support.data import REPO_ROOT, data_config

CONFIGS = sorted(p.stem for p in (REPO_ROOT / "configs" / "data").glob("*.yaml"))
LANGUAGE = {"wikitext103": 1024, "cnn_dailymail": 1024, "bookcorpus": 1024, "shakespeare": 128}
VISION = {
    "cifar10": (10, 32),
    "cifar100": (100, 32),
    "imagenet1k": (1000, 224),
    "flowers102": (102, 224),
    "food101": (101, 224),
    "stanford_dogs": (120, 224),
    "stanford_cars": (196, 224),
    "fashion_mnist": (10, 28),
}


def test_every_paper_dataset_has_a_config():
    assert set(CONFIGS) == set(LANGUAGE) | set(VISION)


@pytest.mark.parametrize("name", CONFIGS)
def test_config_instantiates_with_the_contract_attributes(tmp_path, name):
    datamodule = instantiate(data_config(name, {}, tmp_path / "cache"))
    assert datamodule.name == name
    if name in LANGUAGE:
        assert isinstance(datamodule, LanguageDataModule)
        assert datamodule.block_size == LANGUAGE[name]
        assert Path(datamodule.cache_dir) == tmp_path / "cache"
        assert isinstance(datamodule, ShakespeareDataModule) == (name == "shakespeare")
    else:
        assert isinstance(datamodule, VisionDataModule)
        assert (datamodule.num_classes, datamodule.image_size) == VISION[name]
        assert datamodule.source.hub_name  # a Hub default, replaced by data.local_path
