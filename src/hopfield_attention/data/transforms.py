"""Image transforms from config (torchvision.transforms.v2): one train recipe, one eval pipeline.

Recipes:
  cifar     Resize(image_size) if the images differ, RandomCrop(image_size, padding) + flip
            (the ResNet/ViT CIFAR recipe: pad 4, crop 32).
  imagenet  RandomResizedCrop(image_size, scale) + flip (the DeiT/timm ImageNet and transfer recipe).
  none      the eval pipeline (resize + center crop): no augmentation.
Each may add RandAugment (`randaugment: {num_ops, magnitude}`, as in DeiT). Eval: Resize to
image_size / eval_crop_pct, CenterCrop(image_size) (crop_pct 0.875 for ImageNet, 1.0 for CIFAR).
"""

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torchvision.transforms import v2

RECIPES = ("cifar", "imagenet", "none")
AUGMENT_KEYS = {"recipe", "crop_padding", "horizontal_flip", "scale", "randaugment"}


def build_train_transform(
    augment: Mapping[str, Any], image_size: int, mean: Sequence[float], std: Sequence[float], eval_crop_pct: float
) -> v2.Compose:
    unknown = sorted(set(augment) - AUGMENT_KEYS)
    if unknown:
        raise ValueError(f"data.augment: unknown key(s) {unknown}; allowed: {sorted(AUGMENT_KEYS)}")
    recipe = augment.get("recipe", "none")
    if recipe not in RECIPES:
        raise ValueError(f"data.augment.recipe={recipe!r}; allowed: {list(RECIPES)}")
    if recipe == "none":
        steps = _resize_center_crop(image_size, eval_crop_pct)
    elif recipe == "cifar":
        steps = [v2.Resize(image_size, antialias=True), v2.RandomCrop(image_size, padding=augment.get("crop_padding", 4))]
    else:
        scale = tuple(augment.get("scale", (0.08, 1.0)))
        steps = [v2.RandomResizedCrop(image_size, scale=scale, antialias=True)]
    if recipe != "none" and augment.get("horizontal_flip", True):
        steps.append(v2.RandomHorizontalFlip())
    randaugment = augment.get("randaugment")
    if randaugment:
        steps.append(v2.RandAugment(**dict(randaugment)))  # on uint8 images, before the float conversion
    return v2.Compose([v2.ToImage(), *steps, *_to_normalized_float(mean, std)])


def build_eval_transform(image_size: int, mean: Sequence[float], std: Sequence[float], eval_crop_pct: float) -> v2.Compose:
    return v2.Compose([v2.ToImage(), *_resize_center_crop(image_size, eval_crop_pct), *_to_normalized_float(mean, std)])


def _resize_center_crop(image_size: int, crop_pct: float) -> list:
    if not 0.0 < crop_pct <= 1.0:
        raise ValueError(f"data.eval_crop_pct={crop_pct!r}; allowed: a fraction in (0, 1]")
    return [v2.Resize(int(round(image_size / crop_pct)), antialias=True), v2.CenterCrop(image_size)]


def _to_normalized_float(mean: Sequence[float], std: Sequence[float]) -> list:
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"data.mean={list(mean)} / data.std={list(std)}: give three values (RGB) each")
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(mean), std=list(std))]
