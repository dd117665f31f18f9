"""Your own handwriting: labelled drawings kept as a data set the project reads like MNIST.

A collection is one folder, yours to copy or delete:

    my_digits/
      drawings/000007-3.png           the picture as it was drawn (number 7, labelled 3)
      digits/000007-3.png             the same prepared as MNIST's digits are: 28x28, what the network sees
      train-images-idx3-ubyte, ...    the digits as IDX files: every drawing but each third to teach with,
      t10k-images-idx3-ubyte, ...     and each third (numbers 3, 6, 9, ...) held out to measure on

so that `--data.dataset my_digits` tests on the held-out drawings, and `--data.extra_data my_digits` adds
the others to the training images. The PNG files are the collection; the IDX files are rebuilt from them
after every save, and before the folder is read as a data set when a save cut short (the server killed)
left them behind. Every file is written to a temporary name and renamed, under a lock, so that such a save
leaves the folder readable, and two saves at once both land. A file in the folder that is no drawing of
this layout is reported, and left alone.
"""

import fcntl
import os
import re
from contextlib import ExitStack, contextmanager
from io import BytesIO
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from mnist_ann.files import replaced_whole
from mnist_ann.idx import MNIST_FILES, write_idx
from mnist_ann.images import load_image, prepare

DRAWINGS, DIGITS = "drawings", "digits"
NAME = re.compile(r"(?P<number>\d{6})-(?P<label>\d)\.png")
HELD_OUT_EVERY = 3  # each third drawing is kept out of teaching, to measure on
LOCK = ".lock"


def held_out(number: int) -> bool:
    return number % HELD_OUT_EVERY == 0


class Collection:
    """The drawings in `folder`: saving one, reading them all back, and what in the folder is not one."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)

    def save(self, picture: bytes, label: int) -> dict:
        """Prepare the picture (an ImageError says why it cannot be), keep it with its label, rebuild the IDX files."""
        digit = prepare(load_image(BytesIO(picture), "image"), "image")
        with self.locked():
            numbers = [number for number, _, _ in self.entries()[0]]
            number = max(numbers, default=0) + 1
            name = f"{number:06d}-{label}.png"
            with replaced_whole(self.folder / DRAWINGS / name) as file:
                file.write(picture)
            with replaced_whole(self.folder / DIGITS / name) as file:
                Image.fromarray(digit.numpy()).save(file, format="PNG")
            self.rebuild()
        return {"number": number, "label": label, "held_out": held_out(number)}

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

    def load(self) -> tuple[Tensor, Tensor, Tensor, list[str]]:
        """The prepared digits (N, 28, 28) uint8, their labels, which are held out, and the problems found."""
        digits, labels, held, (entries, problems) = [], [], [], self.entries()
        for number, label, path in entries:
            try:
                with Image.open(path) as picture:
                    pixels = torch.frombuffer(bytearray(picture.convert("L").tobytes()), dtype=torch.uint8)
                    if picture.size != (28, 28):
                        raise ValueError(f"{picture.size[0]}x{picture.size[1]}, not 28x28")
            except (OSError, ValueError) as error:
                problems.append(f"{path}: unreadable ({error}); left out")
                continue
            digits.append(pixels.view(28, 28))
            labels.append(label)
            held.append(held_out(number))
        stacked = torch.stack(digits) if digits else torch.zeros(0, 28, 28, dtype=torch.uint8)
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
