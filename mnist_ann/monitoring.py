"""TensorBoard beyond the scalars: hyperparameters with final metrics, images, optional histograms.

The scalars themselves (train/..., val/..., test/...) are logged by the model with `self.log`;
this callback adds what needs a picture or a summary of the whole run. It does nothing when the
run has no TensorBoard logger, and it only draws once per epoch, never per step.
"""

import lightning as L
import matplotlib
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter
from torchmetrics.classification import MulticlassConfusionMatrix
from torchvision.utils import make_grid

from mnist_ann.data import MEAN, STD

matplotlib.use("Agg")  # draw into memory: runs happen on servers without a screen
import matplotlib.pyplot as plt

# What the HParams tab shows for a run, by the stage that produces it: HParams column <- logged scalar.
FINAL_METRICS = {
    "fit": {"hp/val_acc_best": "val/acc_best", "hp/val_loss": "val/loss"},
    "test": {"hp/test_acc": "test/acc", "hp/test_loss": "test/loss"},
}


def to_pixels(images: Tensor) -> Tensor:
    """Undo the normalization: model inputs back to [0, 1] grey levels for display."""
    return (images * STD + MEAN).clamp(0, 1)


class TensorBoardMonitor(Callback):
    """Images and summaries for TensorBoard.

    - `hp/...`: the run's hyperparameters with its final metrics, for the HParams tab.
    - `train/samples`: a grid of the first training batch, once per run.
    - `val/confusion_matrix` each epoch (colours) and `test/confusion_matrix` (with counts):
      torchmetrics' confusion-matrix plot.
    - `test/misclassified`: a grid of misclassified test images, each with `true>predicted` under it.
    - with `histograms`: `weights/...` and `gradients/...` of every parameter, once per epoch.

    Args:
        histograms: also log weight and gradient histograms (off by default: they add files, not insight, to most runs).
        max_images: at most this many digits in the sample and misclassified grids.
    """

    def __init__(self, histograms: bool = False, max_images: int = 64) -> None:
        self.histograms, self.max_images = histograms, max_images
        self.confusion: MulticlassConfusionMatrix  # and class_names: both made in setup, for the run's task
        self.class_names: list[str] = []
        self.misclassified: list[tuple[Tensor, Tensor, Tensor]] = []

    @staticmethod
    def _writer(trainer: L.Trainer) -> SummaryWriter | None:
        logger = trainer.logger
        return logger.experiment if isinstance(logger, TensorBoardLogger) and trainer.is_global_zero else None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.confusion = MulticlassConfusionMatrix(num_classes=pl_module.task.num_classes).to(pl_module.device)
        self.class_names = pl_module.class_names()

    # Confusion matrices and misclassified digits, from the predictions the evaluation steps return.

    def _collect(self, outputs: dict[str, Tensor], batch: tuple[Tensor, Tensor], keep_misclassified: bool) -> None:
        images = batch[0]
        predictions, labels = outputs["predictions"], outputs["targets"]
        self.confusion.update(predictions, labels)
        kept = sum(len(true) for _, true, _ in self.misclassified)
        if keep_misclassified and kept < self.max_images:
            wrong = (predictions != labels).nonzero().flatten()[: self.max_images - kept]
            if len(wrong):
                self.misclassified.append((images[wrong].cpu(), labels[wrong].cpu(), predictions[wrong].cpu()))

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.sanity_checking:
            self._collect(outputs, batch, keep_misclassified=False)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(outputs, batch, keep_misclassified=True)

    def _log_confusion_matrix(self, trainer: L.Trainer, tag: str, counts: bool) -> None:
        matrix = self.confusion.compute()  # synchronized across processes under DDP
        self.confusion.reset()
        if writer := self._writer(trainer):
            # Small and low-resolution: drawing and PNG-encoding the figure is most of this callback's cost.
            figure, axes = plt.subplots(figsize=(4.5, 4.5), dpi=80)
            self.confusion.plot(matrix, ax=axes, add_text=counts, labels=self.class_names)
            writer.add_figure(tag, figure, trainer.global_step)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Colours only: writing the 100 counts takes twice as long as the rest of the figure, every epoch.
        if not trainer.sanity_checking:
            self._log_confusion_matrix(trainer, "val/confusion_matrix", counts=False)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log_confusion_matrix(trainer, "test/confusion_matrix", counts=True)
        if (writer := self._writer(trainer)) and self.misclassified:
            images, true, predicted = (torch.cat(parts) for parts in zip(*self.misclassified, strict=True))
            figure = self._labelled_grid(images, true, predicted, self.class_names)
            writer.add_figure("test/misclassified", figure, trainer.global_step)
        self.misclassified.clear()

    @staticmethod
    def _labelled_grid(
        images: Tensor, true: Tensor, predicted: Tensor, names: list[str], columns: int = 8
    ) -> plt.Figure:
        """One torchvision grid of the digits, with `true>predicted` written in the gap under each."""
        padding = 12
        cell = 28 + padding
        grid = make_grid(to_pixels(images), nrow=columns, padding=padding, pad_value=1.0)
        rows = -(-len(images) // columns)
        figure, axes = plt.subplots(figsize=(columns * 1.1, rows * 1.1 + 0.4))
        axes.imshow(grid.permute(1, 2, 0).numpy())
        axes.set_axis_off()
        for index, (label, guess) in enumerate(zip(true.tolist(), predicted.tolist(), strict=True)):
            row, column = divmod(index, columns)
            x, y = column * cell + padding + 14, row * cell + padding + 28
            axes.text(x, y, f"{names[label]}>{names[guess]}", color="darkred", fontsize=7, ha="center", va="top")
        axes.set_title("misclassified test images (true>predicted)", fontsize=10)
        figure.tight_layout()
        return figure

    # Once per run: the inputs, and at the end the hyperparameters with the final metrics.

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if writer := self._writer(trainer):
            images, _ = next(iter(trainer.train_dataloader))
            writer.add_image("train/samples", make_grid(to_pixels(images[: self.max_images]), nrow=8), 0)

    def _log_hparams_with(self, trainer: L.Trainer, stage: str) -> None:
        metrics = {column: trainer.callback_metrics.get(scalar) for column, scalar in FINAL_METRICS[stage].items()}
        if self._writer(trainer) and all(value is not None for value in metrics.values()):
            hparams = {**trainer.lightning_module.hparams, **(trainer.datamodule.hparams if trainer.datamodule else {})}
            trainer.logger.log_hyperparams(hparams, {name: float(value) for name, value in metrics.items()})

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log_hparams_with(trainer, "fit")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log_hparams_with(trainer, "test")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # At the epoch's last step, while its gradients still exist: validation sets them to None before the epoch ends.
        if not (self.histograms and batch_idx + 1 == trainer.num_training_batches):
            return
        if not (writer := self._writer(trainer)):
            return
        for name, parameter in pl_module.named_parameters():
            writer.add_histogram(f"weights/{name}", parameter, trainer.global_step)
            if parameter.grad is not None:
                writer.add_histogram(f"gradients/{name}", parameter.grad, trainer.global_step)
