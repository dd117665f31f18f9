"""The LightningModule: the network plus its loss, metrics, optimizer default and prediction output."""

from collections.abc import Sequence

import lightning as L
import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn
from torchmetrics import MaxMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from mnist_ann.data import DIGITS
from mnist_ann.errors import TrainingDivergedError
from mnist_ann.network import MLP, NUM_CLASSES
from mnist_ann.tasks import accuracy, make_task

Batch = tuple[Tensor, Tensor]


def recipe_sgd(params) -> torch.optim.Optimizer:
    """The recipe's optimizer: SGD, learning rate 0.01, momentum 0.9."""
    return torch.optim.SGD(params, lr=0.01, momentum=0.9)


class MNISTClassifier(L.LightningModule):
    """Trains the MLP for one of three problem types (`mnist_ann.tasks`) and reports its metrics.

    Logged scalars: `train/loss` (running mean, every `trainer.log_every_n_steps` steps),
    `train/acc` and `train/lr` per epoch; `val/loss`, `val/acc`, `val/acc_best` per epoch;
    `test/loss`, `test/acc`; for the multiclass and regression tasks `test/acc_digit_0` ... `_9`;
    for binary `{val,test}/precision`, `/recall`, `/auroc`; for regression `{val,test}/mae`, `/rmse`.
    `acc` is always the share of images whose predicted class is right (for regression: whose
    predicted value rounds to the right digit), so the best checkpoint is chosen the same way.

    Args:
        hidden_sizes: widths of the hidden layers; [] for none (a linear model).
        optimizer: builds the optimizer from the parameters; from a config, `--model.optimizer
            torch.optim.Adam --model.optimizer.lr 0.001` or any `torch.optim` class with its arguments.
        task: `multiclass` (10 outputs, softmax), `binary` (1 output, sigmoid) or `regression`
            (1 linear output: the digit's value).
        positive: for `binary`: the digit that is the positive class against the rest, or `even`.
    """

    def __init__(
        self,
        hidden_sizes: Sequence[int] = (128, 64),
        optimizer: OptimizerCallable = recipe_sgd,
        task: str = "multiclass",
        positive: str = "0",
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer"])
        self.task = make_task(task, str(positive))
        self.net = MLP(hidden_sizes, num_classes=self.task.outputs)
        self.optimizer_factory = optimizer
        # Training accuracy is counted on the device every step: a torchmetrics update costs five times as
        # much, about 4% of this small model's step. Evaluation, where steps are few, uses torchmetrics.
        self.register_buffer("train_correct", torch.zeros((), dtype=torch.long))
        self.register_buffer("train_seen", torch.zeros((), dtype=torch.long))
        self.metrics = nn.ModuleDict(
            {stage: MetricCollection({"acc": accuracy(self.task), **self.task.metrics()}) for stage in ("val", "test")}
        )
        self.val_accuracy_best = MaxMetric()
        self.test_accuracy_per_digit = MulticlassAccuracy(NUM_CLASSES, average=None)
        # Summed on the device and read once per window, so training never waits on a .item() per step.
        # These counters are saved with checkpoints, so that a resumed run logs what an uninterrupted one does.
        self.register_buffer("running_loss", torch.zeros(()))

    def __setattr__(self, name: str, value) -> None:
        # Lightning records the hook it is in as `_current_fx_name` before and after every hook call,
        # about 40 times per training step. nn.Module.__setattr__ first checks whether the value is a
        # parameter, module or buffer, which made those writes ~7% of this small model's step.
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images)

    def class_names(self) -> list[str]:
        """The name of each predicted class id: the data's label names, as the task groups them."""
        return self.task.class_names(getattr(self.trainer.datamodule, "classes", None) or DIGITS)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        images, labels = batch
        logits = self(images)
        loss = self.task.loss(logits, self.task.targets(labels))
        self.train_correct.add_((self.task.classes(logits.detach()) == self.task.class_targets(labels)).sum())
        self.train_seen.add_(len(labels))
        self.running_loss.add_(loss.detach())
        window = self.trainer.log_every_n_steps  # the running loss is the mean over the steps between two logs
        if window and (self.global_step + 1) % window == 0:
            self._check_finite()
            self.log("train/loss", self.running_loss / window, prog_bar=True, sync_dist=True)
            self.running_loss.zero_()
        return loss

    def _check_finite(self) -> None:
        """Stop a run whose loss or weights are no longer finite numbers, before it logs or saves them."""
        if torch.isfinite(self.running_loss) and all(torch.isfinite(p).all() for p in self.parameters()):
            return
        callback = self.trainer.checkpoint_callback
        kept = callback.last_model_path or callback.best_model_path if callback else ""
        raise TrainingDivergedError(
            f"training diverged by step {self.global_step + 1}: the loss or the weights became NaN or infinite "
            "(is the learning rate too high?). Stopped without saving them; "
            + (f"the last good checkpoint is {kept}" if kept else "no checkpoint had been written yet")
        )

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        self._check_finite()

    def on_train_start(self) -> None:
        self.val_accuracy_best.reset()  # forget the sanity check's validation

    def on_train_epoch_start(self) -> None:
        self.log("train/lr", self.optimizers().param_groups[0]["lr"])

    def on_train_epoch_end(self) -> None:
        # Under DDP every process trains on an equal share, so the mean over processes is the exact accuracy.
        self.log("train/acc", self.train_correct / self.train_seen, sync_dist=True)
        self.train_correct.zero_()
        self.train_seen.zero_()

    def _evaluate(self, batch: Batch, stage: str) -> dict[str, Tensor]:
        images, labels = batch
        outputs = self(images)
        loss = self.task.loss(outputs, self.task.targets(labels))
        self.log(f"{stage}/loss", loss, batch_size=len(labels), prog_bar=True, sync_dist=True)
        metrics = self.metrics[stage]
        predictions, targets = self.task.classes(outputs), self.task.class_targets(labels)
        metrics["acc"].update(predictions, targets)
        self.task.update_metrics({name: metric for name, metric in metrics.items() if name != "acc"}, outputs, labels)
        self.log_dict({f"{stage}/{name}": metric for name, metric in metrics.items()}, prog_bar=stage == "val")
        # For callbacks (confusion matrices, misclassified digits): predicted and true class ids.
        return {"predictions": predictions, "targets": targets}

    def validation_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        return self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self.val_accuracy_best(self.metrics["val"]["acc"].compute())
        self.log("val/acc_best", self.val_accuracy_best.compute())

    def test_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        outputs = self._evaluate(batch, "test")
        if self.task.num_classes == NUM_CLASSES:  # the predicted class is a digit
            self.test_accuracy_per_digit.update(outputs["predictions"], batch[1])
        return outputs

    def on_test_epoch_end(self) -> None:
        if self.task.num_classes == NUM_CLASSES:
            per_digit = self.test_accuracy_per_digit.compute()
            self.log_dict({f"test/acc_digit_{digit}": accuracy for digit, accuracy in enumerate(per_digit)})
            self.test_accuracy_per_digit.reset()

    def predict_step(self, batch: Batch | Tensor, batch_idx: int) -> dict[str, Tensor]:
        """The predicted class of each image, with its class probabilities (classification) or value (regression)."""
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.task.predict(self(images))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.parameters())
