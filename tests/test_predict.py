"""`predict` on users' image files and on the test images: rows, files, exit status."""

import csv
import json
import random
import shutil

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from mnist_ann.data import normalize
from mnist_ann.idx import load_split
from mnist_ann.model import MNISTClassifier
from tests.helpers.commands import CONFIG, main_error, run_main


def predict_rows(monkeypatch, workdir, output, *args: str) -> list[dict]:
    """`mnist-ann predict` through the real entry point, in this process; the rows it wrote to `output`."""
    monkeypatch.chdir(workdir)
    run_main(monkeypatch, "predict", "--config", CONFIG, *args, "--trainer.callbacks.output", str(output))
    if output.suffix == ".csv":
        return list(csv.DictReader(output.open()))
    return [json.loads(line) for line in output.read_text().splitlines()]


def user_picture(digit: np.ndarray, rng: random.Random) -> Image.Image:
    """An MNIST digit as a user might draw it: dark ink on light paper, 4-8x larger, off-centre."""
    side = round(28 * rng.uniform(4, 8))
    ink = Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC)  # bright where the ink is
    canvas = rng.randint(256, 400)
    paper = Image.new("L", (canvas, canvas), rng.randint(200, 255))
    left, top = rng.randint(0, canvas - side), rng.randint(0, canvas - side)
    paper.paste(0, (left, top, left + side, top + side), mask=ink)  # black ink, as opaque as the digit is bright
    return paper


def test_predict_writes_a_row_per_image_and_names_each_bad_file(
    trained_checkpoint, synthetic_data_dir, tmp_path, monkeypatch, capfd, caplog
):
    images, labels = load_split(synthetic_data_dir, train=False)
    folder = tmp_path / "pictures"
    folder.mkdir()
    rng = random.Random(0)
    for index in range(6):
        user_picture(images[index].numpy(), rng).save(folder / f"{index}_label{labels[index]}.png")
    (folder / "blank.png").write_bytes(b"")  # an empty file under an image name
    Image.new("L", (64, 64), 255).save(folder / "white.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    output = tmp_path / "predictions.csv"
    monkeypatch.chdir(tmp_path)
    message = main_error(  # not every file could be predicted
        monkeypatch,
        "predict",
        "--config",
        CONFIG,
        "--ckpt_path",
        str(trained_checkpoint),
        "--data.predict_files",
        f"[{folder}]",
        "--trainer.callbacks.output",
        str(output),
    )
    printed, logged = capfd.readouterr(), "\n".join(caplog.messages)
    for bad, why in (
        ("blank.png", "empty file (0 bytes)"),
        ("white.png", "no digit found"),
        ("broken.jpg", "corrupt or truncated image"),
    ):
        assert f"skipped {folder / bad}: {why}" in logged
    assert "3 of the files given could not be predicted" in message
    rows = list(csv.DictReader(output.open()))
    assert len(rows) == 6 and all(row["file"] in printed.out for row in rows)
    for row in rows:
        probabilities = [float(row[f"p{digit}"]) for digit in range(10)]
        assert abs(sum(probabilities) - 1) < 1e-4 and float(row["probability"]) == max(probabilities)


def test_predict_on_the_mnist_test_images_as_json_lines(trained_checkpoint, synthetic_data_dir, tmp_path, monkeypatch):
    data = ["--data.data_dir", str(synthetic_data_dir), "--data.val_size", "200"]
    rows = predict_rows(
        monkeypatch, tmp_path, tmp_path / "predictions.jsonl", "--ckpt_path", str(trained_checkpoint), *data
    )
    assert len(rows) == 300 and rows[0]["file"] == "test image 0"
    labels = load_split(synthetic_data_dir, train=False)[1].tolist()
    accuracy = np.mean([row["class"] == label for row, label in zip(rows, labels, strict=True)])
    assert accuracy > 0.9


@pytest.mark.slow
def test_user_pictures_of_real_mnist_digits_lose_at_most_2_points(
    recipe_checkpoint, real_data_dir, tmp_path, monkeypatch
):
    checkpoint = shutil.copy(recipe_checkpoint, tmp_path)  # predict writes beside its checkpoint
    model = MNISTClassifier.load_from_checkpoint(checkpoint, weights_only=True)

    images, labels = load_split(real_data_dir, train=False)
    chosen = torch.randperm(len(labels), generator=torch.Generator().manual_seed(1))[:1000]
    model.eval()
    with torch.no_grad():
        original = (model(normalize(images[chosen])).argmax(1) == labels[chosen]).float().mean().item()

    folder, rng = tmp_path / "pictures", random.Random(2)
    folder.mkdir()
    for index in chosen.tolist():
        suffix = ".jpg" if index % 3 == 0 else ".png"  # a third as JPEG, with its artefacts
        user_picture(images[index].numpy(), rng).save(folder / f"{index:05d}_label{labels[index]}{suffix}")
    files = ["--data.predict_files", f"[{folder}]", "--trainer.callbacks.console", "false"]
    rows = predict_rows(monkeypatch, tmp_path, tmp_path / "predictions.csv", "--ckpt_path", str(checkpoint), *files)
    assert len(rows) == 1000
    pictures = np.mean([int(row["class"]) == int(row["file"].split("label")[1][0]) for row in rows])
    print(f"accuracy on 1000 MNIST test digits: originals {original:.2%}, as user pictures {pictures:.2%}")
    assert pictures >= original - 0.02


@pytest.mark.parametrize("contents", [[], ["drawing.svg"]])
def test_a_folder_without_readable_images_is_an_error(trained_checkpoint, tmp_path, monkeypatch, contents):
    folder = tmp_path / "pictures"
    folder.mkdir()
    for name in contents:
        (folder / name).write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    monkeypatch.chdir(tmp_path)
    args = ["predict", "--ckpt_path", str(trained_checkpoint), "--data.predict_files", str(folder)]
    assert f"error: no image files in {folder}" in main_error(monkeypatch, *args)


def test_an_animated_image_is_predicted_from_its_first_frame_saying_so(
    trained_checkpoint, tmp_path, monkeypatch, caplog
):
    frames = [Image.new("L", (60, 60), 255) for _ in range(3)]
    for shift, frame in enumerate(frames):  # three different frames (Pillow merges equal ones)
        ImageDraw.Draw(frame).line([(20 + 10 * shift, 10), (30, 50)], fill=0, width=6)
    frames[0].save(gif := tmp_path / "moving.gif", save_all=True, append_images=frames[1:])
    rows = predict_rows(
        monkeypatch,
        tmp_path,
        tmp_path / "rows.jsonl",
        "--ckpt_path",
        str(trained_checkpoint),
        "--data.predict_files",
        str(gif),
    )
    assert [row["file"] for row in rows] == [str(gif)]
    assert f"{gif}: animated (3 frames); only its first frame is used" in caplog.text
