"""TensorBoard output of real runs, read back with TensorBoard's own reader and its own server."""

import json
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import lightning as L
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mnist_ann.cli import MNISTCLI
from mnist_ann.data import MNISTDataModule
from mnist_ann.model import MNISTClassifier
from mnist_ann.monitoring import TensorBoardMonitor
from tests.conftest import REPO, free_port

CONFIG = str(REPO / "configs" / "default.yaml")
EPOCHS, STEPS_PER_EPOCH, LOG_EVERY = 2, 16, 5  # 1,000 synthetic training images in batches of 64


@pytest.fixture(scope="module")
def runs(synthetic_data_dir, tmp_path_factory):
    """`fit` for two epochs (version_0), then `test` of an untrained model (version_1), with the default config."""
    root = tmp_path_factory.mktemp("tensorboard")
    common = ["--config", CONFIG, "--data.data_dir", str(synthetic_data_dir), "--data.val_size", "200"]
    common += ["--trainer.logger.init_args.save_dir", str(root)]
    MNISTCLI(args=["fit", *common, "--trainer.max_epochs", str(EPOCHS), "--trainer.log_every_n_steps", str(LOG_EVERY)])
    MNISTCLI(args=["test", *common])  # untrained: plenty of misclassified digits to show
    return root / "lightning_logs"


def events(run_dir) -> EventAccumulator:
    return EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0, "histograms": 0}).Reload()


def scalar_counts(accumulator: EventAccumulator) -> dict[str, int]:
    return {tag: len(accumulator.Scalars(tag)) for tag in accumulator.Tags()["scalars"]}


def test_fit_logs_every_scalar_with_the_right_number_of_points(runs):
    counts = scalar_counts(events(runs / "version_0"))
    per_epoch = ("train/acc", "train/lr", "val/loss", "val/acc", "val/acc_best")
    expected = {"train/loss": EPOCHS * STEPS_PER_EPOCH // LOG_EVERY, **dict.fromkeys(per_epoch, EPOCHS)}
    assert {tag: counts.get(tag) for tag in expected} == expected
    assert counts["hp/val_acc_best"] == counts["hp/val_loss"] == 1


def test_fit_logs_sample_inputs_once_and_a_confusion_matrix_per_epoch(runs):
    accumulator = events(runs / "version_0")
    assert len(accumulator.Images("train/samples")) == 1
    assert len(accumulator.Images("val/confusion_matrix")) == EPOCHS
    assert accumulator.Tags()["histograms"] == []  # off by default


def test_test_logs_overall_and_per_digit_accuracy_and_its_images(runs):
    accumulator = events(runs / "version_1")
    counts = scalar_counts(accumulator)
    tags = ["test/loss", "test/acc", *(f"test/acc_digit_{digit}" for digit in range(10)), "hp/test_acc"]
    assert {tag: counts.get(tag) for tag in tags} == dict.fromkeys(tags, 1)
    for tag in ("test/confusion_matrix", "test/misclassified"):
        assert len(accumulator.Images(tag)) == 1
        assert accumulator.Images(tag)[0].encoded_image_string.startswith(b"\x89PNG")


def test_hyperparameters_and_final_metrics_reach_the_hparams_tab(runs):
    for version, metric in (("version_0", "hp/val_acc_best"), ("version_1", "hp/test_acc")):
        content = events(runs / version).PluginTagToContent("hparams")
        assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= content.keys()
        experiment = content["_hparams_/experiment"]
        for name in (b"hidden_sizes", b"batch_size", b"val_size", metric.encode()):
            assert name in experiment


def test_histograms_switch_logs_weights_and_gradients_every_epoch(synthetic_data_dir, tmp_path):
    trainer = L.Trainer(
        max_epochs=2, default_root_dir=tmp_path, enable_progress_bar=False, callbacks=[TensorBoardMonitor(True)]
    )
    trainer.fit(MNISTClassifier(), MNISTDataModule(synthetic_data_dir, val_size=200))
    histograms = events(trainer.logger.log_dir).Tags()["histograms"]
    assert {"weights/net.layers.1.weight", "gradients/net.layers.5.bias"} <= set(histograms)
    assert len(events(trainer.logger.log_dir).Histograms("weights/net.layers.1.weight")) == 2


# The real TensorBoard server over the same runs.


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


@pytest.fixture
def tensorboard_server(runs):
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(runs), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if json.loads(get(f"{base}/data/runs")):  # non-empty once the logdir has been read
                    break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"tensorboard did not come up on {base}: {server.stderr.read().decode()[-2000:]}")
            time.sleep(0.5)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_tensorboard_server_serves_the_runs_scalars_and_images(tensorboard_server):
    base = tensorboard_server
    assert {"version_0", "version_1"} <= set(json.loads(get(f"{base}/data/runs")))

    query = urllib.parse.urlencode({"run": "version_0", "tag": "val/acc"})
    points = json.loads(get(f"{base}/data/plugin/scalars/scalars?{query}"))
    assert len(points) == EPOCHS and all(0 <= value <= 1 for _, _, value in points)

    query = urllib.parse.urlencode({"run": "version_1", "tag": "test/confusion_matrix"})
    [image] = json.loads(get(f"{base}/data/plugin/images/images?{query}"))
    assert get(f"{base}/data/plugin/images/individualImage?{image['query']}").startswith(b"\x89PNG")
