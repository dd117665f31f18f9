"""MNIST as a LightningDataModule: finding or downloading the files, normalizing, splitting, serving batches.

The whole data set is small (60,000 + 10,000 images of 28x28 bytes), so it is normalized once into
float tensors, kept on the training device, and served as slices cut by a shuffled index. That
removes the per-sample Python work (PIL conversion, transforms, collation) that dominates the
textbook pipeline, where a step of this model costs about a millisecond of arithmetic.
"""

import gzip
import hashlib
import logging
import math
import os
import struct
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torchvision.datasets import MNIST, FashionMNIST
from torchvision.transforms.v2 import functional as F

from mnist_ann.errors import ConfigError, DataError, MNISTNotFoundError
from mnist_ann.images import ImageError, find_images, load_image, prepare

log = logging.getLogger(__name__)

DATA_DIR_ENV = "MNIST_ANN_DATA_DIR"
DEFAULT_DATA_DIR = "data"
MEAN, STD = 0.5, 0.5
TRAIN_SIZE = 60_000
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
# MD5 of the published, uncompressed files (torchvision only knows those of the .gz downloads).
PUBLISHED_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
PUBLISHED_COUNT = {"train": 60_000, "t10k": 10_000}


class ChecksumWarning(UserWarning):
    """A data file holds MNIST's shape but not its published bytes."""


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """The configured folder, else $MNIST_ANN_DATA_DIR, else ./data."""
    return Path(data_dir or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)


# Datasets torchvision downloads, in its layout: <data_dir>/<class name>/raw/. Anything else given as
# `data.dataset` is a folder holding the four files itself, gzipped or not.
DATASETS = {"mnist": MNIST, "fashion-mnist": FashionMNIST}
DIGITS = [str(digit) for digit in range(10)]


def raw_folder(data_dir: Path, dataset: str = "mnist") -> Path:
    """Where the four IDX files of `dataset` are (torchvision keeps and looks for them there)."""
    return data_dir / DATASETS[dataset].__name__ / "raw" if dataset in DATASETS else Path(dataset)


def class_names(dataset: str) -> list[str]:
    return DATASETS[dataset].classes if dataset == "fashion-mnist" else DIGITS


def idx_path(folder: Path, name: str) -> Path | None:
    """The file `name` in `folder`, or its gzipped copy `name.gz`; None when neither is there."""
    return next((path for path in (folder / name, folder / f"{name}.gz") if path.is_file()), None)


def missing_files(folder: Path) -> list[str]:
    return [name for name in MNIST_FILES if idx_path(folder, name) is None]


def ensure_mnist(data_dir: Path, download: bool = True, dataset: str = "mnist") -> None:
    """Make sure the four files of `dataset` are there, downloading them only when they are missing."""
    folder = raw_folder(data_dir, dataset)
    if not missing_files(folder):
        return
    reason = "downloading is switched off (data.download: false)"
    if dataset not in DATASETS:
        reason = "a folder given as data.dataset is never downloaded into"
    elif download:
        try:
            DATASETS[dataset](data_dir, download=True)
        except (OSError, RuntimeError) as error:  # torchvision reports each failed mirror in one RuntimeError
            reason = f"the download failed: {str(error).strip().splitlines()[-1]}"
    if missing := missing_files(folder):
        title = DATASETS[dataset].__name__ if dataset in DATASETS else "IDX data"
        raise MNISTNotFoundError(
            f"{title} not found in {folder.resolve()}: missing {', '.join(missing)}, and {reason}. "
            f"Put the four files {', '.join(MNIST_FILES)} (uncompressed, or each as .gz) in that folder, or "
            f"point --data.data_dir (or ${DATA_DIR_ENV}) at a folder holding {title}/raw/, or run once with "
            "network access."
        )


def read_idx(path: Path, shape_tail: tuple[int, ...]) -> tuple[Tensor, bytes]:
    """An IDX file of unsigned bytes (gzipped or not) as a uint8 tensor, after checking its magic
    number, dimensions and length; with the file's (uncompressed) content, for checksums."""
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    ndim = 1 + len(shape_tail)
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise DataError(f"{path}: only {len(data)} bytes, too short even for an IDX header; the file is truncated")
    if data[:4] != bytes([0, 0, 0x08, ndim]):
        raise DataError(
            f"{path}: not an IDX file of {ndim}-dimensional unsigned bytes: magic number {data[:4].hex()}, "
            f"expected 0000080{ndim}; it may be compressed without a .gz name, or another file under this name"
        )
    shape = struct.unpack(f">{ndim}I", data[4:header_size])
    if shape[1:] != shape_tail:
        raise DataError(f"{path}: items of shape {shape[1:]}, expected {shape_tail} (28x28 images)")
    expected = header_size + math.prod(shape)
    if len(data) != expected:
        damage = "it is truncated" if len(data) < expected else "it has bytes beyond the data"
        raise DataError(f"{path}: {len(data)} bytes, but its header announces {shape} = {expected} bytes; {damage}")
    return torch.frombuffer(bytearray(data[header_size:]), dtype=torch.uint8).view(shape), data


def warn_unless_published(path: Path, content: bytes) -> None:
    """A visible warning, naming the file, when a file of MNIST's size is not the published MNIST."""
    digest, published = hashlib.md5(content).hexdigest(), PUBLISHED_MD5[path.name.removesuffix(".gz")]
    if digest != published:
        warnings.warn(
            f"{path}: MD5 {digest} differs from the published MNIST file ({published}); "
            "the data may be corrupt or a rebuilt copy",
            ChecksumWarning,
            stacklevel=2,
        )


def load_split(data_dir: Path, train: bool, dataset: str = "mnist") -> tuple[Tensor, Tensor]:
    """Check and read one split (no network): uint8 images (N, 28, 28) and int64 labels (N,)."""
    prefix = "train" if train else "t10k"
    folder = raw_folder(data_dir, dataset)
    images_path = idx_path(folder, f"{prefix}-images-idx3-ubyte")
    labels_path = idx_path(folder, f"{prefix}-labels-idx1-ubyte")
    if images_path is None or labels_path is None:
        raise MNISTNotFoundError(f"{folder}: the {prefix} images or labels are missing")
    (images, images_content), (labels, labels_content) = read_idx(images_path, (28, 28)), read_idx(labels_path, ())
    labels = labels.long()
    if len(images) != len(labels):
        raise DataError(f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels")
    if (outside := (labels > 9).nonzero()).numel():
        index = outside[0].item()
        raise DataError(f"{labels_path}: label {labels[index].item()} at position {index} is outside 0-9")
    if dataset == "mnist" and len(images) == PUBLISHED_COUNT[prefix]:  # the published checksums are of the content
        warn_unless_published(images_path, images_content)
        warn_unless_published(labels_path, labels_content)
    return images, labels


def normalize(images: Tensor) -> Tensor:
    """uint8 images (N, 28, 28) -> float32 (N, 1, 28, 28): scaled to [0, 1], then (x - 0.5) / 0.5."""
    scaled = F.to_dtype(images.unsqueeze(1), torch.float32, scale=True)
    return F.normalize(scaled, mean=[MEAN], std=[STD])


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
    at the start of every epoch and to check that evaluation data is not shuffled. `state_dict` and
    `load_state_dict` make it resumable: Lightning saves the position in the epoch with every
    checkpoint, and a run resumed from a mid-epoch checkpoint continues with the very next batch.
    """

    def __init__(self, images: Tensor, labels: Tensor, sampler: EpochBatchSampler) -> None:
        self.images, self.labels = images, labels
        self.sampler = self.batch_sampler = sampler
        self.served = 0  # batches handed out in the current pass (Lightning does not prefetch from sized loaders)
        self._resume_at = 0

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        start, self._resume_at = self._resume_at, 0
        self.served = start
        for index in list(self.sampler)[start:]:
            self.served += 1
            yield self.images[index], self.labels[index]

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.sampler.epoch, "served": self.served}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.set_epoch(state["epoch"])
        self._resume_at = state["served"] % len(self)  # a finished pass resumes at the next epoch's start


class MNISTDataModule(L.LightningDataModule):
    """MNIST: 60,000 training images (minus a fixed validation split) and the 10,000 test images.

    Args:
        data_dir: folder holding `MNIST/raw/` (torchvision's layout); when unset, ${MNIST_ANN_DATA_DIR}, else `data`.
        batch_size: images per training batch: one optimizer step each.
        eval_batch_size: images per validation, test and predict batch. It changes no result, only
            speed: a few large batches evaluate much faster than many small ones.
        val_size: images carved out of the training set for validation, the same ones on every run; 0 for none.
        split_seed: seed of that carve-out.
        download: fetch the files with torchvision when they are missing.
        dataset: `mnist`, `fashion-mnist` (both downloadable into `data_dir`), or a folder holding the
            four IDX files in MNIST's format, gzipped or not, such as `/usr/share/datasets/fashion-mnist`.
        classes: the name of each label 0-9, for predictions and monitoring; unset, the dataset's own
            (digits, or Fashion-MNIST's clothes).
        predict_files: image files, or folders of them, for `predict` (prepared MNIST-style by
            `mnist_ann.images`); unset, `predict` runs on the test images.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike | None = None,
        batch_size: int = 64,
        eval_batch_size: int = 1000,
        val_size: int = 5_000,
        split_seed: int = 12345,
        download: bool = True,
        dataset: str = "mnist",
        classes: list[str] | None = None,
        predict_files: list[str] | None = None,
    ) -> None:
        super().__init__()
        for name, size in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if size < 1:
                raise ConfigError(f"data.{name} must be a positive integer, got {size}")
        if not 0 <= val_size < TRAIN_SIZE:
            raise ConfigError(f"data.val_size must be between 0 and {TRAIN_SIZE - 1}, got {val_size}")
        self.save_hyperparameters(ignore="data_dir")
        self.data_dir = resolve_data_dir(data_dir)
        if self.data_dir.exists() and not self.data_dir.is_dir():
            raise ConfigError(f"data.data_dir {self.data_dir} is a file; it must be a folder (holding MNIST/raw/)")
        # The folder actually used (after the environment fallback), as text so checkpoints stay weights_only-loadable.
        self.hparams["data_dir"] = str(self.data_dir)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.val_size, self.split_seed, self.download = val_size, split_seed, download
        self.predict_files, self.dataset = predict_files, dataset
        self.classes = list(classes) if classes else class_names(dataset)
        if len(self.classes) != 10:
            raise ConfigError(f"data.classes must name the 10 labels 0-9, got {len(self.classes)} names")
        self.splits: dict[str, tuple[Tensor, Tensor]] = {}
        # For `predict`: a name per item (its file), and one message per file that could not be used.
        self.predict_names: list[str] = []
        self.predict_failures: list[str] = []

    def _predicting_files(self, stage: str | None = None) -> bool:
        predicting = stage == "predict" or (self.trainer is not None and self.trainer.predicting)
        return predicting and bool(self.predict_files)

    def prepare_data(self) -> None:
        if not self._predicting_files():
            ensure_mnist(self.data_dir, self.download, self.dataset)

    def setup(self, stage: str) -> None:
        device = self.trainer.strategy.root_device if self.trainer else torch.device("cpu")
        if self._predicting_files(stage):
            self._setup_predict_files(device)
        elif not self.splits:
            self._setup_mnist(device)

    def _setup_predict_files(self, device: torch.device) -> None:
        digits, self.predict_names, self.predict_failures = [], [], []
        for path in find_images(self.predict_files):
            try:
                digits.append(prepare(load_image(path), str(path)))
                self.predict_names.append(str(path))
            except ImageError as error:
                self.predict_failures.append(str(error))
                log.warning(f"skipped {error}")
        images = normalize(torch.stack(digits)) if digits else torch.empty(0, 1, 28, 28)
        self.splits["predict"] = images.to(device), torch.arange(len(images), device=device)

    def _setup_mnist(self, device: torch.device) -> None:
        ensure_mnist(self.data_dir, download=False, dataset=self.dataset)
        images, labels = load_split(self.data_dir, train=True, dataset=self.dataset)
        if self.val_size >= len(images):
            raise ConfigError(f"data.val_size={self.val_size} leaves no training images out of {len(images)}")
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(self.split_seed))
        val_index, train_index = order[: self.val_size], order[self.val_size :]
        images = normalize(images)
        self.splits["train"] = images[train_index], labels[train_index]
        self.splits["val"] = images[val_index], labels[val_index]
        self.splits["test"] = (
            normalize((test := load_split(self.data_dir, train=False, dataset=self.dataset))[0]),
            test[1],
        )
        # Predicting on the test images: the second item of each batch is the image's index, not its label.
        self.splits["predict"] = self.splits["test"][0], torch.arange(len(test[1]))
        self.predict_names = [f"test image {index}" for index in range(len(test[1]))]
        self.splits = {name: (x.to(device), y.to(device)) for name, (x, y) in self.splits.items()}

    def _loader(self, split: str, batch_size: int, training: bool = False) -> TensorLoader:
        images, labels = self.splits[split]
        trainer = self.trainer
        sampler = EpochBatchSampler(
            len(images),
            batch_size,
            shuffle=training,
            seed=torch.initial_seed(),  # the run's seed, as set by seed_everything
            num_replicas=trainer.world_size if trainer else 1,
            rank=trainer.global_rank if trainer else 0,
            equal_shards=training,
            device=images.device,
        )
        return TensorLoader(images, labels, sampler)

    def train_dataloader(self) -> TensorLoader:
        return self._loader("train", self.batch_size, training=True)

    def val_dataloader(self) -> TensorLoader | list:
        return self._loader("val", self.eval_batch_size) if self.val_size else []

    def test_dataloader(self) -> TensorLoader:
        return self._loader("test", self.eval_batch_size)

    def predict_dataloader(self) -> TensorLoader:
        return self._loader("predict", self.eval_batch_size)
