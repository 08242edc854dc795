"""Linear probing (Table 5): a frozen backbone pretrained by one of our own runs, a new linear head trained
on the new dataset's classes."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import OmegaConf

from .image_classification import ImageClassificationTask

# Architecture keys that may differ between the pretraining run and the probe (regularisation only).
NON_ARCHITECTURE_KEYS = {"name", "drop_rate", "drop_path_rate"}


class LinearProbeTask(ImageClassificationTask):
    """The backbone (`.model`) stays in eval mode with frozen weights; only its classifier head trains.

    The pretrained weights are loaded when fitting starts (`setup("fit")`), before Lightning restores a
    resumed run's own checkpoint, so a resumed or reloaded probe never needs the pretraining file again.
    """

    def __init__(self, cfg, attention=None, *, num_classes: int, image_size: int):
        super().__init__(cfg, attention, num_classes=num_classes, image_size=image_size)
        self.model.requires_grad_(False)
        self.model.get_classifier().requires_grad_(True)

    def trainable_module(self):
        return self.model.get_classifier()

    def train(self, mode: bool = True):
        super().train(mode)
        self.model.eval()  # no dropout, no drop-path: the features are the pretrained model's
        self.model.get_classifier().train(mode)
        return self

    def setup(self, stage: str) -> None:
        if stage == "fit" and not getattr(self, "_pretrained_loaded", False):
            self.load_pretrained(self.cfg.pretrained_ckpt)

    def load_pretrained(self, ckpt_path: str | None) -> None:
        if not ckpt_path or not Path(ckpt_path).is_file():
            raise ValueError(f"linear_probe needs pretrained_ckpt=<checkpoint of a Table 4 run>, got {ckpt_path!r}")
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        check_compatible(checkpoint["hyper_parameters"], self.cfg, self.hparams["image_size"], ckpt_path)
        head = {f"{self._head_prefix()}{name}" for name in self.model.get_classifier().state_dict()}
        weights = {key.removeprefix("model."): value for key, value in checkpoint["state_dict"].items()
                   if key.startswith("model.") and key.removeprefix("model.") not in head}  # fmt: skip
        missing, unexpected = self.model.load_state_dict(weights, strict=False)
        if set(missing) != head or unexpected:
            raise ValueError(f"{ckpt_path} does not fit this backbone: missing {missing}, unexpected {unexpected}")
        self._pretrained_loaded = True

    def _head_prefix(self) -> str:
        for name, module in self.model.named_modules():
            if module is self.model.get_classifier():
                return f"{name}."
        raise RuntimeError("the classifier head is not a submodule of the backbone")


def check_compatible(pretrained_hparams: dict, cfg, image_size: int, ckpt_path: str) -> None:
    """The probe's model and attention config must be the pretraining run's (a probe of another architecture
    would silently load nothing useful)."""
    pretrained = OmegaConf.create(pretrained_hparams["cfg"])
    for key in set(cfg.model) | set(pretrained.model):
        if key not in NON_ARCHITECTURE_KEYS and cfg.model.get(key) != pretrained.model.get(key):
            raise ValueError(
                f"model.{key} is {cfg.model.get(key)!r} but {ckpt_path} was trained with {pretrained.model.get(key)!r}"
            )
    if OmegaConf.to_container(cfg.attention) != OmegaConf.to_container(pretrained.attention):
        raise ValueError(
            f"attention {OmegaConf.to_container(cfg.attention)} differs from the pretraining run's "
            f"{OmegaConf.to_container(pretrained.attention)} ({ckpt_path})"
        )
    if pretrained_hparams.get("image_size") != image_size:
        raise ValueError(
            f"the data's image size {image_size} differs from the pretraining run's "
            f"{pretrained_hparams.get('image_size')} ({ckpt_path}); set data.image_size to match"
        )
