"""Images per second per CPU core of the vision recipes' train transforms, decoding included (README, Datasets).

    python scripts/bench_image_transforms.py [--images 400]

One process, one thread (torch.set_num_threads(1)), as one DataLoader worker runs: decode the stored image
(JPEG for the 224 px recipes, PNG for the 32 px ones, as the Hub copies store them), convert to RGB, apply
the data config's train transform (timm.data.create_transform) and its eval transform. The inputs are
synthetic: smooth colour fields with noise, 500 x 375 JPEG (quality 90; ImageNet's typical size) and
32 x 32 PNG. Figures are indicative on a shared machine.
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from hopfield_attention.train import CONFIG_DIR

RECIPES = {"imagenet1k": ("JPEG", (500, 375)), "flowers102": ("JPEG", (500, 375)), "cifar100": ("PNG", (32, 32))}


def encoded_images(count: int, size: tuple[int, int], image_format: str, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    images = []
    for _ in range(count):
        phase = rng.uniform(0, 6.28, size=3)
        field = np.stack([np.sin(6 * x + 4 * y + p) for p in phase], axis=-1) * 90 + 128
        pixels = np.clip(field + rng.normal(0, 12, size=field.shape), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format=image_format, **({"quality": 90} if image_format == "JPEG" else {}))
        images.append(buffer.getvalue())
    return images


def images_per_second(images: list[bytes], transform) -> float:
    started = time.perf_counter()
    for data in images:
        transform(Image.open(io.BytesIO(data)).convert("RGB"))
    return len(images) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=400)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name, (image_format, size) in RECIPES.items():
        config = OmegaConf.load(CONFIG_DIR / "data" / f"{name}.yaml")
        root = OmegaConf.create({"paths": {"cache_dir": "unused"}, "data": config})
        datamodule = instantiate(root.data)
        images = encoded_images(args.images, size, image_format)
        images_per_second(images[:20], datamodule.train_transform)  # warm-up
        train = images_per_second(images, datamodule.train_transform)
        evaluation = images_per_second(images, datamodule.eval_transform)
        print(f"{name} ({datamodule.image_size} px, {image_format} {size[0]}x{size[1]}): "
              f"train {train:.0f} images/s per core, eval {evaluation:.0f} images/s per core")  # fmt: skip


if __name__ == "__main__":
    main()
