"""The MNIST-format files: finding them, downloading them with torchvision, reading and checking them.

MNIST, Fashion-MNIST and any folder of the same four IDX files (gzipped or not) are read here into
uint8 tensors. Nothing in this module knows about Lightning or training.
"""

import contextlib
import gzip
import hashlib
import math
import os
import struct
import warnings
from pathlib import Path
from typing import BinaryIO

import torch
from torch import Tensor
from torchvision.datasets import MNIST, FashionMNIST

from mnist_ann.errors import DataError, MNISTNotFoundError
from mnist_ann.network import DIGITS, IMAGE_SIDE

DATA_DIR_ENV = "MNIST_ANN_DATA_DIR"
DEFAULT_DATA_DIR = "data"
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
# Datasets torchvision downloads, in its layout: <data_dir>/<class name>/raw/. Anything else given as
# a dataset is a folder holding the four files itself.
DATASETS = {"mnist": MNIST, "fashion-mnist": FashionMNIST}


class ChecksumWarning(UserWarning):
    """A data file holds MNIST's shape but not its published bytes."""


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """The configured folder, else $MNIST_ANN_DATA_DIR, else ./data."""
    return Path(data_dir or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)


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


def existing(folder: Path) -> Path:
    """`folder`, or the nearest of its parents that exists."""
    return next(path for path in (folder, *folder.parents) if path.exists())


def ensure_files(data_dir: Path, download: bool = True, dataset: str = "mnist") -> None:
    """Make sure the four files of `dataset` are there, downloading them only when they are missing."""
    folder = raw_folder(data_dir, dataset)
    if not missing_files(folder):
        return
    reason = "downloading is switched off (data.download: false)"
    if dataset not in DATASETS:
        reason = "a folder given as data.dataset is never downloaded into"
    elif download:
        made = [folder, *folder.parents][: len(folder.parts) - len(existing(folder).parts)]  # (deepest first)
        try:
            DATASETS[dataset](data_dir, download=True)
        except (OSError, RuntimeError) as error:  # torchvision reports each failed mirror in one RuntimeError
            reason = f"the download failed: {str(error).strip().splitlines()[-1]}"
            for empty in made:  # a mistyped data_dir is not left on disk, where the next run would find it
                with contextlib.suppress(OSError):
                    empty.rmdir()
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
    if not math.prod(shape):  # (torch makes no tensor of an empty buffer)
        return torch.zeros(shape, dtype=torch.uint8), data
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
    images, images_content = read_idx(images_path, (IMAGE_SIDE, IMAGE_SIDE))
    labels, labels_content = read_idx(labels_path, ())
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


def write_idx(file: BinaryIO, array: Tensor) -> None:
    """A uint8 tensor as IDX data (magic 0, 0, 8, ndim; big-endian sizes; the bytes), into an open file."""
    array = array.to(torch.uint8).contiguous()
    file.write(bytes([0, 0, 0x08, array.dim()]) + struct.pack(f">{array.dim()}I", *array.shape))
    file.write(array.numpy().tobytes())
