"""TensorBoard beyond the scalars: each run's hyperparameters, images, optional histograms.

The scalars themselves (train/..., val/..., test/...) are logged by the model with `self.log`;
this callback adds what needs a picture or a summary of the whole run. It does nothing when the
run has no TensorBoard logger, and it only draws once per epoch, never per step.
"""

import os
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch import loggers
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams
from torchmetrics.classification import MulticlassConfusionMatrix

from mnist_ann.charts import accuracy_bars, confusion_figure
from mnist_ann.explain import (
    attribution_grid,
    class_attributions,
    hidden_features,
    image_grid,
    labelled_grid,
    log_embedding,
    weight_tiles,
)
from mnist_ann.network import DIGITS

SHOWN_MISCLASSIFIED = 16  # two rows of eight: their captions stay readable on TensorBoard's image card

# Optimizer settings that say how it is computed, not what: left out of the HParams rows.
IMPLEMENTATION_OPTIONS = {"foreach", "fused", "differentiable", "capturable", "maximize"}


class TensorBoardLogger(loggers.TensorBoardLogger):
    """Lightning's TensorBoard logger, without the `epoch` scalar Lightning adds to every log (a card that
    restates the step axis), and with a `test` or `validate` of a checkpoint logged after the training it
    measures: at the step the checkpoint was saved (`evaluated_step`, which the command line sets from
    `--ckpt_path`) rather than at step 0."""

    evaluated_step: int | None = None

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        metrics = {name: value for name, value in metrics.items() if name != "epoch"}
        super().log_metrics(metrics, step if self.evaluated_step is None else self.evaluated_step)


def tensorboard_writer(trainer: L.Trainer) -> SummaryWriter | None:
    """The run's TensorBoard writer, in the process that writes (rank 0); None without a TensorBoard logger."""
    logger = trainer.logger
    return logger.experiment if isinstance(logger, loggers.TensorBoardLogger) and trainer.is_global_zero else None


def logged_step(trainer: L.Trainer) -> int:
    """The step a picture belongs at: the training's, or the evaluated checkpoint's."""
    evaluated = getattr(trainer.logger, "evaluated_step", None)
    return trainer.global_step if evaluated is None else evaluated


def log_hparams_row(writer: SummaryWriter, values: dict[str, int | float | str | bool]) -> None:
    """The run's row in the HParams tab. TensorBoard keeps a run's first row: it is written once."""
    # The summary that starts an HParams session, written into this run's own event file, as Lightning's
    # log_hyperparams does (SummaryWriter.add_hparams would make a sub-run instead). Without an experiment
    # summary, TensorBoard takes every scalar of the run as a column.
    _, session_start, _ = hparams(values, {})
    writer._get_file_writer().add_summary(session_start)


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
      its test figures stand in that run's row, at the step the checkpoint was saved (`TensorBoardLogger`).
    - `train/samples`: a grid of the first training batch, once per run.
    - `val/confusion_matrix` each epoch and `test/confusion_matrix`: counts, coloured on a log scale.
    - `test/acc_per_class`: each class's accuracy, as bars.
    - `test/misclassified`: 16 misclassified test images, each with `true>predicted` under it.
    - `weights/hidden_1` (`weights`): the first 32 units' weights as 28x28 tiles, at the start and
      after every epoch: scrub the step slider to watch them form from noise.
    - Projector (`projector`): the last hidden layer's features of `embedded` test images, with their
      labels and thumbnails, at the end of `fit` and of `test` (named by the step of the weights).
    - `test/attributions` (`attributions`): misclassified test digits beside the pixels that pushed
      them toward their true and their predicted class (`mnist_ann.explain`).
    - with `histograms`: `weights/...` and `gradients/...` of every parameter, once per epoch.

    Args:
        histograms: also log weight and gradient histograms (off by default: they add files, not insight, to most runs).
        max_images: at most this many digits in the sample grid.
        weights: log the first layer's weight tiles.
        projector: log the hidden-layer embedding for the projector.
        attributions: log the attribution maps of misclassified test digits.
        embedded: test images in each embedding.
        hparams_row: write the run's HParams row as training starts (`tune` writes its trials' as they end,
            with their searched values and state).
    """

    def __init__(
        self,
        histograms: bool = False,
        max_images: int = 64,
        weights: bool = True,
        projector: bool = True,
        attributions: bool = True,
        embedded: int = 1000,
        hparams_row: bool = True,
    ) -> None:
        self.histograms, self.max_images = histograms, max_images
        self.weights, self.projector, self.attributions, self.embedded = weights, projector, attributions, embedded
        self.hparams_row = hparams_row
        self.test_images: list[tuple[Tensor, Tensor]] = []
        self.confusion: MulticlassConfusionMatrix  # and class_names: both made in setup, for the run's task
        self.class_names: list[str] = []
        self.misclassified: list[tuple[Tensor, Tensor, Tensor]] = []
        self.samples_logged = False

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.confusion = MulticlassConfusionMatrix(num_classes=pl_module.task.num_classes).to(pl_module.device)
        self.class_names = pl_module.class_names
        self.samples_logged = False

    # The run's row in the HParams tab.

    def _log_hparams(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.hparams_row and (writer := tensorboard_writer(trainer)):
            log_hparams_row(writer, run_hparams(trainer, pl_module))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log_hparams(trainer, pl_module)
        self._log_weights(trainer, pl_module)  # before any training: noise

    def _start_evaluation(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A run folder that already holds events (the training run of the checkpoint) keeps its session.
        writer = tensorboard_writer(trainer)
        if writer and len(list(Path(writer.log_dir).glob("events.out.tfevents.*"))) == 1:
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
        if keep_misclassified and kept < SHOWN_MISCLASSIFIED:
            wrong = (predictions != labels).nonzero().flatten()[: SHOWN_MISCLASSIFIED - kept]
            if len(wrong):
                self.misclassified.append((images[wrong].cpu(), labels[wrong].cpu(), predictions[wrong].cpu()))

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.sanity_checking:
            self._collect(outputs, batch, keep_misclassified=False)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(outputs, batch, keep_misclassified=True)
        if self.projector and (missing := self.embedded - sum(len(labels) for _, labels in self.test_images)) > 0:
            self.test_images.append((batch[0][:missing].cpu(), batch[1][:missing].cpu()))

    def _log_confusion_matrix(self, trainer: L.Trainer, tag: str) -> Tensor:
        matrix = self.confusion.compute().cpu()  # synchronized across processes under DDP
        self.confusion.reset()
        if writer := tensorboard_writer(trainer):
            writer.add_figure(tag, confusion_figure(matrix, self.class_names), logged_step(trainer))
        return matrix

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._log_confusion_matrix(trainer, "val/confusion_matrix")

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        test = getattr(pl_module, "test_name", "test")
        matrix = self._log_confusion_matrix(trainer, f"{test}/confusion_matrix")
        if writer := tensorboard_writer(trainer):
            writer.add_figure(f"{test}/acc_per_class", accuracy_bars(matrix, self.class_names), logged_step(trainer))
        if writer and self.misclassified:
            images, true, predicted = (torch.cat(parts) for parts in zip(*self.misclassified, strict=True))
            figure = labelled_grid(images, true, predicted, self.class_names)
            writer.add_figure(f"{test}/misclassified", figure, logged_step(trainer))
            self._log_attributions(trainer, pl_module, f"{test}/attributions", images[:4], true[:4], predicted[:4])
        self.misclassified.clear()
        if self.test_images:
            images, labels = (torch.cat(parts) for parts in zip(*self.test_images, strict=True))
            self._log_embedding(trainer, pl_module, images, labels)
            self.test_images.clear()

    # What the network learned: its first layer's weights, its last hidden layer's view of test images, and
    # which pixels decided the misclassified ones.

    def _log_weights(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.weights and (writer := tensorboard_writer(trainer)):
            tag = "weights/hidden_1" if pl_module.hparams.hidden_sizes else "weights/output"
            writer.add_image(tag, weight_tiles(pl_module.net, columns=8, units=32, zoom=2), logged_step(trainer))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log_weights(trainer, pl_module)

    def _log_embedding(self, trainer: L.Trainer, pl_module: L.LightningModule, images: Tensor, labels: Tensor) -> None:
        if self.projector and (writer := tensorboard_writer(trainer)):
            features = hidden_features(pl_module.net, images.to(pl_module.device)).cpu()
            names = pl_module.hparams.get("class_names") or DIGITS  # the digits' own names, whatever the task
            log_embedding(
                writer, features, [names[label] for label in labels], images, "last_hidden_layer", logged_step(trainer)
            )

    def _log_attributions(self, trainer, pl_module, tag: str, images: Tensor, true: Tensor, predicted: Tensor) -> None:
        if self.attributions and (writer := tensorboard_writer(trainer)):
            on_device = images.to(pl_module.device)
            toward_true = class_attributions(pl_module, on_device, true.to(pl_module.device)).cpu()
            toward_predicted = class_attributions(pl_module, on_device, predicted.to(pl_module.device)).cpu()
            figure = attribution_grid(images, true, predicted, toward_true, toward_predicted, self.class_names)
            writer.add_figure(tag, figure, logged_step(trainer))

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        test_images = getattr(trainer.datamodule, "test_dataloader", None)
        if self.projector and test_images and tensorboard_writer(trainer):
            images, labels = next(iter(test_images()))
            self._log_embedding(trainer, pl_module, images[: self.embedded], labels[: self.embedded])

    # During training: the inputs once, and optionally histograms once per epoch.

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # The first batch Lightning serves, rather than a batch of our own: iterating the training loader
        # here would be a second pass over it.
        if not self.samples_logged and (writer := tensorboard_writer(trainer)):
            writer.add_image("train/samples", image_grid(batch[0][: self.max_images]), trainer.global_step)
            self.samples_logged = True
        # At the epoch's last step, while its gradients still exist: validation sets them to None before the epoch ends.
        last_step = batch_idx + 1 == trainer.num_training_batches
        if self.histograms and last_step and (writer := tensorboard_writer(trainer)):
            for name, parameter in pl_module.named_parameters():
                writer.add_histogram(f"weights/{name}", parameter, trainer.global_step)
                if parameter.grad is not None:
                    writer.add_histogram(f"gradients/{name}", parameter.grad, trainer.global_step)
