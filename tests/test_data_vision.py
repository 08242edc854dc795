"""Vision datamodules read tiny local copies in the real schemas through the real configs."""

import pytest
import torch
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf
from PIL import Image
from timm.data.auto_augment import RandAugment
from timm.data.random_erasing import RandomErasing
from timm.data.transforms import RandomResizedCropAndInterpolation
from torchvision import transforms
from torchvision.transforms import functional as TF

from hopfield_attention.data import VisionDataModule

from support.data import (
    data_config,
    write_cifar10_fixture,
    write_cifar100_fixture,
    write_food101_fixture,
    write_imagefolder_fixture,
)


def build(name, overrides, tmp_path):
    datamodule = instantiate(data_config(name, overrides, tmp_path / "unused_cache"))
    assert isinstance(datamodule, VisionDataModule)
    return datamodule


def construct(name, overrides, tmp_path):
    """The config's class called directly, so its own exception type reaches the test (Hydra wraps it)."""
    config = OmegaConf.to_container(data_config(name, overrides, tmp_path / "unused_cache"), resolve=True)
    return get_class(config.pop("_target_"))(**config)


@pytest.mark.parametrize(
    ("name", "write", "classes"), [("cifar10", write_cifar10_fixture, 10), ("cifar100", write_cifar100_fixture, 100)]
)
def test_cifar_batches_have_the_contract_shapes(tmp_path, name, write, classes):
    datamodule = build(name, write(tmp_path), tmp_path)
    datamodule.prepare_data()
    datamodule.setup("fit")
    assert (datamodule.num_classes, datamodule.image_size) == (classes, 32)
    images, labels = next(iter(datamodule.train_dataloader()))
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.float32
    assert labels.dtype == torch.long and labels.shape == (4,)
    assert 0 <= int(labels.min()) and int(labels.max()) < classes


def steps(transform) -> list:
    return list(transform.transforms)


def test_cifar_recipe_is_deits_adapted_to_32_px_in_training_only(tmp_path):
    datamodule = build("cifar10", write_cifar10_fixture(tmp_path), tmp_path)
    train = steps(datamodule.train_transform)
    (crop,) = [t for t in train if isinstance(t, transforms.RandomCrop)]
    assert crop.size == (32, 32) and crop.padding == 4
    (flip,) = [t for t in train if isinstance(t, transforms.RandomHorizontalFlip)]
    assert flip.p == 0.5
    (randaugment,) = [t for t in train if isinstance(t, RandAugment)]
    assert randaugment.num_layers == 2 and all(op.magnitude == 9 and op.magnitude_std == 0.5 for op in randaugment.ops)
    (erasing,) = [t for t in train if isinstance(t, RandomErasing)]
    assert erasing.probability == 0.25 and erasing.mode == "pixel"
    # timm's own random-resized crop is there but takes the whole image: a 32 px image comes out as it went in.
    (rrc,) = [t for t in train if isinstance(t, RandomResizedCropAndInterpolation)]
    assert rrc.scale == (1.0, 1.0) and rrc.ratio == (1.0, 1.0)
    eval_types = {type(t) for t in steps(datamodule.eval_transform)}
    assert not eval_types & {transforms.RandomCrop, transforms.RandomHorizontalFlip, RandAugment, RandomErasing}


def test_imagenet_recipe_is_deit_bs(tmp_path):
    datamodule = instantiate(data_config("imagenet1k", {}, tmp_path / "cache"))  # no data read
    train = steps(datamodule.train_transform)
    (rrc,) = [t for t in train if isinstance(t, RandomResizedCropAndInterpolation)]
    assert (
        rrc.size == (224, 224)
        and rrc.scale == (0.08, 1.0)
        and rrc.interpolation == transforms.InterpolationMode.BICUBIC
    )
    assert any(isinstance(t, RandAugment) for t in train)
    assert not any(isinstance(t, transforms.ColorJitter) for t in train)  # off under RandAugment, as in DeiT
    (erasing,) = [t for t in train if isinstance(t, RandomErasing)]
    assert (erasing.probability, erasing.mode, erasing.max_count) == (0.25, "pixel", 1)
    resize, center = steps(datamodule.eval_transform)[:2]
    assert isinstance(resize, transforms.Resize) and resize.size == 256 and isinstance(center, transforms.CenterCrop)
    image = Image.fromarray(torch.randint(0, 256, (300, 260, 3), dtype=torch.uint8).numpy())
    assert datamodule.train_transform(image).shape == datamodule.eval_transform(image).shape == (3, 224, 224)


def test_transfer_recipe_crops_and_flips_only(tmp_path):
    datamodule = instantiate(data_config("flowers102", {}, tmp_path / "cache"))
    train_types = [type(t) for t in steps(datamodule.train_transform)]
    assert RandomResizedCropAndInterpolation in train_types and transforms.RandomHorizontalFlip in train_types
    assert not set(train_types) & {RandAugment, RandomErasing, transforms.ColorJitter}


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
    expected = TF.normalize(TF.to_tensor(raw), [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616])
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
    with pytest.raises(
        ValueError, match=r"image_field='image'.*available columns: \['img', 'fine_label', 'coarse_label'\]"
    ):
        datamodule.setup()


def test_unknown_recipe_and_split_fail_with_what_is_allowed(tmp_path):
    overrides = write_cifar10_fixture(tmp_path)
    with pytest.raises(
        ValueError, match=r"augment: unknown key\(s\) \['recipe'\]; allowed: \['auto_augment', 'color_jitter'"
    ):
        construct("cifar10", {**overrides, "augment": {"recipe": "autoaugment"}}, tmp_path)
    with pytest.raises(ValueError, match=r"crop_padding=4 replaces timm's crop: drop \['scale'\]"):
        construct("cifar10", {**overrides, "augment": {"scale": [0.5, 1.0]}}, tmp_path)
    datamodule = build("cifar10", {**overrides, "splits": {"train": "train", "validation": "validation"}}, tmp_path)
    with pytest.raises(ValueError, match=r"split 'validation'.*available splits: \['test', 'train'\]"):
        datamodule.setup()


def test_holdout_replaces_the_validation_split(tmp_path):
    overrides = {
        **write_cifar10_fixture(tmp_path, train=20),
        "holdout": {"sizes": {"validation": 5}, "order": "shuffled", "seed": 0},
    }
    datamodule = build("cifar10", overrides, tmp_path)
    datamodule.setup()
    assert len(datamodule.data["validation"]) == 5 and len(datamodule.data["train"]) == 15
    assert len(datamodule.data["test"]) == 6
