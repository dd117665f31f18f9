"""The data module: normalization, the fixed validation split, the loaders, where the data comes from."""

import pytest
import torch

from mnist_ann.data import MNISTDataModule, normalize
from mnist_ann.errors import ConfigError
from mnist_ann.idx import DATA_DIR_ENV


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


def test_data_folder_comes_from_the_environment_when_not_configured(synthetic_data_dir, monkeypatch):
    monkeypatch.setenv(DATA_DIR_ENV, str(synthetic_data_dir))
    assert MNISTDataModule().data_dir == synthetic_data_dir
    assert MNISTDataModule(data_dir="elsewhere").data_dir.name == "elsewhere"


def test_class_names_come_with_the_dataset_or_the_config():
    assert MNISTDataModule(dataset="fashion-mnist").classes[9] == "Ankle boot"
    assert MNISTDataModule(classes=list("abcdefghij")).classes[0] == "a"
    with pytest.raises(ConfigError, match=r"data\.classes must name the 10 labels"):
        MNISTDataModule(classes=["a"])


def test_a_validation_split_as_large_as_the_training_set_is_refused_when_the_data_is_read(synthetic_data_dir):
    with pytest.raises(ConfigError, match=r"data\.val_size=1200 leaves no training images out of 1200"):
        ready(MNISTDataModule(synthetic_data_dir, val_size=1200))
