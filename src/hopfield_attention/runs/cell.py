"""The cell facts a run records (record["cell"]): its definition, and how it compares with its experiment's.

The reference is the run's experiment file composed the way `train experiment=<name>` composes it with no
other overrides, except the run's choices of the qualifier groups (definition.QUALIFIER_GROUPS). A choice
qualifies the cell only where it changes what the run computes: the default reading does not, nor does any
reading for softmax, whose runs every reading shares. The reference is composed
through Hydra's compose API in the running app's own config search path (so `--config-dir` and per-user
settings count alike), or from the repository's configs outside an app (tests, notebooks).
"""

from __future__ import annotations

from collections.abc import Mapping

import hydra
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import MissingConfigException
from omegaconf import DictConfig

from ..config.locations import CONFIG_DIR
from .definition import QUALIFIER_GROUPS, debug_flags, definition, differences


def cell_facts(cfg: DictConfig, choices: Mapping[str, str | None]) -> dict:
    """{definition, defined_by, deviations, qualifiers, debug}: deviations is None when no experiment file
    defines the run (it then belongs to no cell)."""
    run_definition = definition(cfg)
    chosen = {group: choices[group] for group in QUALIFIER_GROUPS if choices.get(group)}
    experiment = f"experiment={cfg.experiment}"
    overrides = [experiment, *(f"{group}={choice}" for group, choice in chosen.items())]
    reference = reference_definition(overrides)
    qualifiers = {}
    if reference is not None:
        for group, choice in chosen.items():
            others = [f"{g}={c}" for g, c in chosen.items() if g != group]
            if reference_definition([experiment, *others]) != reference:
                qualifiers[group] = choice
        overrides = [experiment, *(f"{group}={choice}" for group, choice in qualifiers.items())]
    return {
        "definition": run_definition,
        "defined_by": " ".join(overrides) if reference is not None else None,
        "deviations": None if reference is None else differences(run_definition, reference),
        "qualifiers": qualifiers,
        "debug": debug_flags(cfg, choices.get("debug")),
    }


def reference_definition(overrides: list[str]) -> dict | None:
    """The definition of `train <overrides>` as composed from the configs, None if the experiment is unknown."""
    try:
        if GlobalHydra.instance().is_initialized():
            return definition(hydra.compose("train", overrides=overrides))
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            return definition(hydra.compose("train", overrides=overrides))
    except MissingConfigException:
        return None
