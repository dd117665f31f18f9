"""The three kinds of output layer, chosen by the problem type.

- multiclass: one neuron per class (10), softmax; cross-entropy on the logits; accuracy.
- binary: one neuron, sigmoid giving the probability of the positive class; binary cross-entropy on
  the logit; accuracy, precision, recall, AUROC. The target comes from the digit by a rule: one
  chosen digit against the rest (`positive: "0"`), or even against odd (`positive: even`).
- regression: one linear neuron predicting the digit's value; mean squared error; MAE, RMSE and
  `acc`, the share of predictions that round to the right digit. The neuron is trained on the value
  standardized to (digit - 4.5) / 3, which keeps its gradients on the scale of the other tasks':
  on raw 0-9 targets the recipe's SGD (lr 0.01, momentum 0.9) settles on predicting the mean.

The activation is never applied to the outputs before a loss: the losses take logits, which is
numerically safer; probabilities are computed for metrics and predictions only.
"""

from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MeanAbsoluteError, MeanSquaredError, Metric
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryAUROC,
    BinaryPrecision,
    BinaryRecall,
    MulticlassAccuracy,
)

TaskName = Literal["multiclass", "binary", "regression"]
PositiveRule = Literal["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "even"]  # binary: this digit, or even ones
CENTRE, SPREAD = 4.5, 3.0  # the regression neuron's target: (digit - CENTRE) / SPREAD


class Task:
    """What the output layer means: its size, the targets and loss, predictions and metrics."""

    outputs = 10
    num_classes = 10  # of the predicted class ids (for accuracy and confusion matrices)

    def targets(self, labels: Tensor) -> Tensor:
        return labels

    def class_targets(self, labels: Tensor) -> Tensor:
        """The class id each image should be predicted as."""
        return labels

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return F.cross_entropy(outputs, targets)

    def classes(self, outputs: Tensor) -> Tensor:
        """Predicted class ids."""
        return outputs.argmax(dim=1)

    def predict(self, outputs: Tensor) -> dict[str, Tensor]:
        probabilities = outputs.softmax(dim=1)
        return {"classes": probabilities.argmax(dim=1), "probabilities": probabilities}

    def metrics(self) -> dict[str, Metric]:
        """Evaluation metrics beyond `acc`; each is updated by `update_metrics`."""
        return {}

    def update_metrics(self, metrics: dict[str, Metric], outputs: Tensor, labels: Tensor) -> None:
        pass

    def class_names(self, names: list[str]) -> list[str]:
        return names


class MulticlassTask(Task):
    def __init__(self, label_smoothing: float = 0.0) -> None:
        self.label_smoothing = label_smoothing

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return F.cross_entropy(outputs, targets, label_smoothing=self.label_smoothing)


class BinaryTask(Task):
    outputs, num_classes = 1, 2

    def __init__(self, positive: str) -> None:
        self.positive = positive

    def class_targets(self, labels: Tensor) -> Tensor:
        return (labels % 2 == 0).long() if self.positive == "even" else (labels == int(self.positive)).long()

    def targets(self, labels: Tensor) -> Tensor:
        return self.class_targets(labels).float()

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(outputs.squeeze(1), targets)

    def classes(self, outputs: Tensor) -> Tensor:
        return (outputs.squeeze(1) > 0).long()  # probability above one half

    def predict(self, outputs: Tensor) -> dict[str, Tensor]:
        probability = outputs.squeeze(1).sigmoid()
        return {"classes": (probability > 0.5).long(), "probabilities": torch.stack([1 - probability, probability], 1)}

    def metrics(self) -> dict[str, Metric]:
        return {"precision": BinaryPrecision(), "recall": BinaryRecall(), "auroc": BinaryAUROC()}

    def update_metrics(self, metrics: dict[str, Metric], outputs: Tensor, labels: Tensor) -> None:
        probability, targets = outputs.squeeze(1).sigmoid(), self.class_targets(labels)
        for metric in metrics.values():
            metric.update(probability, targets)

    def class_names(self, names: list[str]) -> list[str]:
        positive = "even" if self.positive == "even" else names[int(self.positive)]
        return [f"not {positive}", positive]


class RegressionTask(Task):
    outputs = 1

    def targets(self, labels: Tensor) -> Tensor:
        return (labels.float() - CENTRE) / SPREAD

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return F.mse_loss(outputs.squeeze(1), targets)

    def values(self, outputs: Tensor) -> Tensor:
        return outputs.squeeze(1) * SPREAD + CENTRE

    def classes(self, outputs: Tensor) -> Tensor:
        return self.values(outputs).round().clamp(0, 9).long()

    def predict(self, outputs: Tensor) -> dict[str, Tensor]:
        return {"classes": self.classes(outputs), "values": self.values(outputs)}

    def metrics(self) -> dict[str, Metric]:
        return {"mae": MeanAbsoluteError(), "rmse": MeanSquaredError(squared=False)}

    def update_metrics(self, metrics: dict[str, Metric], outputs: Tensor, labels: Tensor) -> None:
        for metric in metrics.values():
            metric.update(self.values(outputs), labels.float())


def make_task(task: TaskName, positive: PositiveRule = "0", label_smoothing: float = 0.0) -> Task:
    """The task by name; `label_smoothing` is the multiclass cross-entropy's (training and evaluation alike)."""
    if task not in get_args(TaskName) or positive not in get_args(PositiveRule):  # (the command line checks this)
        raise ValueError(f"unknown task {task!r} or positive class {positive!r}")
    if label_smoothing and task != "multiclass":
        raise ValueError(f"label smoothing is for the multiclass task's cross-entropy, not {task}")
    tasks = {
        "multiclass": lambda: MulticlassTask(label_smoothing),
        "binary": lambda: BinaryTask(positive),
        "regression": RegressionTask,
    }
    return tasks[task]()


def accuracy(task: Task) -> MulticlassAccuracy | BinaryAccuracy:
    """Accuracy of the predicted class ids."""
    return BinaryAccuracy() if task.num_classes == 2 else MulticlassAccuracy(task.num_classes, average="micro")
