"""Your own handwriting: labelled drawings kept as a data set the project reads like MNIST.

A collection is one folder, yours to copy or delete:

    my_digits/
      drawings/000007-3.png           the picture as it was drawn (number 7, labelled 3)
      digits/000007-3.png             the same prepared as MNIST's digits are: 28x28, what the network sees
      train-images-idx3-ubyte, ...    the digits as IDX files: every drawing but each third to teach with,
      t10k-images-idx3-ubyte, ...     and each third (numbers 3, 6, 9, ...) held out to measure on

so that `--data.dataset my_digits` tests on the held-out drawings, and `--data.extra_data my_digits` adds
the others to the training images. The PNG files are the collection; each save appends its digit to the IDX
files of its split, and they are rebuilt from the PNG files whenever they are not what the drawings make
(before the folder is read as a data set too), as after a save cut short (the server killed). A drawing is
kept at most `KEPT_SIDE` pixels a side (a photo is reduced): what a pad or a photo of a digit needs. Every
file is written to a temporary name and renamed, under a lock, so that such a save leaves the folder readable,
and two saves at once both land. A file in the folder that is no drawing of this layout is reported, and left
alone.
"""

import fcntl
import os
import re
import struct
from contextlib import ExitStack, contextmanager
from io import BytesIO
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from mnist_ann.files import replaced_whole
from mnist_ann.idx import DATASETS, MNIST_FILES, write_idx
from mnist_ann.images import load_image, prepare
from mnist_ann.network import IMAGE_SIDE

DRAWINGS, DIGITS = "drawings", "digits"
NAME = re.compile(r"(?P<number>\d{6})-(?P<label>\d)\.png")
HELD_OUT_EVERY = 3  # each third drawing is kept out of teaching, to measure on
LOCK = ".lock"
KEPT_SIDE = 1024  # the page's pad is 280x280; a photo of a digit is reduced to this
PNG_MODES = ("1", "L", "LA", "P", "RGB", "RGBA", "I;16")


def held_out(number: int) -> bool:
    return number % HELD_OUT_EVERY == 0


def is_collection(folder: str | os.PathLike) -> bool:
    """Whether `folder` is a collection of drawings (rather than another data set in MNIST's files)."""
    return (Path(folder) / DIGITS).is_dir()


def read_as_data(datamodule) -> None:
    """Before a command reads the data of `datamodule` (an `MNISTDataModule`): a collection given as its dataset
    or its extra data is brought up to date, and test results on a collection are logged as `test_<folder>`,
    beside the run's results on the MNIST test images, never in their place."""
    for folder in {datamodule.dataset, datamodule.extra_data} - {None, *DATASETS}:
        Collection(folder).brought_up_to_date()
    if datamodule.dataset not in DATASETS and is_collection(datamodule.dataset):
        datamodule.test_name = f"test_{Path(datamodule.dataset).name}"


class Collection:
    """The drawings in `folder`: saving one, reading them all back, and what in the folder is not one."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)

    def save(self, picture: bytes, label: int) -> dict:
        """Prepare the picture (an ImageError says why it cannot be), keep it with its label, add it to the IDX
        files (rebuilt whole when they are not what the drawings before it make)."""
        image = load_image(BytesIO(picture), "image")
        digit = prepare(image, "image")
        kept = image if image.mode in PNG_MODES else image.convert("RGB")
        kept.thumbnail((KEPT_SIDE, KEPT_SIDE))  # (only ever reduces)
        with self.locked():
            entries = self.entries()[0]
            number = max((number for number, _, _ in entries), default=0) + 1
            name = f"{number:06d}-{label}.png"
            with replaced_whole(self.folder / DRAWINGS / name) as file:
                kept.save(file, format="PNG")
            with replaced_whole(self.folder / DIGITS / name) as file:
                Image.fromarray(digit.numpy()).save(file, format="PNG")
            split = "t10k" if held_out(number) else "train"
            before = sum(held_out(n) == (split == "t10k") for n, _, _ in entries)
            if not self.appended(split, before, digit, label):
                self.rebuild()
        return {"number": number, "label": label, "held_out": held_out(number)}

    def appended(self, split: str, count: int, digit: Tensor, label: int) -> bool:
        """The digit added to its split's two IDX files, if they hold the `count` digits before it; else False."""
        images, labels = self.folder / f"{split}-images-idx3-ubyte", self.folder / f"{split}-labels-idx1-ubyte"
        try:
            old = {images: images.read_bytes(), labels: labels.read_bytes()}
        except OSError:
            return False
        if any(len(content) < 8 or struct.unpack(">I", content[4:8])[0] != count for content in old.values()):
            return False
        added = {images: digit.numpy().tobytes(), labels: bytes([label])}
        with ExitStack() as files:
            for path, content in old.items():
                header = content[:4] + struct.pack(">I", count + 1) + content[8 : 16 if path == images else 8]
                files.enter_context(replaced_whole(path)).write(header + content[len(header) :] + added[path])
        return True

    def entries(self) -> tuple[list[tuple[int, int, Path]], list[str]]:
        """(number, label, prepared file) of every drawing, in order; and one line per file that is no drawing."""
        found, foreign = [], []
        for folder in (self.folder / DIGITS, self.folder / DRAWINGS):
            for path in sorted(folder.iterdir()) if folder.is_dir() else []:
                if path.name.startswith("."):  # a save in progress, or cut short: its temporary file
                    continue
                if not (match := NAME.fullmatch(path.name)):
                    foreign.append(f"{path}: not a drawing of this collection (named NNNNNN-L.png)")
                elif folder.name == DIGITS:
                    found.append((int(match["number"]), int(match["label"]), path))
        return found, foreign

    def summary(self) -> dict:
        """What the collection holds, from its files' names alone: how many drawings, held out, of each digit,
        and each drawing (newest first: its number, label, whether it is held out, its prepared file's name)."""
        entries, foreign = self.entries()
        return {
            "folder": str(self.folder),
            "count": len(entries),
            "held_out": sum(held_out(number) for number, _, _ in entries),
            "by_label": [sum(label == digit for _, label, _ in entries) for digit in range(10)],
            "drawings": [
                {"number": number, "label": label, "held_out": held_out(number), "file": path.name}
                for number, label, path in reversed(entries)
            ],
            "problems": foreign,
        }

    def delete(self, number: int) -> bool:
        """Remove drawing `number` (both its pictures) and rebuild the IDX files; False when there is none."""
        with self.locked():
            found = [path for n, _, path in self.entries()[0] if n == number]
            for path in found:
                (self.folder / DRAWINGS / path.name).unlink(missing_ok=True)
                path.unlink()
            if found:
                self.rebuild()
        return bool(found)

    def digit_file(self, name: str) -> Path | None:
        """The prepared 28x28 picture named `name` (NNNNNN-L.png), if the collection holds it."""
        return self.folder / DIGITS / name if NAME.fullmatch(name) and (self.folder / DIGITS / name).is_file() else None

    def load(self) -> tuple[Tensor, Tensor, Tensor, list[str]]:
        """The prepared digits (N, 28, 28) uint8, their labels, which are held out, and the problems found."""
        digits, labels, held, (entries, problems) = [], [], [], self.entries()
        for number, label, path in entries:
            try:
                with Image.open(path) as picture:
                    pixels = torch.frombuffer(bytearray(picture.convert("L").tobytes()), dtype=torch.uint8)
                    if picture.size != (IMAGE_SIDE, IMAGE_SIDE):
                        raise ValueError(f"{picture.size[0]}x{picture.size[1]}, not {IMAGE_SIDE}x{IMAGE_SIDE}")
            except (OSError, ValueError) as error:
                problems.append(f"{path}: unreadable ({error}); left out")
                continue
            digits.append(pixels.view(IMAGE_SIDE, IMAGE_SIDE))
            labels.append(label)
            held.append(held_out(number))
        stacked = torch.stack(digits) if digits else torch.zeros(0, IMAGE_SIDE, IMAGE_SIDE, dtype=torch.uint8)
        return stacked, torch.tensor(labels, dtype=torch.long), torch.tensor(held, dtype=torch.bool), problems

    def rebuild(self) -> None:
        """The IDX files, from the prepared digits: held-out ones as the test split, the others as training."""
        # All written first, then renamed one after the other (as the blocks end): a reader finds them out of step
        # only if the process dies between two renames, and brought_up_to_date then mends them.
        with ExitStack() as files:
            for name, content in self.stale_idx_files().items():
                files.enter_context(replaced_whole(self.folder / name)).write(content)

    def brought_up_to_date(self) -> None:
        """The IDX files as the drawings are, before the folder is read as a data set. Locked only to write, so that
        a collection copied somewhere read-only is read as it is."""
        if (self.folder / DIGITS).is_dir() and self.stale_idx_files():
            with self.locked():
                self.rebuild()

    def stale_idx_files(self) -> dict[str, bytes]:
        """Each IDX file that does not hold what the prepared digits make of it, with what it should hold."""
        digits, labels, held, _ = self.load()
        splits = {"train": ~held, "t10k": held}
        stale = {}
        for name in MNIST_FILES:
            content = BytesIO()
            write_idx(content, (digits if "images" in name else labels)[splits[name.split("-")[0]]])
            path = self.folder / name
            if not path.is_file() or path.read_bytes() != content.getvalue():
                stale[name] = content.getvalue()
        return stale

    @contextmanager
    def locked(self):
        """One save at a time, across threads and processes (an advisory lock on a file in the folder)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
