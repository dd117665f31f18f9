"""TensorBoard beyond the scalars: each run's hyperparameters, images, optional histograms.

The scalars themselves (train/..., val/..., test/...) are logged by the model with `self.log`;
this callback adds what needs a picture or a summary of the whole run. It does nothing when the
run has no TensorBoard logger, and it only draws once per epoch, never per step.
"""

import os
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from matplotlib.figure import Figure
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams
from torchmetrics.classification import MulticlassConfusionMatrix
from torchvision.utils import make_grid

from mnist_ann.data import NORMALIZED_RANGE

# Optimizer settings that say how it is computed, not what: left out of the HParams rows.
IMPLEMENTATION_OPTIONS = {"foreach", "fused", "differentiable", "capturable", "maximize"}


def image_grid(images: Tensor, columns: int = 8, padding: int = 2, pad_value: float = 0.0) -> Tensor:
    """Model inputs as one picture, with the normalization undone: black is 0, white is 1."""
    return make_grid(
        images, nrow=columns, padding=padding, normalize=True, value_range=NORMALIZED_RANGE, pad_value=pad_value
    )


def run_hparams(trainer: L.Trainer, module: L.LightningModule) -> dict[str, int | float | str | bool]:
    """What distinguishes one run from another, for TensorBoard's HParams tab."""
    model, data = module.hparams, (trainer.datamodule.hparams if trainer.datamodule else {})
    values = {
        "task": model["task"] + (f" {model['positive']}" if model["task"] == "binary" else ""),
        "hidden_sizes": str(list(model["hidden_sizes"])),
        "dataset": data.get("dataset", "mnist"),
        "batch_size": data.get("batch_size", 0),
        "max_epochs": trainer.max_epochs,
        "seed": int(os.environ.get("PL_GLOBAL_SEED", -1)),  # set by seed_everything
    }
    if trainer.optimizers:
        optimizer = trainer.optimizers[0]
        values["optimizer"] = type(optimizer).__name__
        for name, value in optimizer.defaults.items():
            if name not in IMPLEMENTATION_OPTIONS and value is not None:
                values[f"optimizer.{name}"] = value if isinstance(value, (int, float, bool)) else str(value)
    return values


class TensorBoardMonitor(Callback):
    """Images and summaries for TensorBoard.

    - HParams: one row per run with what distinguishes it (optimizer and its settings, hidden sizes,
      task, batch size, epochs, seed, dataset) beside its scalars' final values. A `test` or
      `validate` of a checkpoint logs into the run the checkpoint came from (see `mnist_ann.cli`), so
      its test figures stand in that run's row.
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
        self.samples_logged = False

    @staticmethod
    def _writer(trainer: L.Trainer) -> SummaryWriter | None:
        logger = trainer.logger
        return logger.experiment if isinstance(logger, TensorBoardLogger) and trainer.is_global_zero else None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.confusion = MulticlassConfusionMatrix(num_classes=pl_module.task.num_classes).to(pl_module.device)
        self.class_names = pl_module.class_names
        self.samples_logged = False

    # The run's row in the HParams tab.

    def _log_hparams(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if writer := self._writer(trainer):
            # The summary that starts an HParams session, written into this run's own event file, as
            # Lightning's log_hyperparams does (SummaryWriter.add_hparams would make a sub-run instead).
            # Without an experiment summary, TensorBoard takes every scalar of the run as a column.
            _, session_start, _ = hparams(run_hparams(trainer, pl_module), {})
            writer._get_file_writer().add_summary(session_start)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log_hparams(trainer, pl_module)

    def _start_evaluation(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A run folder that already holds events (the training run of the checkpoint) keeps its session.
        if (writer := self._writer(trainer)) and len(list(Path(writer.log_dir).glob("events.out.tfevents.*"))) == 1:
            self._log_hparams(trainer, pl_module)

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start_evaluation(trainer, pl_module)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.training and not trainer.sanity_checking:  # `validate`, not the validation inside `fit`
            self._start_evaluation(trainer, pl_module)

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
            # Drawing and PNG-encoding the figure is most of this callback's cost: the per-epoch one is small.
            # torchmetrics writes the counts at 15 points: 6.8 inches give each cell room for four digits.
            figure = Figure(figsize=(6.8, 6.8) if counts else (4.5, 4.5), dpi=100 if counts else 80)
            self.confusion.plot(matrix, ax=figure.subplots(), add_text=counts, labels=self.class_names)
            figure.tight_layout()
            writer.add_figure(tag, figure, trainer.global_step)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Colours only: writing the 100 counts takes twice as long as the rest of the figure, every epoch.
        if not trainer.sanity_checking:
            self._log_confusion_matrix(trainer, "val/confusion_matrix", counts=False)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log_confusion_matrix(trainer, "test/confusion_matrix", counts=True)
        if (writer := self._writer(trainer)) and self.misclassified:
            images, true, predicted = (torch.cat(parts) for parts in zip(*self.misclassified, strict=True))
            figure = labelled_grid(images, true, predicted, self.class_names)
            writer.add_figure("test/misclassified", figure, trainer.global_step)
        self.misclassified.clear()

    # During training: the inputs once, and optionally histograms once per epoch.

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # The first batch Lightning serves, rather than a batch of our own: iterating the training loader
        # here would be a second pass over it.
        if not self.samples_logged and (writer := self._writer(trainer)):
            writer.add_image("train/samples", image_grid(batch[0][: self.max_images]), trainer.global_step)
            self.samples_logged = True
        # At the epoch's last step, while its gradients still exist: validation sets them to None before the epoch ends.
        if self.histograms and batch_idx + 1 == trainer.num_training_batches and (writer := self._writer(trainer)):
            for name, parameter in pl_module.named_parameters():
                writer.add_histogram(f"weights/{name}", parameter, trainer.global_step)
                if parameter.grad is not None:
                    writer.add_histogram(f"gradients/{name}", parameter.grad, trainer.global_step)


def labelled_grid(images: Tensor, true: Tensor, predicted: Tensor, names: list[str], columns: int = 8) -> Figure:
    """One torchvision grid of the digits, with `true>predicted` written in the gap under each.

    Sized for TensorBoard's image cards, which show a figure about 320 pixels wide: a small figure
    with large captions, shrunk only where class names are long (Fashion-MNIST's clothes).
    """
    padding = 24  # grid pixels between digits: the caption goes in the gap under each
    cell = 28 + padding
    grid = image_grid(images, columns, padding, pad_value=1.0)  # white paper under the captions
    rows = -(-len(images) // columns)
    captions = [
        f"{names[label]}>{names[guess]}" for label, guess in zip(true.tolist(), predicted.tolist(), strict=True)
    ]
    width = 5.0  # inches, at 100 dpi: 500 pixels
    cell_points = width * 72 / columns
    fontsize = min(15.0, cell_points / (0.62 * max(map(len, captions))))
    figure = Figure(figsize=(width, width * rows / columns + 0.35), dpi=100)
    axes = figure.subplots()
    axes.imshow(grid.permute(1, 2, 0).numpy())
    axes.set_axis_off()
    for index, caption in enumerate(captions):
        row, column = divmod(index, columns)
        x, y = column * cell + padding + 14, row * cell + padding + 28
        axes.text(x, y, caption, color="darkred", fontsize=fontsize, ha="center", va="top")
    axes.set_title("misclassified (true>predicted)", fontsize=15)
    figure.tight_layout(pad=0.2)
    return figure
