"""Peak live memory and time of one benchmark step, on the CPU and on CUDA.

Each method at each point gets a fresh `step()` (its own model, optimizer state and inputs, made before anything
is counted) and then, in order: on CUDA one plain warm-up; one memory run (on the CPU it is also the warm-up:
the first run of a step chooses kernels and touches fresh memory, and the dispatch mode that counts bytes slows
it a little, so it is never timed); then timed runs, at least one and at most `repeats`, stopping once they
have taken `enough_seconds` together (a long step is timed once, a short one up to `repeats` times, the best
kept as timeit does).
"""

from __future__ import annotations

import gc
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

# wall: elapsed time. cpu: the process's CPU time summed over its threads; on a shared machine a busy neighbour
# stretches elapsed time but not this (threads spinning in a barrier still count). CPU time means nothing for
# work that runs on a GPU, so CUDA runs take the wall clock.
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


class LiveTensorBytes(TorchDispatchMode):
    """The CPU's counterpart of CUDA's max_memory_allocated: the peak bytes of tensor storage alive at once
    among the storages created while the mode is on (a storage counts until it is freed).

    An op's output that shares storage with one of its inputs (a view, an in-place op) is not new memory.
    Scratch space a kernel allocates inside C++ and frees before returning is not seen, nor allocator slack.
    """

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self._counted: set[int] = set()

    def _freed(self, key: int, nbytes: int) -> None:
        self.live -= nbytes
        self._counted.discard(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for tensor in tree_leaves(out):
            if not isinstance(tensor, torch.Tensor):
                continue
            storage = tensor.untyped_storage()
            key, nbytes = storage.data_ptr(), storage.nbytes()
            if nbytes == 0 or key in inputs or key in self._counted:
                continue
            self._counted.add(key)
            self.live += nbytes
            self.peak = max(self.peak, self.live)
            weakref.finalize(storage, self._freed, key, nbytes)  # fires when the storage itself is freed
        return out


def peak_bytes(step: Callable[[], None], device: torch.device) -> int:
    """Peak memory of `step()` above what was allocated before it."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        step()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    with LiveTensorBytes() as live:
        step()
    return live.peak


@dataclass
class Measured:
    times: list[float]  # seconds of each timed run, by the chosen clock
    peak_bytes: int

    @property
    def best(self) -> float:
        return min(self.times)


def measure_step(step: Callable[[], None], device: torch.device, clock: str, repeats: int,
                 enough_seconds: float) -> Measured:  # fmt: skip
    """Memory run (the warm-up on the CPU), then the timed runs of `step()`, as the module docstring says."""
    on_cuda = device.type == "cuda"
    sync = (lambda: torch.cuda.synchronize(device)) if on_cuda else (lambda: None)
    now = CLOCKS[clock]
    if on_cuda:
        step()
    peak = peak_bytes(step, device)
    times: list[float] = []
    while len(times) < repeats and (not times or sum(times) < enough_seconds):
        sync()
        start = now()
        step()
        sync()
        times.append(now() - start)
    return Measured(times, peak)


def release(device: torch.device) -> None:
    """Free what the last method left behind before the next one is built (its model, states, cached blocks)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
