"""The LightningModule: the network plus its loss, metrics, optimizer default and prediction output."""

from collections.abc import Sequence

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy

from mnist_ann.network import MLP, NUM_CLASSES


def recipe_sgd(params) -> torch.optim.Optimizer:
    """The recipe's optimizer: SGD, learning rate 0.01, momentum 0.9."""
    return torch.optim.SGD(params, lr=0.01, momentum=0.9)


class MNISTClassifier(L.LightningModule):
    """Trains the MLP with cross-entropy on its logits and reports loss and accuracy.

    Args:
        hidden_sizes: widths of the hidden layers.
        optimizer: builds the optimizer from the parameters; from a config, `--optimizer SGD
            --optimizer.lr 0.05` or any `torch.optim` class with its arguments.
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
        self.val_accuracy = MulticlassAccuracy(NUM_CLASSES, average="micro")
        self.test_accuracy = MulticlassAccuracy(NUM_CLASSES, average="micro")
        # Summed on the device and read once per window, so training never waits on a .item() per step.
        self.register_buffer("running_loss", torch.zeros(()), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, labels = batch
        loss = F.cross_entropy(self(images), labels)
        self.running_loss.add_(loss.detach())
        window = self.trainer.log_every_n_steps  # the running loss is the mean over the steps between two logs
        if window and (self.global_step + 1) % window == 0:
            self.log("train/loss", self.running_loss / window, prog_bar=True)
            self.running_loss.zero_()
        return loss

    def _evaluate(self, batch: tuple[Tensor, Tensor], stage: str, accuracy: MulticlassAccuracy) -> None:
        images, labels = batch
        logits = self(images)
        accuracy(logits, labels)
        self.log(f"{stage}/loss", F.cross_entropy(logits, labels), batch_size=len(labels), prog_bar=True)
        self.log(f"{stage}/acc", accuracy, prog_bar=True)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_accuracy)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_accuracy)

    def predict_step(self, batch: tuple[Tensor, Tensor] | Tensor, batch_idx: int) -> dict[str, Tensor]:
        """Class probabilities (softmax of the logits) and the predicted digit for each image."""
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        probabilities = self(images).softmax(dim=1)
        return {"probabilities": probabilities, "digits": probabilities.argmax(dim=1)}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.parameters())
