"""Small synthetic MNIST look-alikes, written as real IDX files in torchvision's layout, and a picture of a digit.

Each class is a fixed random 28x28 stroke pattern plus per-image noise, so a model can learn it in
one short epoch while every byte still goes through the product's own loading code.
"""

import base64
from io import BytesIO
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mnist_ann import idx
from mnist_ann.files import replaced_whole


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file, as the product writes one (`mnist_ann.idx.write_idx`)."""
    with replaced_whole(path) as file:
        idx.write_idx(file, torch.from_numpy(np.ascontiguousarray(array, dtype=np.uint8)))


def synthetic_digits(count: int, seed: int, noise: float = 20) -> tuple[np.ndarray, np.ndarray]:
    """`count` images (uint8, N x 28 x 28) and labels (0-9), each class a noisy copy of its own template."""
    templates = np.random.default_rng(1234).random((10, 28, 28)) > 0.8
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 10
    rng.shuffle(labels)
    images = templates[labels] * rng.uniform(150, 255, (count, 1, 1)) + rng.normal(0, noise, (count, 28, 28))
    return np.clip(images, 0, 255).astype(np.uint8), labels.astype(np.uint8)


def write_mnist(data_dir: Path, train_size: int = 1200, test_size: int = 300, noise: float = 20) -> Path:
    """Write the four MNIST files under `data_dir/MNIST/raw/` and return `data_dir`; more noise, harder digits."""
    raw = data_dir / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, size, seed in (("train", train_size, 0), ("t10k", test_size, 1)):
        images, labels = synthetic_digits(size, seed, noise)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return data_dir


def bar_picture(size=(300, 200), box=(40, 30, 100, 150), ink=0, paper=255, mode="L") -> Image.Image:
    """A dark bar (a '1', more or less) drawn off-centre on light paper."""
    pixels = np.full(size[::-1], paper, dtype=np.uint8)
    left, top, right, bottom = box
    pixels[top:bottom, left:right] = ink
    return Image.fromarray(pixels).convert(mode)


def png_base64(picture: Image.Image) -> str:
    """A picture as a PNG file in base64: the `image` of a request to the service."""
    file = BytesIO()
    picture.save(file, format="PNG")
    return base64.b64encode(file.getvalue()).decode()
