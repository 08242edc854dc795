"""Checks shared by the datamodules' constructors: config values fail early, naming what is allowed."""

from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf


def plain(value: Any) -> Any:
    """OmegaConf containers (from Hydra) to plain dicts/lists, so cache keys and checks see plain data."""
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def require_int(value: Any, key: str, dataset_name: str, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{dataset_name}: data.{key}={value!r}; allowed: an integer >= {minimum}")
