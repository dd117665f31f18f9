"""The three output layers (multiclass, binary, regression) and the other MNIST-format datasets."""

from pathlib import Path

import lightning as L
import pytest
import torch

from mnist_ann.data import MNISTDataModule
from mnist_ann.model import MNISTClassifier
from mnist_ann.tasks import CENTRE, SPREAD, make_task
from tests.helpers.commands import missing

LABELS = torch.tensor([0, 1, 2, 7, 8, 9])
FASHION = Path("/usr/share/datasets/fashion-mnist")


def test_output_layer_sizes():
    images = torch.randn(6, 1, 28, 28)
    assert MNISTClassifier()(images).shape == (6, 10)
    assert MNISTClassifier(task="binary")(images).shape == (6, 1)
    assert MNISTClassifier(task="regression", hidden_sizes=[])(images).shape == (6, 1)


@pytest.mark.parametrize(
    ("positive", "expected"), [("0", [1, 0, 0, 0, 0, 0]), ("7", [0, 0, 0, 1, 0, 0]), ("even", [1, 0, 1, 0, 1, 0])]
)
def test_binary_targets_follow_the_rule(positive, expected):
    task = make_task("binary", positive)
    assert task.class_targets(LABELS).tolist() == expected and task.targets(LABELS).dtype == torch.float32


def test_binary_loss_is_cross_entropy_of_the_sigmoid_and_predictions_are_probabilities():
    task, logits = make_task("binary", "0"), torch.tensor([[2.0], [-1.0]])
    targets = torch.tensor([1.0, 1.0])
    expected = -(torch.sigmoid(logits.squeeze(1)).log()).mean()
    torch.testing.assert_close(task.loss(logits, targets), expected)
    prediction = task.predict(logits)
    torch.testing.assert_close(prediction["probabilities"][:, 1], torch.sigmoid(logits.squeeze(1)))
    assert prediction["classes"].tolist() == [1, 0]


def test_regression_targets_loss_and_predictions():
    task = make_task("regression")
    torch.testing.assert_close(task.targets(LABELS), (LABELS.float() - CENTRE) / SPREAD)
    outputs = task.targets(torch.tensor([3, 12])).unsqueeze(1)  # a perfect 3, and a value beyond 9
    assert task.loss(outputs[:1], task.targets(torch.tensor([3]))) == 0
    prediction = task.predict(outputs)
    torch.testing.assert_close(prediction["values"], torch.tensor([3.0, 12.0]))
    assert prediction["classes"].tolist() == [3, 9]  # rounded, within the digits


@pytest.mark.parametrize(("task", "positive"), [("ranking", "0"), ("binary", "odd"), ("binary", "10")])
def test_invalid_task_or_rule_is_refused(task, positive):
    with pytest.raises(ValueError, match="unknown task"):  # (the command line's parser refuses them first)
        MNISTClassifier(task=task, positive=positive)


@pytest.mark.parametrize(
    ("task", "metrics"),
    [
        ("multiclass", {"test/acc", "test/loss"}),
        ("binary", {"test/acc", "test/loss", "test/precision", "test/recall", "test/auroc"}),
        ("regression", {"test/acc", "test/loss", "test/mae", "test/rmse"}),
    ],
)
def test_each_task_trains_and_reports_its_metrics(synthetic_data_dir, tmp_path, task, metrics):
    L.seed_everything(0)
    trainer = L.Trainer(
        max_epochs=2, default_root_dir=tmp_path, logger=False, enable_progress_bar=False, log_every_n_steps=5
    )
    model, data = MNISTClassifier(task=task), MNISTDataModule(synthetic_data_dir, val_size=200)
    trainer.fit(model, data)
    assert {"train/loss", "train/acc", "val/loss", "val/acc", "val/acc_best"} <= trainer.callback_metrics.keys()
    [results] = trainer.test(model, data, verbose=False)
    assert metrics <= results.keys()
    assert results["test/acc"] > 0.6  # learnt something: chance is 0.1 (0.9 for binary's majority)


# On the real data.


def fit_and_test(data: MNISTDataModule, tmp_path, epochs: int, **model_args) -> dict[str, float]:
    L.seed_everything(42)
    trainer = L.Trainer(max_epochs=epochs, default_root_dir=tmp_path, logger=False, enable_progress_bar=False)
    model = MNISTClassifier(**model_args)
    trainer.fit(model, data)
    [results] = trainer.test(model, data, verbose=False)
    print(model_args, results)
    return results


@pytest.mark.slow
def test_binary_zero_against_the_rest_reaches_99_percent_in_5_epochs(real_data_dir, tmp_path):
    data = MNISTDataModule(real_data_dir, download=False)
    assert fit_and_test(data, tmp_path, 5, task="binary", positive="0")["test/acc"] >= 0.99


@pytest.mark.slow
def test_regression_reaches_a_mean_absolute_error_of_0_6_in_5_epochs(real_data_dir, tmp_path):
    data = MNISTDataModule(real_data_dir, download=False)
    assert fit_and_test(data, tmp_path, 5, task="regression")["test/mae"] <= 0.6


@pytest.mark.slow
def test_fashion_mnist_reaches_85_percent_in_10_epochs(tmp_path):
    if not (FASHION / "train-images-idx3-ubyte.gz").is_file():
        missing(f"Fashion-MNIST not found in {FASHION} (apt-get install dataset-fashion-mnist)")
    data = MNISTDataModule(tmp_path, dataset=str(FASHION), download=False)
    assert fit_and_test(data, tmp_path, 10)["test/acc"] >= 0.85
