"""The readings of the paper's open choices (configs/reading/): their names, their choices, the default, and which
reading a recorded run definition was computed under.

A run records the choices themselves (attention.residual, attention.first_layer, attention.skipless_residual), not
only the reading's name, so the reading of a run is read back from what it computed: a run recorded when another
reading was the default is still filed under its own reading, never under today's default.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache

from omegaconf import OmegaConf

from ..attention.variants import PINNED_READING
from .locations import CONFIG_DIR

# the open choices a reading sets, as the attention config names them (configs/attention/mha.yaml)
CHOICES = ("residual", "first_layer", "skipless_residual")


def available_readings() -> list[str]:
    return sorted(path.stem for path in (CONFIG_DIR / "reading").glob("*.yaml"))


@cache
def reading_choices(name: str) -> dict:
    """The choices of configs/reading/<name>.yaml (its name aside)."""
    path = CONFIG_DIR / "reading" / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"no reading {name!r}: configs/reading/ has {available_readings()}")
    choices = OmegaConf.to_container(OmegaConf.load(path))
    return {key: value for key, value in choices.items() if key != "name"}


@cache
def default_reading() -> str:
    """The reading `train` composes unless told otherwise (configs/train.yaml's defaults)."""
    for entry in OmegaConf.load(CONFIG_DIR / "train.yaml").defaults:
        if isinstance(entry, Mapping) and "reading" in entry:
            return str(entry["reading"])
    raise ValueError("configs/train.yaml names no default reading (defaults: - reading: <name>)")


def reading_of(definition: Mapping) -> str | None:
    """The reading a run definition's open choices are: a configs/reading/ name, the choices themselves where no
    reading file has them (e.g. `residual=both, first_layer=zeros, skipless_residual=none`), or None for attention
    without the open choices (softmax, RealFormer), which every reading shares. A run recorded before the choices
    were options computed PINNED_READING's."""
    before = PINNED_READING.get(str(definition.get("attention.name")), {})
    chosen = {key: definition.get(f"attention.{key}", before.get(key)) for key in CHOICES}
    if all(value is None for value in chosen.values()):
        return None
    for name in available_readings():
        if {key: reading_choices(name).get(key) for key in CHOICES} == chosen:
            return name
    return ", ".join(f"{key}={value}" for key, value in chosen.items())
