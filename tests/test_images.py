"""Preparing users' pictures of digits the way MNIST digits were prepared, and refusing bad files."""

import numpy as np
import pytest
import torch
from PIL import Image

from mnist_ann.images import ImageError, find_images, load_image, prepare
from tests.helpers.synthetic import bar_picture


def centre_of_mass(digit: torch.Tensor) -> tuple[float, float]:
    grid, mass = torch.arange(28.0), digit.float().sum()
    return ((digit.float().sum(1) @ grid) / mass).item(), ((digit.float().sum(0) @ grid) / mass).item()


def test_dark_ink_on_light_paper_becomes_a_bright_centred_mnist_digit():
    digit = prepare(bar_picture())
    assert digit.shape == (28, 28) and digit.dtype == torch.uint8
    rows, columns = (digit > 64).nonzero(as_tuple=True)
    assert rows.max() - rows.min() + 1 == 20  # the longer side fitted to 20 pixels
    assert 8 <= columns.max() - columns.min() + 1 <= 10  # 60x120 keeps its aspect ratio: 10x20
    assert digit[0].sum() == digit[:, 0].sum() == 0  # black margins
    row, column = centre_of_mass(digit)
    assert abs(row - 14) <= 0.5 and abs(column - 14) <= 0.5


def test_light_ink_on_dark_paper_is_not_inverted():
    assert torch.equal(prepare(bar_picture(ink=255, paper=0)), prepare(bar_picture()))


def test_transparent_background_is_composited_on_paper():
    rgba = np.zeros((200, 300, 4), dtype=np.uint8)  # fully transparent
    rgba[30:150, 40:100] = (0, 0, 0, 255)  # opaque black ink
    assert torch.equal(prepare(Image.fromarray(rgba, "RGBA")), prepare(bar_picture()))


def test_colour_and_jpeg_pictures_work(tmp_path):
    path = tmp_path / "digit.jpg"
    bar_picture(mode="RGB").save(path, quality=80)
    jpeg = prepare(load_image(path)).float()
    assert (jpeg - prepare(bar_picture()).float()).abs().mean() < 8  # JPEG's artefacts, nothing more


def test_blank_image_is_refused():
    with pytest.raises(ImageError, match="no digit found"):
        prepare(Image.new("L", (50, 50), 255), "blank.png")


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not pixels")
    with pytest.raises(ImageError, match=f"{path}: not an image"):
        load_image(path)


def test_truncated_image(tmp_path):
    path = tmp_path / "cut.png"
    bar_picture().save(path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ImageError, match=f"{path}: corrupt or truncated"):
        load_image(path)


@pytest.mark.parametrize(
    ("side", "message"),
    # 20,000: past Pillow's own decompression-bomb limit, which would otherwise answer in its own words
    [(side, f"{side}x{side} pixels, more than the 16,777,216 accepted") for side in (8_000, 12_000, 20_000)],
)
def test_enormous_image_is_refused_before_decoding(tmp_path, side, message):
    path = tmp_path / "bomb.png"
    Image.new("1", (side, side)).save(path)  # tens of millions of pixels in a file of a few kilobytes
    assert path.stat().st_size < 100_000
    with pytest.raises(ImageError, match=f"{path}: {message}"):
        load_image(path)


def test_folders_are_searched_for_image_files(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("a.png", "sub/b.JPG", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [path.name for path in find_images([str(tmp_path)])] == ["a.png", "b.JPG"]
    with pytest.raises(ImageError, match="no such file or folder"):
        find_images([str(tmp_path / "missing.png")])
