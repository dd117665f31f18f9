"""What the network learned and why it decided: weight tiles, attributions, and predict's explanations."""

import lightning as L
import pytest
import torch
from PIL import Image

from mnist_ann.data import MNISTDataModule, normalize
from mnist_ann.explain import BLACK, attributions, class_attributions, weight_tiles
from mnist_ann.idx import load_split
from mnist_ann.model import MNISTClassifier
from mnist_ann.network import MLP
from tests.helpers.commands import CONFIG, run_main


def test_the_weight_picture_has_one_tile_per_first_layer_unit_coloured_by_sign():
    network = MLP([128, 64])
    first = network.layers[1]
    with torch.no_grad():
        first.weight[0] = 1.0  # a unit that every bright pixel excites
        first.weight[1] = -1.0  # one that every bright pixel inhibits
        first.weight[2] = 0.0
    picture = weight_tiles(network, columns=16)
    assert picture.shape == (3, 8 * 30 + 2, 16 * 30 + 2)  # 128 tiles of 28x28 in 8 rows of 16, 2-pixel gaps
    red, blue, white = (picture[:, 2 + 14, 2 + 30 * unit + 14] for unit in range(3))  # each tile's centre, RGB
    assert red[0] > red[2] + 0.2 and blue[2] > blue[0] + 0.2  # positive red, negative blue
    assert torch.allclose(white, white.mean().expand(3), atol=0.05) and white.min() > 0.9  # zero is white


def test_integrated_gradients_of_a_linear_network_are_exact():
    # Logits are W x + b; against a black image, pixel p's attribution to class c is (x_p - black) * W[c, p].
    network = MLP([], num_classes=3)
    torch.manual_seed(0)
    image = torch.full((1, 1, 28, 28), BLACK)
    image[0, 0, 10, 12] = 0.6  # one grey pixel on black
    attributed = attributions(network, image, torch.tensor([2]), steps=50)
    expected = torch.zeros(28, 28)
    expected[10, 12] = (0.6 - BLACK) * network.layers[1].weight[2, 10 * 28 + 12].item()
    torch.testing.assert_close(attributed[0], expected, atol=1e-6, rtol=1e-4)


def test_attributions_add_up_to_the_change_of_the_classes_output():
    network = MLP([128, 64])
    torch.manual_seed(1)
    images = torch.rand(4, 1, 28, 28) * 2 - 1
    classes = torch.tensor([0, 3, 7, 9])
    attributed = attributions(network, images, classes, steps=300)
    with torch.no_grad():
        change = network(images) - network(torch.full_like(images, BLACK))
    torch.testing.assert_close(attributed.sum((1, 2)), change[range(4), classes], atol=2e-3, rtol=0)


def test_a_binary_models_attributions_toward_class_0_are_those_toward_class_1_turned_around():
    model = MNISTClassifier(task="binary")
    images = torch.rand(2, 1, 28, 28) * 2 - 1
    toward_positive = class_attributions(model, images, torch.tensor([1, 1]))
    torch.testing.assert_close(class_attributions(model, images, torch.tensor([0, 0])), -toward_positive)


def test_predict_explain_writes_one_picture_per_image(trained_checkpoint, synthetic_data_dir, tmp_path, monkeypatch):
    images, _ = load_split(synthetic_data_dir, train=False)
    folder = tmp_path / "pictures"
    folder.mkdir()
    for index in range(3):
        Image.fromarray(images[index].numpy()).resize((84, 84)).save(folder / f"digit {index}.png")
    monkeypatch.chdir(tmp_path)
    explain = ["--trainer.callbacks.explain", str(tmp_path / "explained")]
    run_main(
        monkeypatch,
        "predict",
        "--config",
        CONFIG,
        "--ckpt_path",
        str(trained_checkpoint),
        "--data.predict_files",
        str(folder),
        *explain,
    )
    written = sorted(path.name for path in (tmp_path / "explained").iterdir())
    assert written == ["00000_digit-0.png", "00001_digit-1.png", "00002_digit-2.png"]
    assert all(Image.open(tmp_path / "explained" / name).size == (840, 290) for name in written)


@pytest.mark.parametrize("task", ["binary", "regression"])
def test_predict_explain_works_for_every_output_layer(synthetic_data_dir, tmp_path, monkeypatch, task):
    L.seed_everything(0)
    trainer = L.Trainer(max_epochs=1, logger=False, enable_progress_bar=False, enable_checkpointing=False)
    trainer.fit(MNISTClassifier(task=task), MNISTDataModule(synthetic_data_dir, val_size=200))
    trainer.save_checkpoint(checkpoint := tmp_path / f"{task}.ckpt")
    picture = tmp_path / "digit.png"
    Image.fromarray(load_split(synthetic_data_dir, train=False)[0][0].numpy()).save(picture)
    monkeypatch.chdir(tmp_path)
    run_main(
        monkeypatch,
        "predict",
        "--config",
        CONFIG,
        "--ckpt_path",
        str(checkpoint),
        "--data.predict_files",
        str(picture),
        "--trainer.callbacks.explain",
        "explained",
    )
    assert [path.name for path in (tmp_path / "explained").iterdir()] == ["00000_digit.png"]


def test_the_attribution_of_an_image_needs_no_gradient_mode_of_its_caller():
    network = MLP([16])
    with torch.inference_mode():  # as in Lightning's predict loop and the service
        images = normalize(torch.zeros(2, 28, 28, dtype=torch.uint8))
        assert attributions(network, images, torch.tensor([1, 2])).shape == (2, 28, 28)
