"""Your own handwriting: the collection folder (saves, kills, strangers in it), and training on it.

The page that fills it and the teaching run are tested in tests/test_handwriting.py.
"""

import os
import signal
import subprocess
import sys
from io import BytesIO

import lightning as L
import pytest
import torch
from PIL import Image, ImageDraw

from mnist_ann.collect import Collection, read_as_data
from mnist_ann.data import MNISTDataModule
from mnist_ann.errors import CheckpointError
from mnist_ann.idx import load_split, write_idx
from mnist_ann.model import MNISTClassifier
from tests.helpers.commands import REPO
from tests.helpers.wait import wait_for


def drawing(label: int, size: int = 200) -> bytes:
    """A picture of a digit-like stroke, different for each label, as the page sends it (a PNG)."""
    picture = Image.new("L", (size, size), 255)
    pen = ImageDraw.Draw(picture)
    pen.line([(40, 40), (40 + 12 * label, 160), (160, 40 + 10 * label)], fill=0, width=16)
    out = BytesIO()
    picture.save(out, format="PNG")
    return out.getvalue()


def test_saved_drawings_read_back_as_an_idx_data_set_with_every_third_held_out(tmp_path):
    collection = Collection(tmp_path / "mine")
    saved = [collection.save(drawing(label), label) for label in [3, 1, 4, 1, 5, 9, 2]]
    assert [entry["number"] for entry in saved] == [1, 2, 3, 4, 5, 6, 7]
    assert [entry["held_out"] for entry in saved] == [False, False, True, False, False, True, False]
    digits, labels, held, problems = collection.load()
    assert digits.shape == (7, 28, 28) and labels.tolist() == [3, 1, 4, 1, 5, 9, 2] and problems == []
    taught, taught_labels = load_split(tmp_path, train=True, dataset=str(tmp_path / "mine"))
    kept, kept_labels = load_split(tmp_path, train=False, dataset=str(tmp_path / "mine"))
    assert taught_labels.tolist() == [3, 1, 1, 5, 2] and kept_labels.tolist() == [4, 9]
    assert torch.equal(kept, digits[held]) and torch.equal(taught, digits[~held])
    assert sorted(path.name for path in (tmp_path / "mine" / "drawings").iterdir())[0] == "000001-3.png"


def test_a_stranger_or_a_broken_file_in_the_folder_is_reported_and_the_rest_read(tmp_path):
    collection = Collection(tmp_path / "mine")
    collection.save(drawing(7), 7)
    (tmp_path / "mine" / "digits" / "notes.txt").write_text("mine")
    (tmp_path / "mine" / "digits" / "000050-3.png").write_bytes(b"not a picture")
    _digits, labels, _, problems = collection.load()
    assert labels.tolist() == [7]
    assert any("notes.txt: not a drawing of this collection" in problem for problem in problems)
    assert any("000050-3.png: unreadable" in problem for problem in problems)
    assert len(problems) == 2  # each once
    assert collection.save(drawing(2), 2)["number"] == 51  # and saving goes on, after the highest number
    assert collection.load()[1].tolist() == [7, 2]


def save_many(folder: str, label: int, count: int) -> None:
    collection = Collection(folder)
    for _ in range(count):
        collection.save(drawing(label), label)


SAVING = """
import sys
from mnist_ann.start_up import skip_start_up_collections
skip_start_up_collections()  # as the service's processes start
from tests.test_collect import save_many
save_many(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
"""


def saver(folder, label: int, count: int) -> subprocess.Popen:
    """A process of its own saving `count` drawings of `label` into `folder`."""
    command = [sys.executable, "-c", SAVING, str(folder), str(label), str(count)]
    return subprocess.Popen(command, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_two_saves_at_once_both_land(tmp_path):
    folder = str(tmp_path / "mine")
    savers = [saver(folder, label, 8) for label in (1, 2)]
    for process in savers:
        assert process.wait(timeout=120) == 0
    _digits, labels, held, problems = Collection(folder).load()
    assert sorted(labels.tolist()) == [1] * 8 + [2] * 8 and problems == []
    assert len(load_split(tmp_path, train=False, dataset=folder)[1]) == int(held.sum()) == 5  # 3, 6, ..., 15


@pytest.mark.slow
def test_a_save_killed_at_any_moment_leaves_the_folder_readable(tmp_path):
    folder = tmp_path / "mine"
    for saves in (1, 4, 9):  # killed while saving the next one, at whatever point of it that is
        saving = saver(folder, 4, 10_000)
        saved_before = len(Collection(folder).entries()[0])
        wait_for(
            lambda saved_before=saved_before, saves=saves: len(Collection(folder).entries()[0]) >= saved_before + saves,
            every=0.005,
        )
        saving.send_signal(signal.SIGKILL)
        saving.wait()
        _, labels, held, problems = Collection(folder).load()
        assert problems == [] and len(labels) > 0
        assert read_as_data_set(folder) == (int((~held).sum()), int(held.sum()))  # every drawing that landed


def test_idx_files_left_behind_by_a_save_cut_short_are_mended_before_the_folder_is_read(tmp_path):
    collection = Collection(tmp_path / "mine")
    for label in range(4):
        collection.save(drawing(label), label)  # numbers 1-4: 3 to teach with, number 3 held out
    (collection.folder / "train-images-idx3-ubyte").unlink()  # killed before the first rebuild ended
    with (collection.folder / "t10k-labels-idx1-ubyte").open("wb") as file:
        write_idx(file, torch.zeros(0))  # killed between two renames: out of step with its images
    assert read_as_data_set(collection.folder) == (3, 1)


def read_as_data_set(folder) -> tuple[int, int]:
    """How many drawings `--data.dataset <folder>` reads: (to teach with, held out)."""
    data = MNISTDataModule(folder.parent, dataset=str(folder))
    read_as_data(data)  # as the command line does before it reads the data
    data.prepare_data()
    data.setup("test")
    return len(data.splits["train"][1]), len(data.splits["test"][1])


def test_the_drawings_join_the_training_images_repeated(synthetic_data_dir, tmp_path):
    collection = Collection(tmp_path / "mine")
    for label in range(6):
        collection.save(drawing(label), label)  # 4 to teach with, 2 held out
    plain = MNISTDataModule(synthetic_data_dir, val_size=200)
    plain.setup("fit")
    joined = MNISTDataModule(synthetic_data_dir, val_size=200, extra_data=str(tmp_path / "mine"), extra_repeats=5)
    joined.setup("fit")
    _images, labels = joined.splits["train"]
    assert len(labels) == len(plain.splits["train"][1]) + 5 * 4
    assert labels[-20:].tolist() == [0, 1, 3, 4] * 5
    assert torch.equal(joined.splits["val"][0], plain.splits["val"][0])  # validation and test stay MNIST's
    assert torch.equal(joined.splits["test"][1], plain.splits["test"][1])


def test_weights_from_starts_fit_from_a_checkpoints_network_and_nothing_else(trained_checkpoint):
    model = MNISTClassifier(weights_from=str(trained_checkpoint))
    model.setup("fit")
    saved = torch.load(trained_checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    for name, tensor in model.net.state_dict().items():
        assert torch.equal(tensor, saved[f"net.{name}"]), name
    unfit = MNISTClassifier(hidden_sizes=[32], weights_from=str(trained_checkpoint))
    with pytest.raises(CheckpointError, match="does not fit this model"):
        unfit.setup("fit")
    L.seed_everything(0)
    fresh = MNISTClassifier().net.state_dict()
    assert not all(torch.equal(tensor, saved[f"net.{name}"]) for name, tensor in fresh.items())  # without it


def test_a_small_data_set_is_tested_without_a_validation_split(tmp_path):
    collection = Collection(tmp_path / "mine")
    for label in range(6):
        collection.save(drawing(label), label)
    data = MNISTDataModule(tmp_path, dataset=str(tmp_path / "mine"))  # val_size 5000 of 4 images
    data.setup("test")
    assert len(data.splits["test"][1]) == 2
    with pytest.raises(Exception, match="leaves no training images"):
        MNISTDataModule(tmp_path, dataset=str(tmp_path / "mine")).setup("fit")
