"""The DataLoader of every datamodule: resumable, so a checkpoint from mid-epoch continues the epoch's order.

torchdata's StatefulDataLoader is a drop-in DataLoader with state_dict/load_state_dict. Lightning's fit
loop stores that state in each checkpoint and loads it when `ckpt_path=` resumes mid-epoch, so the
continued run draws the rest of the interrupted epoch's batches, in the same order. The train order is
a permutation fixed by (run seed, trainer.current_epoch), read at each epoch's first batch, so a run
resumed at an epoch boundary (where Lightning may load no loader state) shuffles every later epoch as
the uninterrupted run does. Lightning's own set_epoch count is not used: after a resume from an epoch's
end it runs one ahead of current_epoch.

Under DDP (configs/trainer: `use_distributed_sampler: false`, so Lightning never re-wraps a sampler) each
process reads its own shard: training, every world_size-th index of the same epoch permutation starting at
the process's rank (the permutation's tail that does not fill a round is dropped, so every rank runs the
same number of batches); evaluation, Lightning's UnrepeatedDistributedSampler, which neither pads nor
repeats, so the processes together see each block or image exactly once and whole-split metrics
(summed over processes by torchmetrics) are those of one process. The loader state is a position in the
epoch, the same on every rank: the checkpoint (written by rank 0) resumes every rank's shard.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import numpy as np
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import Dataset, DistributedSampler
from torchdata.stateful_dataloader import StatefulDataLoader


class EpochShuffle(DistributedSampler):
    """This rank's share of an order of the whole dataset drawn from (seed, current_epoch()).

    seed defaults to the run's (seed_everything gives every rank the same). With one replica the share is
    the whole permutation. A DistributedSampler only so that Lightning, if asked to
    (`use_distributed_sampler=True`), leaves it alone instead of sharding the shard again; its `epoch`
    and `set_epoch` are not used.
    """

    def __init__(
        self,
        dataset: Dataset,
        current_epoch: Callable[[], int],
        seed: int | None = None,
        num_replicas: int = 1,
        rank: int = 0,
    ):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, drop_last=True)
        self.current_epoch = current_epoch
        self.seed = torch.initial_seed() if seed is None else seed  # the seed of seed_everything

    def __len__(self) -> int:
        return self.num_samples  # len(dataset) // num_replicas

    def __iter__(self) -> Iterator[int]:
        return _EpochOrder(self)

    def order(self, seed: int, epoch: int) -> list[int]:
        stream = np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0]
        permutation = torch.randperm(len(self.dataset), generator=torch.Generator().manual_seed(int(stream)))
        return permutation[self.rank : self.total_size : self.num_replicas].tolist()


class _EpochOrder(Iterator[int]):
    """One epoch's indices, drawn at the first index (the trainer's epoch is set by then); its state is its position.

    A loaded position counts only if the trainer is still in that epoch: a checkpoint from an epoch's end
    is loaded too, and the next epoch starts from its first index.
    """

    def __init__(self, sampler: EpochShuffle):
        self.sampler = sampler
        self.loaded: dict | None = None
        self.seed_epoch: tuple[int, int] | None = None
        self.indices: list[int] = []
        self.yielded = 0

    def __next__(self) -> int:
        if self.seed_epoch is None:
            self._draw()
        if self.yielded == len(self.indices):
            raise StopIteration
        self.yielded += 1
        return self.indices[self.yielded - 1]

    def _draw(self) -> None:
        seed, epoch = self.sampler.seed, self.sampler.current_epoch()
        if self.loaded is not None and self.loaded["epoch"] == epoch:
            seed, self.yielded = self.loaded["seed"], self.loaded["yielded"]
        self.loaded = None
        self.seed_epoch = (seed, epoch)
        self.indices = self.sampler.order(seed, epoch)

    def state_dict(self) -> dict:
        if self.seed_epoch is None:
            return self.loaded or {"seed": self.sampler.seed, "epoch": self.sampler.current_epoch(), "yielded": 0}
        seed, epoch = self.seed_epoch
        return {"seed": seed, "epoch": epoch, "yielded": self.yielded}

    def load_state_dict(self, state: dict) -> None:
        self.loaded = dict(state)
        self.seed_epoch = None
        self.yielded = 0


def resumable_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    shuffle: bool,
    current_epoch: Callable[[], int],
    drop_last: bool,
    num_workers: int,
    pin_memory: bool,
    num_replicas: int = 1,
    rank: int = 0,
) -> StatefulDataLoader:
    """A StatefulDataLoader over this rank's shard: `shuffle` orders it by EpochShuffle(current_epoch), else
    it is the rank's unpadded share in index order (all of it with one replica)."""
    if shuffle:
        sampler = EpochShuffle(dataset, current_epoch, num_replicas=num_replicas, rank=rank)
    elif num_replicas > 1:
        sampler = UnrepeatedDistributedSampler(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
    else:
        sampler = None
    return StatefulDataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        # worker seeds from the loader's own generator: torch's global stream (dropout) is left untouched
        generator=torch.Generator().manual_seed(torch.initial_seed()),
        drop_last=drop_last,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
    )


class SplitLoaders:
    """The train, validation and test loaders of a datamodule whose `split_data` maps stage -> Dataset.

    Mixed in before LightningDataModule; uses the datamodule's name, splits, batch_size, eval_batch_size,
    num_workers and pin_memory. Evaluation loaders neither shuffle nor drop the last batch, so a metric
    covers the whole split (perplexity over every block, accuracy over every image).
    """

    split_data: Mapping[str, Dataset]

    @property
    def world_size(self) -> int:
        """How many processes read this data: the trainer's world size (1 without a trainer)."""
        return self.trainer.world_size if self.trainer is not None else 1

    def train_dataloader(self) -> StatefulDataLoader:
        return self._loader("train", shuffle=True, drop_last=True, batch_size=self.batch_size)

    def val_dataloader(self) -> StatefulDataLoader:
        return self._loader("validation", shuffle=False, drop_last=False, batch_size=self.eval_batch_size)

    def test_dataloader(self) -> StatefulDataLoader:
        return self._loader("test", shuffle=False, drop_last=False, batch_size=self.eval_batch_size)

    def _loader(self, stage: str, *, shuffle: bool, drop_last: bool, batch_size: int) -> StatefulDataLoader:
        if stage not in self.split_data:
            raise ValueError(f"{self.name}: no {stage!r} split configured (data.splits: {self.splits})")
        dataset = self.split_data[stage]
        replicas = self.trainer.distributed_sampler_kwargs if self.trainer is not None else None
        num_replicas, rank = (replicas["num_replicas"], replicas["rank"]) if replicas else (1, 0)
        # Every process needs a full batch to train on and one example to evaluate, or the ranks fall out of step.
        needed = batch_size * num_replicas if shuffle else num_replicas
        if len(dataset) < needed:
            raise ValueError(
                f"{self.name}: the {stage} split has {len(dataset)} examples, fewer than the {needed} that "
                f"{num_replicas} process(es) need" + (f" at batch size {batch_size}" if shuffle else "")
            )
        return resumable_loader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            current_epoch=trainer_epoch(self),
            drop_last=drop_last,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            num_replicas=num_replicas,
            rank=rank,
        )


def trainer_epoch(datamodule) -> Callable[[], int]:
    """The current epoch of the datamodule's trainer (0 while it has none)."""
    return lambda: datamodule.trainer.current_epoch if datamodule.trainer is not None else 0
