"""Vision datamodules read tiny local copies in the real schemas through the real configs."""

import pytest
import torch
from data_fixtures import (
    data_config,
    write_cifar10_fixture,
    write_cifar100_fixture,
    write_food101_fixture,
    write_imagefolder_fixture,
)
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf
from torchvision.transforms import v2

from hopfield_attention.data import VisionDataModule


def build(name, overrides, tmp_path):
    datamodule = instantiate(data_config(name, overrides, tmp_path / "unused_cache"))
    assert isinstance(datamodule, VisionDataModule)
    return datamodule


def construct(name, overrides, tmp_path):
    """The config's class called directly, so its own exception type reaches the test (Hydra wraps it)."""
    config = OmegaConf.to_container(data_config(name, overrides, tmp_path / "unused_cache"), resolve=True)
    return get_class(config.pop("_target_"))(**config)


@pytest.mark.parametrize(("name", "write", "classes"), [("cifar10", write_cifar10_fixture, 10), ("cifar100", write_cifar100_fixture, 100)])
def test_cifar_batches_have_the_contract_shapes(tmp_path, name, write, classes):
    datamodule = build(name, write(tmp_path), tmp_path)
    datamodule.prepare_data()
    datamodule.setup("fit")
    assert (datamodule.num_classes, datamodule.image_size) == (classes, 32)
    images, labels = next(iter(datamodule.train_dataloader()))
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.float32
    assert labels.dtype == torch.long and labels.shape == (4,)
    assert 0 <= int(labels.min()) and int(labels.max()) < classes


def test_cifar_recipe_pads_crops_and_flips_in_training_only(tmp_path):
    datamodule = build("cifar10", write_cifar10_fixture(tmp_path), tmp_path)
    train_steps = [type(t) for t in datamodule.train_transform.transforms]
    assert v2.RandomCrop in train_steps and v2.RandomHorizontalFlip in train_steps
    crop = next(t for t in datamodule.train_transform.transforms if isinstance(t, v2.RandomCrop))
    assert crop.padding == [4, 4, 4, 4]
    eval_steps = [type(t) for t in datamodule.eval_transform.transforms]
    assert v2.RandomCrop not in eval_steps and v2.RandomHorizontalFlip not in eval_steps
    with_randaugment = build("cifar10", {**write_cifar10_fixture(tmp_path / "b"), "augment": {"randaugment": {"num_ops": 2, "magnitude": 9}}}, tmp_path)
    assert any(isinstance(t, v2.RandAugment) for t in with_randaugment.train_transform.transforms)


def test_eval_loader_sees_every_image_in_order_normalised(tmp_path):
    datamodule = build("cifar10", write_cifar10_fixture(tmp_path, test=6), tmp_path)
    datamodule.setup()
    batches = list(datamodule.val_dataloader())
    assert [len(labels) for _, labels in batches] == [4, 2]  # no drop_last
    labels = torch.cat([labels for _, labels in batches])
    assert labels.tolist() == [i % 10 for i in range(6)]  # no shuffling
    # The eval path is deterministic: the same image twice gives the same tensor, normalised with the
    # config's CIFAR-10 mean/std (uniform random pixels have mean ~0.5, not the CIFAR mean).
    first, again = datamodule.data["validation"][0][0], datamodule.data["validation"][0][0]
    assert torch.equal(first, again)
    raw = datamodule.data["validation"].rows[0]["img"].convert("RGB")
    expected = (v2.functional.to_dtype(v2.functional.to_image(raw), torch.float32, scale=True) - torch.tensor([0.4914, 0.4822, 0.4465])[:, None, None]) / torch.tensor([0.2470, 0.2435, 0.2616])[:, None, None]
    torch.testing.assert_close(first, expected)


def test_food101_resizes_non_square_images_to_the_configured_size(tmp_path):
    datamodule = build("food101", write_food101_fixture(tmp_path), tmp_path)
    datamodule.setup()
    assert datamodule.num_classes == 101
    images, _ = next(iter(datamodule.train_dataloader()))
    assert images.shape == (4, 3, 64, 64)
    images, _ = next(iter(datamodule.test_dataloader()))  # food101: test is the validation split
    assert images.shape == (4, 3, 64, 64)


def test_image_folder_local_copy_loads_with_labels_from_folder_names(tmp_path):
    datamodule = build("stanford_dogs", write_imagefolder_fixture(tmp_path), tmp_path)
    datamodule.setup()
    assert len(datamodule.data["train"]) == 9 and len(datamodule.data["test"]) == 9
    _, labels = next(iter(datamodule.test_dataloader()))
    assert set(labels.tolist()) <= {0, 1, 2}


def test_num_classes_must_match_the_label_column(tmp_path):
    datamodule = build("cifar10", {**write_cifar10_fixture(tmp_path), "num_classes": 100}, tmp_path)
    with pytest.raises(ValueError, match=r"num_classes=100.*'label' has 10 classes"):
        datamodule.setup()


def test_unknown_image_field_names_the_columns(tmp_path):
    datamodule = build("cifar100", {**write_cifar100_fixture(tmp_path), "image_field": "image"}, tmp_path)
    with pytest.raises(ValueError, match=r"image_field='image'.*available columns: \['img', 'fine_label', 'coarse_label'\]"):
        datamodule.setup()


def test_unknown_recipe_and_split_fail_with_what_is_allowed(tmp_path):
    overrides = write_cifar10_fixture(tmp_path)
    with pytest.raises(ValueError, match=r"augment.recipe='autoaugment'; allowed: \['cifar', 'imagenet', 'none'\]"):
        construct("cifar10", {**overrides, "augment": {"recipe": "autoaugment"}}, tmp_path)
    datamodule = build("cifar10", {**overrides, "splits": {"train": "train", "validation": "validation"}}, tmp_path)
    with pytest.raises(ValueError, match=r"split 'validation'.*available splits: \['test', 'train'\]"):
        datamodule.setup()


def test_holdout_replaces_the_validation_split(tmp_path):
    overrides = {**write_cifar10_fixture(tmp_path, train=20), "holdout": {"sizes": {"validation": 5}, "seed": 0}}
    datamodule = build("cifar10", overrides, tmp_path)
    datamodule.setup()
    assert len(datamodule.data["validation"]) == 5 and len(datamodule.data["train"]) == 15
    assert len(datamodule.data["test"]) == 6
