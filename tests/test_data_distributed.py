"""The loaders' shards under DDP, checked rank by rank in one process (the 2-process runs: test_data_ddp.py)."""

import itertools

import pytest
import torch
from torch.utils.data import DistributedSampler

from hopfield_attention.data.loaders import EpochShuffle, resumable_loader


class Indices(torch.utils.data.Dataset):
    def __init__(self, size: int):
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> int:
        return index


def loader(size: int, rank: int, replicas: int, *, shuffle: bool, batch_size: int = 2, epoch: int = 0):
    return resumable_loader(
        Indices(size), batch_size=batch_size, shuffle=shuffle, current_epoch=lambda: epoch, drop_last=shuffle,
        num_workers=0, pin_memory=False, num_replicas=replicas, rank=rank,
    )  # fmt: skip


@pytest.mark.parametrize("replicas", [2, 3])
def test_train_shards_partition_the_one_process_order_of_each_epoch(replicas):
    size, seed = 11, 5
    for epoch in (0, 1):
        whole = EpochShuffle(Indices(size), lambda: epoch, seed=seed).order(seed, epoch)
        shards = [
            EpochShuffle(Indices(size), lambda: epoch, seed=seed, num_replicas=replicas, rank=r)
            for r in range(replicas)
        ]
        orders = [shard.order(seed, epoch) for shard in shards]
        per_rank = size // replicas
        assert [len(order) for order in orders] == [len(shard) for shard in shards] == [per_rank] * replicas
        # Rank r takes every replicas-th index of the one-process permutation, starting at r; the tail that
        # does not fill a round is dropped, so each rank runs the same number of batches.
        for rank, order in enumerate(orders):
            assert order == whole[rank : per_rank * replicas : replicas]
        assert sorted(itertools.chain(*orders)) == sorted(whole[: per_rank * replicas])
    assert EpochShuffle(Indices(size), lambda: 0, seed=seed).order(seed, 0) != whole  # epochs differ


def test_one_process_order_is_the_whole_permutation():
    sampler = EpochShuffle(Indices(10), lambda: 0, seed=1)
    assert len(sampler) == 10 and sorted(sampler) == list(range(10))


def test_a_rank_resumes_its_own_shard_from_the_state_rank_zero_saved():
    # The checkpoint holds rank 0's loader state; every rank loads it. The state is a position in the epoch,
    # the same on every rank, so rank 1 continues its own shard.
    rank0, rank1 = loader(20, 0, 2, shuffle=True), loader(20, 1, 2, shuffle=True)
    uninterrupted = [batch.tolist() for batch in loader(20, 1, 2, shuffle=True)]
    iterator0 = iter(rank0)
    next(iterator0), next(iterator0)
    state = rank0.state_dict()
    rank1.load_state_dict(state)
    assert [batch.tolist() for batch in rank1] == uninterrupted[2:]


def test_evaluation_shards_cover_every_example_once_without_padding():
    size, replicas = 7, 2  # uneven: a padding sampler would repeat one example
    shards = [
        [i for batch in loader(size, rank, replicas, shuffle=False) for i in batch.tolist()] for rank in range(replicas)
    ]
    assert sorted(itertools.chain(*shards)) == list(range(size))
    assert [len(s) for s in shards] == [4, 3]


def test_samplers_are_distributed_ones_so_lightning_never_wraps_them_again():
    # Lightning's _requires_distributed_sampler skips loaders whose sampler is already a DistributedSampler.
    assert isinstance(loader(8, 0, 2, shuffle=True).sampler, DistributedSampler)
    assert isinstance(loader(8, 1, 2, shuffle=False).sampler, DistributedSampler)
