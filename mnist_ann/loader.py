"""Batches cut from tensors that already hold a whole data set: a sampler of index tensors and a loader.

When a data set fits in memory as one tensor, a batch is one indexing operation. That removes the
per-sample Python work (dataset __getitem__, transforms, collation) of a torch DataLoader, which
costs more than a whole training step of a small network. Nothing here knows what the tensors hold.
"""

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor


class EpochBatchSampler:
    """Index tensors, one per batch, covering this process's share of a data set once per epoch.

    With `shuffle`, the order is a permutation drawn from `seed` and the epoch number, so it changes
    every epoch, is the same for every process, and a resumed run sees the same order again.
    Each of `num_replicas` processes takes every `num_replicas`-th position of that permutation
    (starting at its `rank`): the shards are disjoint and together cover the set.

    With `equal_shards` (training), the last `size % num_replicas` positions of each epoch's order
    are left out, so that every process runs the same number of steps, as DDP requires. Evaluation
    keeps every item: its shards may differ by one item, and its metrics count each exactly once.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        equal_shards: bool = False,
        device: torch.device | str = "cpu",
    ) -> None:
        self.size, self.batch_size, self.shuffle, self.seed = size, batch_size, shuffle, seed
        self.num_replicas, self.rank, self.device = num_replicas, rank, torch.device(device)
        self.used = size - size % num_replicas if equal_shards else size  # positions of the order served
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch."""
        self.epoch = epoch

    def shard(self) -> Tensor:
        """This process's indices for the current epoch, in the order they will be served."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.size, generator=generator)
        else:
            order = torch.arange(self.size)
        return order[self.rank : self.used : self.num_replicas].to(self.device)

    def __len__(self) -> int:
        shard_size = len(range(self.rank, self.used, self.num_replicas))
        return -(-shard_size // self.batch_size)

    def __iter__(self) -> Iterator[Tensor]:
        return iter(self.shard().split(self.batch_size))


class TensorLoader:
    """Serves batches `(images[idx], labels[idx])` for each index tensor its sampler yields.

    Lightning accepts any sized iterable as a data loader. The sampler is exposed under DataLoader's
    attribute names, `sampler` and `batch_sampler`, because Lightning reads those to call `set_epoch`
    at the start of every epoch and to check that evaluation data is not shuffled.

    `state_dict` and `load_state_dict` make it resumable: Lightning saves the position in the epoch
    with every checkpoint, and a run resumed from a mid-epoch checkpoint continues with the very next
    batch. The restored position holds for every pass over the restored epoch, so that a look at the
    data before training (a sample grid, a sanity check) cannot use it up; the next epoch starts whole.
    """

    def __init__(self, images: Tensor, labels: Tensor, sampler: EpochBatchSampler) -> None:
        self.images, self.labels = images, labels
        self.sampler = self.batch_sampler = sampler
        self.served = 0  # batches handed out in the current pass (Lightning does not prefetch from sized loaders)
        self._resume: tuple[int, int] | None = None  # (epoch, batches already served in it) from a checkpoint

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        epoch, served = self._resume or (None, 0)
        self.served = start = served if epoch == self.sampler.epoch else 0
        for index in list(self.sampler)[start:]:
            self.served += 1
            yield self.images[index], self.labels[index]

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.sampler.epoch, "served": self.served}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.set_epoch(state["epoch"])
        if state["served"] < len(self):  # a finished pass resumes at the next epoch's start
            self._resume = state["epoch"], state["served"]
