"""The three output layers (multiclass, binary, regression) and the other MNIST-format datasets."""

from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

from mnist_ann.data import MNISTDataModule
from mnist_ann.model import MNISTClassifier
from mnist_ann.tasks import CENTRE, SPREAD, make_task
from tests.helpers.commands import REPO, missing

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


# On the real data, with each shipped config's settings over the recipe's.


def fit_and_test(config: str, data_dir) -> dict[str, float]:
    """The recipe with `configs/<config>` over it (its model, data and epochs), trained and tested with a plain
    Trainer (the command line's own path is `test_cli.py`'s)."""
    shipped = yaml.safe_load((REPO / "configs" / config).read_text())
    L.seed_everything(42)
    epochs = shipped.get("trainer", {}).get("max_epochs", 10)
    trainer = L.Trainer(max_epochs=epochs, logger=False, enable_progress_bar=False, enable_checkpointing=False)
    model = MNISTClassifier(**shipped.get("model", {}))
    data = MNISTDataModule(data_dir, download=False, **shipped.get("data", {}))
    trainer.fit(model, data)
    [results] = trainer.test(model, data, verbose=False)
    return results


@pytest.mark.slow
def test_binary_yaml_tells_zero_from_the_rest_at_99_percent(real_data_dir):
    assert fit_and_test("binary.yaml", real_data_dir)["test/acc"] >= 0.99


@pytest.mark.slow
def test_regression_yaml_reaches_a_mean_absolute_error_of_0_6(real_data_dir):
    assert fit_and_test("regression.yaml", real_data_dir)["test/mae"] <= 0.6


@pytest.mark.slow
def test_fashion_yaml_reaches_85_percent_and_names_the_clothes(tmp_path):
    if not (FASHION / "train-images-idx3-ubyte.gz").is_file():
        missing(f"Fashion-MNIST not found in {FASHION} (apt-get install dataset-fashion-mnist)")
    assert yaml.safe_load((REPO / "configs" / "fashion.yaml").read_text())["data"]["dataset"] == str(FASHION)
    assert fit_and_test("fashion.yaml", tmp_path)["test/acc"] >= 0.85
