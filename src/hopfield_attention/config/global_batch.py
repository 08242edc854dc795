"""The global batch of a recipe, the same at any world size: the per-device batch and the accumulation follow.

A recipe states `batch.global_size` G (sequences or images per optimizer step, over all devices) and
`batch.per_device` (the most samples one device takes per micro-batch: a memory limit). With W processes
(trainer.devices x trainer.num_nodes) each takes G / W samples per optimizer step, as the largest micro-batch that
divides G / W within the limit, accumulated over the rest:

    G = 64, per_device 16:   W = 1: 16 x 4 accumulated   W = 2: 16 x 2   W = 8: 8 x 1   W = 16: 4 x 1

The recipes say so through resolvers (config/resolvers.py): data.batch_size = ${ha.batch:per_device},
trainer.accumulate_grad_batches = ${ha.batch:accumulate}, and a cadence in optimizer steps as Lightning's count of
micro-batches, trainer.val_check_interval = ${ha.optimizer_steps:1000}. A data.batch_size set by hand is a
memory choice too: the accumulation follows it. A world that cannot reach G is refused, naming what to set, and
so is a G whose share per process only micro-batches under half the limit divide (17 would run as 17 x 1 where
16 fit): batch.per_device set to that micro-batch accepts it.
`batch.global_size: null` states no global batch (a run without a recipe): data.batch_size and
trainer.accumulate_grad_batches then count as they are set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf


@dataclass(frozen=True)
class BatchPlan:
    """How one optimizer step of `global_size` samples is made on `world_size` processes."""

    global_size: int
    world_size: int
    per_device: int  # samples per micro-batch on each process (data.batch_size)
    accumulate: int  # micro-batches per optimizer step (trainer.accumulate_grad_batches)


def positive_int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{key}={value!r}: must be a positive integer")
    return value


def world_size(devices: Any, num_nodes: Any) -> int:
    """Processes of a run: trainer.devices (a count, a list of ids or '0,1') x trainer.num_nodes."""
    if isinstance(devices, str) and devices.strip().isdigit():
        devices = int(devices)
    elif isinstance(devices, str) and "," in devices:
        devices = [part for part in devices.split(",") if part.strip()]
    if isinstance(devices, Sequence) and not isinstance(devices, str):
        devices = len(devices)
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise ValueError(f"trainer.devices={devices!r}: a recipe's global batch (batch.global_size) is split over "
                         "the devices, so it needs their number: set trainer.devices=<count>")  # fmt: skip
    return devices * positive_int(num_nodes, "trainer.num_nodes")


def _per_process(global_size: int, world: int, devices: Any, num_nodes: Any) -> int:
    if global_size % world:
        divisors = [d for d in range(1, global_size + 1) if global_size % d == 0]
        raise ValueError(
            f"batch.global_size={global_size} cannot be split evenly over {world} processes (trainer.devices={devices} "
            f"x trainer.num_nodes={num_nodes}): use a number of processes that divides it ({', '.join(map(str, divisors))}), "
            f"or set batch.global_size to a multiple of {world} to change the recipe's global batch on purpose"
        )
    return global_size // world


def plan(global_size: int, per_device_limit: int | None, devices: Any, num_nodes: Any) -> BatchPlan:
    """The largest micro-batch that divides each process's share of the global batch and fits the limit."""
    global_size = positive_int(global_size, "batch.global_size")
    world = world_size(devices, num_nodes)
    share = _per_process(global_size, world, devices, num_nodes)
    limit = share if per_device_limit is None else positive_int(per_device_limit, "batch.per_device")
    ceiling = min(share, limit)
    per_device = max(d for d in range(1, ceiling + 1) if share % d == 0)
    if 2 * per_device < ceiling:
        raise ValueError(_tiny_micro_batches(global_size, world, share, limit, per_device))
    return BatchPlan(global_size, world, per_device, share // per_device)


def _tiny_micro_batches(global_size: int, world: int, share: int, limit: int, per_device: int) -> str:
    """The refusal of a global batch whose share per process only small micro-batches divide (a prime such as 17
    would run as 17 micro-batches of 1 where the limit allows 16 at once)."""
    below, above = (share // limit) * limit * world, -(-share // limit) * limit * world
    nearby = " or ".join(str(size) for size in dict.fromkeys((below, above)) if size > 0)
    return (
        f"batch.global_size={global_size}: {'each of the ' + str(world) + ' processes takes' if world > 1 else 'the process takes'} "
        f"{share} samples per optimizer step, "
        f"and the largest micro-batch within batch.per_device={limit} that divides {share} is {per_device} "
        f"({share // per_device} micro-batches of {per_device} per step)\n"
        f"set batch.global_size to a multiple of {limit * world} (e.g. {nearby}), or batch.per_device={per_device} "
        "to run such small micro-batches on purpose"
    )


def accumulation(global_size: int, per_device: int, devices: Any, num_nodes: Any) -> int:
    """Micro-batches per optimizer step when each process takes `per_device` samples (data.batch_size)."""
    global_size = positive_int(global_size, "batch.global_size")
    per_device = positive_int(per_device, "data.batch_size")
    world = world_size(devices, num_nodes)
    share = _per_process(global_size, world, devices, num_nodes)
    if share % per_device:
        raise ValueError(
            f"data.batch_size={per_device} does not divide the {share} samples each of the {world} processes takes per "
            f"optimizer step (batch.global_size={global_size}): set batch.per_device={per_device} (the most per device) "
            f"and leave data.batch_size to the recipe, or set data.batch_size to a divisor of {share}"
        )
    return share // per_device


def _trainer_shape(cfg: DictConfig) -> tuple[Any, Any]:
    return OmegaConf.select(cfg, "trainer.devices"), OmegaConf.select(cfg, "trainer.num_nodes", default=1)


def per_device_batch(cfg: DictConfig) -> int:
    """data.batch_size of a run config (${ha.batch:per_device}); without a stated global batch, batch.per_device."""
    stated = OmegaConf.select(cfg, "batch.global_size", default=None)
    limit = OmegaConf.select(cfg, "batch.per_device", default=None)
    if stated is None:  # no global batch to split: the limit is the per-device batch
        return positive_int(limit, "batch.per_device")
    return plan(stated, limit, *_trainer_shape(cfg)).per_device


def accumulate_batches(cfg: DictConfig) -> int:
    """trainer.accumulate_grad_batches of a run config (${ha.batch:accumulate}), for its data.batch_size as it
    resolves (the recipe's, or one set by hand); without a stated global batch, 1."""
    stated = OmegaConf.select(cfg, "batch.global_size", default=None)
    batch = OmegaConf.select(cfg, "data.batch_size")
    if stated is None or isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        # Nothing to reach, or no count to reach it with: a bad data.batch_size is refused by name where the run
        # checks it (the datamodule, and stated_global_batch when the run records its cell), with its record.
        return 1
    return accumulation(stated, batch, *_trainer_shape(cfg))


def stated_global_batch(cfg: DictConfig) -> int | None:
    """batch.global_size of a resolved run config, once checked that the trainer and data reach it (None: not
    stated). A trainer.accumulate_grad_batches or data.batch_size set by hand that misses it is refused."""
    stated = OmegaConf.select(cfg, "batch.global_size", default=None)
    if stated is None:
        return None
    batch, accumulate = (
        OmegaConf.select(cfg, "data.batch_size"),
        OmegaConf.select(cfg, "trainer.accumulate_grad_batches"),
    )
    world = world_size(*_trainer_shape(cfg))
    made = positive_int(batch, "data.batch_size") * positive_int(accumulate, "trainer.accumulate_grad_batches") * world
    if made != stated:
        raise ValueError(
            f"data.batch_size={batch} x trainer.accumulate_grad_batches={accumulate} x {world} "
            f"processes = {made} samples per optimizer step, but the recipe's global batch is batch.global_size={stated}: "
            f"leave both to the recipe (batch.per_device limits the per-device batch), or set batch.global_size={made} "
            "to change the global batch on purpose"
        )
    return stated
