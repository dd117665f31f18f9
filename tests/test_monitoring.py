"""TensorBoard output of real runs, read back with TensorBoard's own reader and its own server."""

import json
import re
import shutil
import sys
import urllib.parse
import urllib.request

import lightning as L
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mnist_ann.data import MNISTDataModule
from mnist_ann.model import MNISTClassifier
from mnist_ann.monitoring import TensorBoardMonitor
from tests.helpers.commands import CONFIG, free_port, run_main, start_cli
from tests.helpers.service import stop_server, wait_for_answer
from tests.helpers.tensorboard import events, session_hparams

EPOCHS, STEPS_PER_EPOCH, LOG_EVERY = 2, 16, 5  # 1,000 synthetic training images in batches of 64


@pytest.fixture(scope="module")
def runs(synthetic_data_dir, tmp_path_factory):
    """With the default config: `fit` for two epochs (version_0), `test --ckpt_path best` of it (into
    version_0), then `test` of an untrained model (version_1, its own run)."""
    root = tmp_path_factory.mktemp("tensorboard")
    common = ["--config", CONFIG, "--data.data_dir", str(synthetic_data_dir), "--data.val_size", "200"]
    common += ["--trainer.logger.init_args.save_dir", str(root)]
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(root)
        run_main(monkeypatch, "fit", *common, "--trainer.max_epochs", str(EPOCHS), "--trainer.log_every_n_steps", "5")
        run_main(monkeypatch, "test", *common, "--ckpt_path", "best")
        run_main(monkeypatch, "test", *common)  # untrained: plenty of misclassified digits to show
    return root / "lightning_logs"


def test_testing_a_checkpoint_again_replaces_its_embedding_without_a_warning(
    runs, synthetic_data_dir, tmp_path, monkeypatch, capfd
):
    shutil.copytree(runs / "version_0", tmp_path / "lightning_logs" / "version_0")
    monkeypatch.chdir(tmp_path)
    run_main(monkeypatch, "test", "--config", CONFIG, "--data.data_dir", str(synthetic_data_dir), "--ckpt_path", "best")
    assert "Embedding dir exists" not in capfd.readouterr().out
    projector = (tmp_path / "lightning_logs" / "version_0" / "projector_config.pbtxt").read_text()
    paths = re.findall(r'tensor_path: "([^"]+)"', projector)
    assert paths and len(paths) == len(set(paths))  # the same step's embedding replaced, not listed twice


def scalar_counts(accumulator: EventAccumulator) -> dict[str, int]:
    return {tag: len(accumulator.Scalars(tag)) for tag in accumulator.Tags()["scalars"]}


def test_fit_logs_every_scalar_with_the_right_number_of_points(runs):
    counts = scalar_counts(events(runs / "version_0"))
    per_epoch = ("train/acc", "val/loss", "val/acc", "val/acc_best")
    layers = ("hidden_1", "hidden_2", "output")
    per_window = (
        "train/loss",
        "train/lr",
        *(f"gradients/{kind}/{layer}" for kind in ("norm", "update_ratio") for layer in layers),
    )
    expected = {**dict.fromkeys(per_window, EPOCHS * STEPS_PER_EPOCH // LOG_EVERY), **dict.fromkeys(per_epoch, EPOCHS)}
    assert {tag: counts.get(tag) for tag in expected} == expected


def test_the_gradient_scalars_are_each_layers_norm_and_step_at_the_logged_steps(runs):
    accumulator = events(runs / "version_0")
    for tag in ("gradients/norm/hidden_1", "gradients/update_ratio/output"):
        points = accumulator.Scalars(tag)
        assert [point.step for point in points] == [point.step for point in accumulator.Scalars("train/loss")]
        assert all(0 < point.value < 100 for point in points)


def test_fit_logs_sample_inputs_once_and_a_confusion_matrix_per_epoch(runs):
    accumulator = events(runs / "version_0")
    assert len(accumulator.Images("train/samples")) == 1
    assert len(accumulator.Images("val/confusion_matrix")) == EPOCHS
    assert accumulator.Tags()["histograms"] == []  # off by default


def test_a_checkpoints_test_lands_in_its_training_run_after_the_training(runs):
    assert sorted(path.name for path in runs.iterdir()) == ["version_0", "version_1"]
    accumulator = events(runs / "version_0")
    best_step = torch.load(runs / "version_0" / "checkpoints" / "best.ckpt", weights_only=True)["global_step"]
    assert [point.step for point in accumulator.Scalars("test/acc")] == [best_step]  # not at 0, "before training"
    assert [image.step for image in accumulator.Images("test/confusion_matrix")] == [best_step]
    assert "epoch" not in accumulator.Tags()["scalars"]  # Lightning's: a card that restates the step axis
    assert {"config.yaml", "test-config.yaml"} <= {path.name for path in (runs / "version_0").iterdir()}


def test_test_logs_its_accuracy_per_class_as_one_picture_beside_its_images(runs):
    accumulator = events(runs / "version_1")
    counts = scalar_counts(accumulator)
    assert {tag: counts.get(tag) for tag in ("test/loss", "test/acc")} == {"test/loss": 1, "test/acc": 1}
    assert not [tag for tag in counts if tag.startswith("test/acc_digit")]
    for tag in ("test/confusion_matrix", "test/acc_per_class", "test/misclassified"):
        assert len(accumulator.Images(tag)) == 1
        assert accumulator.Images(tag)[0].encoded_image_string.startswith(b"\x89PNG")


def test_each_run_has_one_hparams_row_of_what_distinguishes_it(runs):
    trained, untrained = session_hparams(runs / "version_0"), session_hparams(runs / "version_1")
    assert trained == {
        "task": "multiclass",
        "hidden_sizes": "[128, 64]",
        "dataset": "mnist",
        "batch_size": 64,
        "max_epochs": EPOCHS,
        "seed": 42,
        "optimizer": "SGD",
        "optimizer.lr": 0.01,
        "optimizer.momentum": 0.9,
        "optimizer.dampening": 0,
        "optimizer.weight_decay": 0,
        "optimizer.nesterov": False,
    }
    assert "optimizer" not in untrained and untrained["hidden_sizes"] == "[128, 64]"  # a test trains nothing


def test_histograms_switch_logs_weights_and_gradients_every_epoch(synthetic_data_dir, tmp_path):
    trainer = L.Trainer(
        max_epochs=2, default_root_dir=tmp_path, enable_progress_bar=False, callbacks=[TensorBoardMonitor(True)]
    )
    trainer.fit(MNISTClassifier(), MNISTDataModule(synthetic_data_dir, val_size=200))
    histograms = events(trainer.logger.log_dir).Tags()["histograms"]
    assert {"weights/net.layers.1.weight", "gradients/net.layers.5.bias"} <= set(histograms)
    assert len(events(trainer.logger.log_dir).Histograms("weights/net.layers.1.weight")) == 2


def test_fit_shows_the_first_layers_weights_from_noise_to_every_epochs_end(runs):
    steps = [image.step for image in events(runs / "version_0").Images("weights/hidden_1")]
    assert steps == [0, *(STEPS_PER_EPOCH * (epoch + 1) for epoch in range(EPOCHS))]


def test_test_shows_what_pushed_misclassified_digits_toward_their_classes(runs):
    [picture] = events(runs / "version_1").Images("test/attributions")
    assert picture.encoded_image_string.startswith(b"\x89PNG") and picture.width == 380  # a card's width


def test_each_picture_can_be_switched_off(synthetic_data_dir, tmp_path):
    monitor = TensorBoardMonitor(weights=False, projector=False, attributions=False)
    trainer = L.Trainer(max_epochs=1, default_root_dir=tmp_path, enable_progress_bar=False, callbacks=[monitor])
    model, data = MNISTClassifier(), MNISTDataModule(synthetic_data_dir, val_size=200)
    trainer.fit(model, data)
    trainer.test(MNISTClassifier(), data, verbose=False)  # untrained: misclassified digits to explain
    images = {tag for run in (tmp_path / "lightning_logs").iterdir() for tag in events(run).Tags()["images"]}
    assert "test/misclassified" in images and not images & {"weights/hidden_1", "test/attributions"}
    assert not list(tmp_path.rglob("projector_config.pbtxt"))


# The real TensorBoard server over the same runs.


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


@pytest.fixture(scope="module")
def tensorboard_server(runs):
    port = free_port()
    # As the README starts it, on a free local port.
    options = ["--logdir", str(runs), "--samples_per_plugin", "images=100", "--host", "127.0.0.1", "--port", str(port)]
    server = start_cli(*options, cwd=runs, command=(sys.executable, "-m", "tensorboard.main"))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_answer(server, f"{base}/data/runs", accept=json.loads)  # a list of runs once the logdir is read
        yield base
    finally:
        stop_server(server)


def test_tensorboard_server_serves_the_runs_scalars_and_images(tensorboard_server):
    base = tensorboard_server
    assert {"version_0", "version_1"} <= set(json.loads(get(f"{base}/data/runs")))

    query = urllib.parse.urlencode({"run": "version_0", "tag": "val/acc"})
    points = json.loads(get(f"{base}/data/plugin/scalars/scalars?{query}"))
    assert len(points) == EPOCHS and all(0 <= value <= 1 for _, _, value in points)

    query = urllib.parse.urlencode({"run": "version_1", "tag": "test/confusion_matrix"})
    [image] = json.loads(get(f"{base}/data/plugin/images/images?{query}"))
    assert get(f"{base}/data/plugin/images/individualImage?{image['query']}").startswith(b"\x89PNG")


def test_the_projector_serves_the_hidden_layers_view_of_the_test_images(tensorboard_server):
    # version_0: one embedding at the end of fit (step 32), one from the test of its best checkpoint (its step).
    info = json.loads(get(f"{tensorboard_server}/data/plugin/projector/info?run=version_0"))
    embeddings = {entry["tensorName"]: entry for entry in info["embeddings"]}
    steps = {f"{STEPS_PER_EPOCH * (epoch + 1):05d}" for epoch in range(EPOCHS)}
    assert {name.split(":")[0] for name in embeddings} == {"last_hidden_layer"}
    assert f"last_hidden_layer:{EPOCHS * STEPS_PER_EPOCH:05d}" in embeddings and {n[-5:] for n in embeddings} <= steps
    for name, entry in embeddings.items():
        assert entry["tensorShape"] == [300, 64] and entry["sprite"]["singleImageDim"] == [28, 28]
        query = urllib.parse.urlencode({"run": "version_0", "name": name})
        assert len(get(f"{tensorboard_server}/data/plugin/projector/tensor?{query}")) == 300 * 64 * 4
        labels = get(f"{tensorboard_server}/data/plugin/projector/metadata?{query}").decode().split()
        assert len(labels) == 300 and set(labels) <= set("0123456789")
        assert get(f"{tensorboard_server}/data/plugin/projector/sprite_image?{query}").startswith(b"\x89PNG")
