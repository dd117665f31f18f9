"""The MNIST-format files: found offline, refused clearly when missing or damaged, checked against MNIST's checksums."""

import gzip
import shutil
import warnings

import pytest
import torch
from torchvision.datasets import MNIST

from mnist_ann.errors import DataError, MNISTNotFoundError
from mnist_ann.idx import MNIST_FILES, ChecksumWarning, ensure_files, load_split, raw_folder
from tests.helpers.commands import CONFIG, main_error
from tests.helpers.synthetic import write_idx, write_mnist


@pytest.fixture
def data_copy(synthetic_data_dir, tmp_path):
    return shutil.copytree(synthetic_data_dir, tmp_path / "data")


@pytest.fixture
def no_network(monkeypatch):
    monkeypatch.setattr(MNIST, "mirrors", ["http://127.0.0.1:9/"])  # any download attempt fails at once


def test_a_mistyped_data_folder_is_not_left_on_disk_by_a_failed_download(tmp_path, no_network):
    with pytest.raises(MNISTNotFoundError, match="download failed"):
        ensure_files(tmp_path / "typo" / "data", download=True)
    assert list(tmp_path.iterdir()) == []  # so the next run says the same


def test_present_files_are_used_without_any_network(synthetic_data_dir, no_network):
    ensure_files(synthetic_data_dir, download=True)
    images, labels = load_split(synthetic_data_dir, train=True)
    assert images.shape == (1200, 28, 28) and images.dtype == torch.uint8 and labels.dtype == torch.int64


@pytest.mark.parametrize("download", [False, True])
def test_missing_files_give_one_clear_error(tmp_path, synthetic_data_dir, no_network, download):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    shutil.copy(synthetic_data_dir / "MNIST" / "raw" / MNIST_FILES[0], raw)
    with pytest.raises(MNISTNotFoundError) as error:
        ensure_files(tmp_path, download=download)
    message = str(error.value)
    assert str(raw) in message and all(name in message for name in MNIST_FILES[1:])
    assert ("download failed" if download else "downloading is switched off") in message


def test_a_folder_of_gzipped_idx_files_is_a_dataset(synthetic_data_dir, tmp_path):
    folder = tmp_path / "gz"
    folder.mkdir()
    for path in raw_folder(synthetic_data_dir).iterdir():
        with path.open("rb") as source, gzip.open(folder / f"{path.name}.gz", "wb") as target:
            shutil.copyfileobj(source, target)
    images, labels = load_split(tmp_path / "unused", train=False, dataset=str(folder))
    expected_images, expected_labels = load_split(synthetic_data_dir, train=False)
    assert torch.equal(images, expected_images) and torch.equal(labels, expected_labels)


# Damaged files: one clear error naming the file and the problem.


def test_truncated_file(data_copy):
    path = raw_folder(data_copy) / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DataError, match=rf"{path}: 5000 bytes, but its header announces .* it is truncated"):
        load_split(data_copy, train=True)


def test_wrong_magic_number(data_copy):
    path = raw_folder(data_copy) / "t10k-labels-idx1-ubyte"
    path.write_bytes(b"\x1f\x8b\x08\x00" + path.read_bytes()[4:])  # a gzip header where IDX's should be
    with pytest.raises(DataError, match=rf"{path}: not an IDX file .* magic number 1f8b0800"):
        load_split(data_copy, train=False)


def test_image_and_label_counts_disagree(data_copy):
    labels = raw_folder(data_copy) / "t10k-labels-idx1-ubyte"
    write_idx(labels, torch.zeros(299, dtype=torch.uint8).numpy())
    with pytest.raises(DataError, match=r"holds 300 images but .*t10k-labels-idx1-ubyte holds 299 labels"):
        load_split(data_copy, train=False)


def test_label_outside_0_to_9(data_copy):
    path = raw_folder(data_copy) / "t10k-labels-idx1-ubyte"
    labels = torch.zeros(300, dtype=torch.uint8)
    labels[17] = 12
    write_idx(path, labels.numpy())
    with pytest.raises(DataError, match=rf"{path}: label 12 at position 17 is outside 0-9"):
        load_split(data_copy, train=False)


def test_bad_data_through_the_command_line_is_one_message(data_copy, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = raw_folder(data_copy) / "train-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:100])
    message = main_error(monkeypatch, "fit", "--config", CONFIG, "--data.data_dir", str(data_copy))
    assert str(path) in message and "truncated" in message


# Checksums.


def test_mnist_sized_files_that_are_not_the_published_ones_warn_by_name(tmp_path):
    write_mnist(tmp_path, train_size=60_000, test_size=10)
    with pytest.warns(ChecksumWarning) as warned:
        load_split(tmp_path, train=True)
    assert {str(warning.message).split(":")[0] for warning in warned} == {
        str(raw_folder(tmp_path) / "train-images-idx3-ubyte"),
        str(raw_folder(tmp_path) / "train-labels-idx1-ubyte"),
    }


@pytest.mark.slow
def test_shared_mnist_warns_about_its_rebuilt_training_images_only(real_data_dir):
    with pytest.warns(ChecksumWarning, match="train-images-idx3-ubyte") as warned:
        load_split(real_data_dir, train=True)
    assert len(warned) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", ChecksumWarning)
        load_split(real_data_dir, train=False)  # the genuine published test files
