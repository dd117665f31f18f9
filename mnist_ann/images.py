"""Turn a user's picture of a digit into an MNIST-style model input.

MNIST digits are white ink on black, anti-aliased, scaled to fit a 20x20 box with their aspect
ratio kept, and placed in a 28x28 frame so that their centre of mass is at the centre. A photo or
a paint-program drawing (dark ink on white, any size, off-centre, with margins) is classified
badly unless it is prepared the same way, which is what `prepare` does. MNIST's own images come
through it unchanged in substance.
"""

import logging
from pathlib import Path
from typing import BinaryIO

import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor
from torchvision.transforms.v2 import functional as F

from mnist_ann.errors import DataError
from mnist_ann.network import IMAGE_SIDE

log = logging.getLogger(__name__)

BOX, FRAME = 20, IMAGE_SIDE
# Larger is refused from its header, before decoding: a decompression bomb, or no digit anyone drew (a
# 12-megapixel phone photo is 4000x3000). Decoding is what a picture costs the service's worker.
MAX_PIXELS = 4096 * 4096
DRAFT_SIZE = (1024, 1024)  # JPEGs larger than this decode at a reduced scale: plenty for a digit
BLANK_CONTRAST = 0.1  # ink must differ from the background by a tenth of the grey scale at least
INK_THRESHOLD = 0.25  # of the strongest ink: fainter pixels are noise when finding the digit's box


class ImageError(DataError):
    """An image file that cannot be read or holds no digit."""


class EmptyImage(ImageError):
    """A file of 0 bytes."""


class UnreadableImage(ImageError):
    """Bytes that are no image format Pillow knows."""


class DamagedImage(ImageError):
    """An image whose data is corrupt or cut short."""


class OversizedImage(ImageError):
    """An image of more pixels than are accepted, refused before it is decoded."""


class BlankImage(ImageError):
    """An image without any ink: no digit to classify."""


def load_image(source: Path | BinaryIO, name: str | None = None) -> Image.Image:
    """Open any image Pillow reads, from a file or a binary stream, refusing empty and enormous ones
    before their pixels are decoded. An animated image gives its first frame, saying so."""
    name = name or str(source)
    if (source.stat().st_size if isinstance(source, Path) else len(source.getbuffer())) == 0:
        raise EmptyImage(f"{name}: empty file (0 bytes)")
    try:
        image = open_header(source)
        if image.width * image.height > MAX_PIXELS:
            raise OversizedImage(f"{name}: {image.width}x{image.height} pixels, more than the {MAX_PIXELS:,} accepted")
        if image.width > DRAFT_SIZE[0] and image.height > DRAFT_SIZE[1]:
            image.draft("RGB", DRAFT_SIZE)  # (JPEG only; other formats ignore it)
        image.load()
    except UnidentifiedImageError:
        raise UnreadableImage(f"{name}: not an image Pillow can read") from None
    except OSError as error:  # truncated or corrupt data
        raise DamagedImage(f"{name}: corrupt or truncated image ({error})") from None
    if getattr(image, "n_frames", 1) > 1:
        log.warning(f"{name}: animated ({image.n_frames} frames); only its first frame is used")
    return ImageOps.exif_transpose(image)


def open_header(source: Path | BinaryIO) -> Image.Image:
    """Image.open, which reads the header only. Pillow's own decompression-bomb check, far above MAX_PIXELS,
    is left out for this call, so that a huge picture is refused by `load_image` with its size."""
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        return Image.open(source)
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def to_grey(image: Image.Image) -> Tensor:
    """Greyscale in [0, 1], shape (H, W), with any transparency composited onto white paper."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        paper = Image.new("RGBA", image.size, "white")
        image = Image.alpha_composite(paper, image.convert("RGBA"))
    return F.to_dtype(F.pil_to_tensor(image.convert("L")), torch.float32, scale=True)[0]


def prepare(image: Image.Image, name: str = "image") -> Tensor:
    """An MNIST-style uint8 digit (28, 28): bright ink on black, fitted to 20x20, centred by its mass."""
    grey = to_grey(image)
    border = torch.cat([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    background = border.median()
    ink = (grey - background).abs()  # distance from the paper's shade: bright ink on black either way
    if ink.max() < BLANK_CONTRAST:
        raise BlankImage(f"{name}: no digit found (the image is blank)")
    rows, columns = (ink >= INK_THRESHOLD * ink.max()).nonzero(as_tuple=True)
    digit = ink[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
    digit = digit / digit.max()

    height, width = digit.shape
    scale = BOX / max(height, width)
    size = [max(1, round(height * scale)), max(1, round(width * scale))]
    digit = F.resize(digit[None], size, antialias=True)[0].clamp(0, 1)

    # Centre of mass to (14, 14), where MNIST puts it: place the box, then shift by the offset left.
    frame = torch.zeros(FRAME, FRAME)
    top, left = (FRAME - size[0]) // 2, (FRAME - size[1]) // 2
    frame[top : top + size[0], left : left + size[1]] = digit
    mass = frame.sum()
    grid = torch.arange(FRAME, dtype=torch.float32)
    centre_row, centre_column = (frame.sum(1) @ grid) / mass, (frame.sum(0) @ grid) / mass
    # Clamped so that the box stays inside the frame (the shift never wraps ink around an edge).
    shift_rows = min(max(round(FRAME / 2 - centre_row.item()), -top), FRAME - top - size[0])
    shift_columns = min(max(round(FRAME / 2 - centre_column.item()), -left), FRAME - left - size[1])
    frame = torch.roll(frame, shifts=(shift_rows, shift_columns), dims=(0, 1))
    return (frame * 255).round().to(torch.uint8)


IMAGE_SUFFIXES = {e for e, format_ in Image.registered_extensions().items() if format_ in Image.OPEN}


def find_images(paths: list[str]) -> list[Path]:
    """The files named, and the image files (by suffix) inside the folders named, in a stable order."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            found.append(path)
        else:
            raise ImageError(f"{path}: no such file or folder")
    return found


def load_pictures(paths: list[str]) -> tuple[Tensor, list[str], list[str]]:
    """The digits in the image files and folders named, prepared MNIST-style: uint8 (N, 28, 28),
    the file of each, and one message per file that could not be used (also logged as it happens)."""
    found = find_images(paths)
    if not found:
        raise ImageError(f"no image files in {', '.join(paths)} (it reads the types Pillow opens: .png, .jpg, ...)")
    digits, names, failures = [], [], []
    for path in found:
        try:
            digits.append(prepare(load_image(path), str(path)))
            names.append(str(path))
        except ImageError as error:
            failures.append(str(error))
            log.warning(f"skipped {error}")
    return (torch.stack(digits) if digits else torch.empty(0, FRAME, FRAME, dtype=torch.uint8)), names, failures
