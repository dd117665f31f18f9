import shutil

import pytest
import torch
from torchvision.datasets import MNIST

from mnist_ann.data import (
    DATA_DIR_ENV,
    MNIST_FILES,
    EpochBatchSampler,
    MNISTDataModule,
    normalize,
)
from mnist_ann.errors import MNISTNotFoundError


def ready(data_module: MNISTDataModule) -> MNISTDataModule:
    data_module.prepare_data()
    data_module.setup("fit")
    return data_module


def served(loader) -> tuple[torch.Tensor, torch.Tensor]:
    batches = list(loader)
    return torch.cat([images for images, _ in batches]), torch.cat([labels for _, labels in batches])


def test_normalization_maps_black_to_minus_one_and_white_to_one():
    pixels = torch.tensor([[[0, 51, 255]]], dtype=torch.uint8).expand(1, 28, 3)
    normalized = normalize(pixels)
    assert normalized.shape == (1, 1, 28, 3) and normalized.dtype == torch.float32
    torch.testing.assert_close(normalized[0, 0, 0], torch.tensor([-1.0, 51 / 255 / 0.5 - 1, 1.0]))


def test_splits_are_disjoint_of_the_configured_sizes_and_fixed(synthetic_data_dir):
    data = ready(MNISTDataModule(synthetic_data_dir, batch_size=100, val_size=200))
    train_images, _ = data.splits["train"]
    val_images, _ = data.splits["val"]
    assert (len(train_images), len(val_images), len(data.splits["test"][0])) == (1000, 200, 300)
    flat_train, flat_val = train_images.flatten(1), val_images.flatten(1)
    assert not (torch.cdist(flat_val, flat_train).min(dim=1).values == 0).any()  # no image in both
    again = ready(MNISTDataModule(synthetic_data_dir, val_size=200))
    assert torch.equal(again.splits["val"][0], val_images)


def test_loaders_serve_normalized_batches_of_the_configured_size(synthetic_data_dir):
    data = ready(MNISTDataModule(synthetic_data_dir, batch_size=64, val_size=200))
    images, labels = next(iter(data.train_dataloader()))
    assert images.shape == (64, 1, 28, 28) and labels.shape == (64,)
    assert images.min() >= -1 and images.max() <= 1 and labels.dtype == torch.int64
    assert len(data.train_dataloader()) == 16  # ceil(1000 / 64)


def test_validation_split_of_zero_means_no_validation(synthetic_data_dir):
    data = ready(MNISTDataModule(synthetic_data_dir, val_size=0))
    assert data.val_dataloader() == [] and len(data.splits["train"][0]) == 1200


def test_evaluation_loaders_cover_their_set_once_in_order(synthetic_data_dir):
    data = ready(MNISTDataModule(synthetic_data_dir, batch_size=64, eval_batch_size=128, val_size=200))
    assert [len(labels) for _, labels in data.test_dataloader()] == [128, 128, 44]
    for split, loader in (("val", data.val_dataloader()), ("test", data.test_dataloader())):
        images, labels = served(loader)
        assert torch.equal(images, data.splits[split][0]) and torch.equal(labels, data.splits[split][1])


def test_present_files_are_used_without_any_network(synthetic_data_dir, monkeypatch):
    monkeypatch.setattr(MNIST, "mirrors", ["http://127.0.0.1:9/"])  # any download attempt would fail
    data = ready(MNISTDataModule(synthetic_data_dir, download=True, val_size=0))
    assert len(data.splits["train"][0]) == 1200


def test_data_folder_comes_from_the_environment_when_not_configured(synthetic_data_dir, monkeypatch):
    monkeypatch.setenv(DATA_DIR_ENV, str(synthetic_data_dir))
    assert MNISTDataModule().data_dir == synthetic_data_dir
    assert MNISTDataModule(data_dir="elsewhere").data_dir.name == "elsewhere"


@pytest.mark.parametrize("download", [False, True])
def test_missing_files_give_one_clear_error(tmp_path, synthetic_data_dir, monkeypatch, download):
    monkeypatch.setattr(MNIST, "mirrors", ["http://127.0.0.1:9/"])  # an unreachable network
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    shutil.copy(synthetic_data_dir / "MNIST" / "raw" / MNIST_FILES[0], raw)
    with pytest.raises(MNISTNotFoundError) as error:
        MNISTDataModule(tmp_path, download=download).prepare_data()
    message = str(error.value)
    assert str(raw) in message and all(name in message for name in MNIST_FILES[1:])
    assert ("download failed" if download else "downloading is switched off") in message


@pytest.mark.parametrize("kwargs", [{"batch_size": 0}, {"eval_batch_size": -5}, {"val_size": -1}, {"val_size": 60_000}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        MNISTDataModule(**kwargs)


# The sampler behind the training loader.


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
