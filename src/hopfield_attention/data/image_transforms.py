"""Image transforms from config, built by `timm.data.create_transform` (train and eval).

`data.augment` holds create_transform's training arguments, so a recipe reads as timm's (and DeiT's)
command-line flags do: scale, ratio, hflip, vflip, color_jitter, auto_augment (e.g.
"rand-m9-mstd0.5-inc1", RandAugment as in DeiT), re_prob / re_mode / re_count (random erasing),
train_crop_mode, no_aug. Defaults differ from timm's in one place: color_jitter is off unless given
(timm's 0.4 would otherwise switch on silently wherever auto_augment is not set).

One key is ours, `crop_padding`: the CIFAR crop (pad by that many pixels, crop back at random; as in the
ResNet and ViT-on-CIFAR recipes) in place of timm's random-resized crop. It is applied before timm's
transform, whose own crop is then switched off (scale = ratio = 1: the whole image).

Batch-level augmentation (Mixup/CutMix) is not here: it mixes pairs of images and their labels, so it
runs in the training step (tasks/image_classification.py, `loss.mixup`).
Evaluation: resize to image_size / eval_crop_pct, center crop image_size (timm's eval transform).
"""

from collections.abc import Mapping, Sequence
from typing import Any

from timm.data import create_transform
from torchvision import transforms

TIMM_TRAIN_KEYS = {
    "scale", "ratio", "hflip", "vflip", "color_jitter", "auto_augment", "re_prob", "re_mode", "re_count",
    "train_crop_mode", "no_aug",
}  # fmt: skip
AUGMENT_KEYS = TIMM_TRAIN_KEYS | {"crop_padding"}
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "random")


def build_train_transform(
    augment: Mapping[str, Any],
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    interpolation: str,
) -> transforms.Compose:
    unknown = sorted(set(augment) - AUGMENT_KEYS)
    if unknown:
        raise ValueError(f"data.augment: unknown key(s) {unknown}; allowed: {sorted(AUGMENT_KEYS)}")
    _check_common(mean, std, interpolation)
    options = {"color_jitter": None, **{key: value for key, value in augment.items() if key != "crop_padding"}}
    for key in ("scale", "ratio"):
        if options.get(key) is not None:
            options[key] = tuple(options[key])
    padding = augment.get("crop_padding")
    if padding is not None:
        crop_keys = sorted({"scale", "ratio", "train_crop_mode", "no_aug"} & {k for k, v in augment.items() if v})
        if crop_keys:
            raise ValueError(f"data.augment.crop_padding={padding} replaces timm's crop: drop {crop_keys}")
        if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
            raise ValueError(f"data.augment.crop_padding={padding!r}; allowed: an integer >= 0 (pixels)")
        options.update(scale=(1.0, 1.0), ratio=(1.0, 1.0))
    timm_transform = create_transform(
        image_size, is_training=True, interpolation=interpolation, mean=tuple(mean), std=tuple(std), **options
    )
    if padding is None:
        return timm_transform
    pad_crop = [transforms.Resize(image_size), transforms.RandomCrop(image_size, padding=padding)]
    return transforms.Compose([*pad_crop, *timm_transform.transforms])


def build_eval_transform(
    image_size: int, mean: Sequence[float], std: Sequence[float], interpolation: str, eval_crop_pct: float
) -> transforms.Compose:
    _check_common(mean, std, interpolation)
    if not 0.0 < eval_crop_pct <= 1.0:
        raise ValueError(f"data.eval_crop_pct={eval_crop_pct!r}; allowed: a fraction in (0, 1]")
    return create_transform(
        image_size,
        is_training=False,
        interpolation="bilinear" if interpolation == "random" else interpolation,
        mean=tuple(mean),
        std=tuple(std),
        crop_pct=eval_crop_pct,
    )


def _check_common(mean: Sequence[float], std: Sequence[float], interpolation: str) -> None:
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"data.mean={list(mean)} / data.std={list(std)}: give three values (RGB) each")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"data.interpolation={interpolation!r}; allowed: {list(INTERPOLATIONS)}")
