"""The sampler and loader behind every split: epochs, shards for several processes, and resuming mid-epoch."""

import pytest
import torch

from mnist_ann.loader import EpochBatchSampler, TensorLoader


def epoch_order(sampler: EpochBatchSampler, epoch: int) -> torch.Tensor:
    sampler.set_epoch(epoch)
    return torch.cat(list(sampler))


def test_every_training_sample_appears_exactly_once_per_epoch():
    sampler = EpochBatchSampler(1000, batch_size=64, shuffle=True, seed=7)
    for epoch in range(3):
        assert torch.equal(epoch_order(sampler, epoch).sort().values, torch.arange(1000))
    assert [len(batch) for batch in sampler] == [64] * 15 + [40] and len(sampler) == 16


def test_order_changes_between_epochs_and_is_reproducible_from_the_seed():
    first, second = EpochBatchSampler(1000, 64, shuffle=True, seed=7), EpochBatchSampler(1000, 64, shuffle=True, seed=7)
    assert not torch.equal(epoch_order(first, 0), epoch_order(first, 1))
    assert torch.equal(epoch_order(first, 1), epoch_order(second, 1))
    assert not torch.equal(epoch_order(first, 1), epoch_order(EpochBatchSampler(1000, 64, shuffle=True, seed=8), 1))


def test_unshuffled_order_is_the_data_order():
    assert torch.equal(epoch_order(EpochBatchSampler(130, 64), 5), torch.arange(130))


@pytest.mark.parametrize("replicas", [2, 3])
def test_shards_for_several_processes_are_disjoint_and_cover_the_set(replicas):
    shards = [epoch_order(EpochBatchSampler(1000, 64, True, 7, replicas, rank), 2) for rank in range(replicas)]
    assert torch.equal(torch.cat(shards).sort().values, torch.arange(1000))
    for rank, shard in enumerate(shards):
        assert len(EpochBatchSampler(1000, 64, True, 7, replicas, rank)) == -(-len(shard) // 64)


def test_training_shards_are_equal_so_every_process_runs_the_same_steps():
    shards = [EpochBatchSampler(1001, 64, True, 7, 3, rank, equal_shards=True) for rank in range(3)]
    sizes = {len(epoch_order(shard, 1)) for shard in shards}
    assert sizes == {333} and len({len(shard) for shard in shards}) == 1
    served = torch.cat([epoch_order(shard, 1) for shard in shards])
    assert len(served.unique()) == 999  # disjoint; the two left out change with the epoch's order


# Resuming: Lightning saves `state_dict()` with each checkpoint and restores it before training goes on.


def loader(epoch: int = 0) -> TensorLoader:
    images = torch.arange(100).float()
    sampler = EpochBatchSampler(100, 10, shuffle=True, seed=3)
    sampler.set_epoch(epoch)
    return TensorLoader(images, images.long(), sampler)


def test_a_restored_loader_continues_with_the_next_batch_of_the_same_order():
    whole = [labels for _, labels in loader(epoch=2)]
    interrupted = loader(epoch=2)
    batches = iter(interrupted)
    for _ in range(4):
        next(batches)
    state = interrupted.state_dict()
    assert state == {"epoch": 2, "served": 4}

    restored = loader()
    restored.load_state_dict(state)
    resumed = [labels for _, labels in restored]
    assert len(resumed) == 6 and all(torch.equal(a, b) for a, b in zip(resumed, whole[4:], strict=True))


def test_a_look_at_the_data_before_resuming_does_not_use_up_the_position():
    restored = loader()
    restored.load_state_dict({"epoch": 2, "served": 4})
    peeked = next(iter(restored))  # e.g. a callback taking a sample batch
    resumed = [labels for _, labels in restored]
    assert len(resumed) == 6 and torch.equal(peeked[1], resumed[0])
    restored.sampler.set_epoch(3)  # the next epoch starts whole
    assert len(list(restored)) == 10


def test_a_finished_epoch_resumes_at_the_start_of_the_next():
    restored = loader()
    restored.load_state_dict({"epoch": 2, "served": 10})
    restored.sampler.set_epoch(3)
    assert len(list(restored)) == 10
