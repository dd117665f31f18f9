"""The LightningModule: the network plus its loss, metrics, optimizer default and prediction output."""

from collections.abc import Sequence

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor
from torchmetrics import MaxMetric
from torchmetrics.classification import MulticlassAccuracy

from mnist_ann.errors import TrainingDivergedError
from mnist_ann.network import MLP, NUM_CLASSES

Batch = tuple[Tensor, Tensor]


def recipe_sgd(params) -> torch.optim.Optimizer:
    """The recipe's optimizer: SGD, learning rate 0.01, momentum 0.9."""
    return torch.optim.SGD(params, lr=0.01, momentum=0.9)


class MNISTClassifier(L.LightningModule):
    """Trains the MLP with cross-entropy on its logits and reports loss and accuracy.

    Logged scalars: `train/loss` (running mean, every `trainer.log_every_n_steps` steps),
    `train/acc` and `train/lr` per epoch; `val/loss`, `val/acc`, `val/acc_best` per epoch;
    `test/loss`, `test/acc` and `test/acc_digit_0` ... `test/acc_digit_9`.

    Args:
        hidden_sizes: widths of the hidden layers.
        optimizer: builds the optimizer from the parameters; from a config, `--model.optimizer
            torch.optim.Adam --model.optimizer.lr 0.001` or any `torch.optim` class with its arguments.
    """

    def __init__(
        self,
        hidden_sizes: Sequence[int] = (128, 64),
        optimizer: OptimizerCallable = recipe_sgd,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer"])
        self.net = MLP(hidden_sizes)
        self.optimizer_factory = optimizer
        # Training accuracy is counted on the device every step: a torchmetrics update costs five times as
        # much, about 4% of this small model's step. Evaluation, where steps are few, uses torchmetrics.
        self.register_buffer("train_correct", torch.zeros((), dtype=torch.long))
        self.register_buffer("train_seen", torch.zeros((), dtype=torch.long))
        self.val_accuracy = MulticlassAccuracy(NUM_CLASSES, average="micro")
        self.val_accuracy_best = MaxMetric()
        self.test_accuracy = MulticlassAccuracy(NUM_CLASSES, average="micro")
        self.test_accuracy_per_digit = MulticlassAccuracy(NUM_CLASSES, average=None)
        # Summed on the device and read once per window, so training never waits on a .item() per step.
        # These counters are saved with checkpoints, so that a resumed run logs what an uninterrupted one does.
        self.register_buffer("running_loss", torch.zeros(()))

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        images, labels = batch
        logits = self(images)
        loss = F.cross_entropy(logits, labels)
        self.train_correct.add_((logits.argmax(dim=1) == labels).sum())
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

    def _evaluate(self, batch: Batch, stage: str, accuracy: MulticlassAccuracy) -> dict[str, Tensor]:
        images, labels = batch
        logits = self(images)
        accuracy(logits, labels)
        loss = F.cross_entropy(logits, labels)
        self.log(f"{stage}/loss", loss, batch_size=len(labels), prog_bar=True, sync_dist=True)
        self.log(f"{stage}/acc", accuracy, prog_bar=True)
        return {"predictions": logits.argmax(dim=1)}  # for callbacks: confusion matrices, misclassified digits

    def validation_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        return self._evaluate(batch, "val", self.val_accuracy)

    def on_validation_epoch_end(self) -> None:
        self.val_accuracy_best(self.val_accuracy.compute())
        self.log("val/acc_best", self.val_accuracy_best.compute())

    def test_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        outputs = self._evaluate(batch, "test", self.test_accuracy)
        self.test_accuracy_per_digit.update(outputs["predictions"], batch[1])
        return outputs

    def on_test_epoch_end(self) -> None:
        per_digit = self.test_accuracy_per_digit.compute()
        self.log_dict({f"test/acc_digit_{digit}": accuracy for digit, accuracy in enumerate(per_digit)})
        self.test_accuracy_per_digit.reset()

    def predict_step(self, batch: Batch | Tensor, batch_idx: int) -> dict[str, Tensor]:
        """Class probabilities (softmax of the logits) and the predicted digit for each image."""
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        probabilities = self(images).softmax(dim=1)
        return {"probabilities": probabilities, "digits": probabilities.argmax(dim=1)}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.parameters())
