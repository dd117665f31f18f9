"""The LightningModule: the network with its loss, metrics and optimizer. Read it top to bottom:

- `forward`: the network (`mnist_ann.network`) maps images to outputs.
- `training_step`: forward pass, loss (+ `adversarial`'s penalty); Lightning then backpropagates and steps.
- `validation_step` / `test_step`: the same forward pass and loss, plus accuracy on held-out images.
- `predict_step`: outputs turned into a class and its probabilities (softmax).
- `configure_optimizers`: the recipe's SGD, learning rate 0.01, momentum 0.9; optionally a learning-rate
  schedule (`mnist_ann.schedules`), stepped after every batch.
- `optimizer_step`: the optimizer's update, then, with `max_norm`, the limit on the weights' size.

What the output layer means (10 classes, one binary neuron, or a regression value) lives in
`mnist_ann.tasks`. The base class, `LeanLightningModule`, is Lightning's `LightningModule` with cheaper
per-step bookkeeping (`mnist_ann.lean`); `log_training_loss` is its `self.log("train/loss", loss)`.
"""

from collections.abc import Sequence
from pathlib import Path

import torch
from jsonargparse.typing import ClosedUnitInterval, PositiveFloat, PositiveInt
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.utilities.types import OptimizerLRSchedulerConfig
from torch import Tensor, nn
from torchmetrics import MaxMetric, MetricCollection

from mnist_ann.adversarial import Adversarial
from mnist_ann.checkpoints import check_checkpoint, check_fits
from mnist_ann.errors import ConfigError
from mnist_ann.lean import LeanLightningModule
from mnist_ann.network import DIGITS, IMAGE_SIDE, MLP
from mnist_ann.schedules import ScheduleCallable
from mnist_ann.tasks import PositiveRule, TaskName, accuracy, make_task

Batch = tuple[Tensor, Tensor]


def recipe_sgd(params) -> torch.optim.Optimizer:
    """The recipe's optimizer: SGD, learning rate 0.01, momentum 0.9."""
    return torch.optim.SGD(params, lr=0.01, momentum=0.9)


class MNISTClassifier(LeanLightningModule):
    """Trains the MLP for one of three problem types (`mnist_ann.tasks`) and reports its metrics.

    Logged scalars: `train/loss` and `train/lr` (running mean and the current rate, every
    `trainer.log_every_n_steps` steps), `train/acc` per epoch; `val/loss`, `val/acc`, `val/acc_best` per epoch;
    `test/loss`, `test/acc` (each class's accuracy is a picture: `mnist_ann.monitoring`); for binary
    `{val,test}/precision`, `/recall`, `/auroc`; for regression `{val,test}/mae`, `/rmse`.
    `acc` is always the share of images whose predicted class is right (for regression: whose
    predicted value rounds to the right digit), so the best checkpoint is chosen the same way.

    Args:
        hidden_sizes: widths of the hidden layers; [] for none (a linear model).
        optimizer: builds the optimizer from the parameters; from a config, `--model.optimizer
            torch.optim.Adam --model.optimizer.lr 0.001` or any `torch.optim` class with its arguments
            (weight decay is the optimizer's `weight_decay`).
        scheduler: a learning-rate schedule over the whole run, stepped after every batch:
            `mnist_ann.schedules.OneCycle` or `WarmupCosine`; unset, the optimizer's rate throughout.
        dropout: the share of each hidden layer's features zeroed while training; 0 for none.
        input_dropout: the share of input pixels zeroed while training; 0 for none.
        batch_norm: batch normalization between each hidden layer's linear map and its ReLU.
        adversarial: adversarial training (`fgsm`) or virtual adversarial training (`vat`), with its
            strength (`mnist_ann.adversarial`); unset for none.
        max_norm: after every step, each hidden unit's incoming weights are scaled back to this length where
            they are longer (Srivastava et al. 2014 used 3-4 with dropout); unset for no limit.
        label_smoothing: for `multiclass`: the share of each target spread evenly over all classes, so
            that training does not push the logits toward infinite confidence; 0 for none. (`val/loss`
            and `test/loss` are the same smoothed cross-entropy.)
        task: `multiclass` (10 outputs, softmax), `binary` (1 output, sigmoid) or `regression`
            (1 linear output: the digit's value).
        positive: for `binary`: the digit that is the positive class against the rest, or `even`.
        class_names: the name of each label 0-9 (the command line takes them from the data);
            saved with the checkpoint, so that predictions keep them.
        weights_from: a checkpoint whose network weights `fit` starts from, to fine-tune them (loaded
            weights only). Unlike `--ckpt_path`, which resumes a run, it brings no optimizer state, epoch
            or schedule: the new run starts at epoch 0 with its own settings.
    """

    def __init__(
        self,
        hidden_sizes: Sequence[PositiveInt] = (128, 64),
        optimizer: OptimizerCallable = recipe_sgd,
        scheduler: ScheduleCallable | None = None,
        dropout: ClosedUnitInterval = 0.0,
        input_dropout: ClosedUnitInterval = 0.0,
        batch_norm: bool = False,
        adversarial: Adversarial | None = None,
        max_norm: PositiveFloat | None = None,
        label_smoothing: ClosedUnitInterval = 0.0,
        task: TaskName = "multiclass",
        positive: PositiveRule = "0",
        class_names: list[str] | None = None,
        weights_from: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        # One image: the model summary at the start of `fit` shows each layer's input and output sizes and FLOPs.
        self.example_input_array = torch.zeros(1, 1, IMAGE_SIDE, IMAGE_SIDE)
        try:
            self.task = make_task(task, positive, label_smoothing)
        except ValueError as error:
            raise ConfigError(f"model: {error}") from None
        if adversarial and adversarial.kind == "vat" and task != "multiclass":
            raise ConfigError("model.adversarial: vat compares the answers' class distributions: task multiclass")
        between_layers = {"dropout": dropout, "input_dropout": input_dropout, "batch_norm": batch_norm}
        self.net, self.adversarial = MLP(hidden_sizes, num_classes=self.task.outputs, **between_layers), adversarial
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.class_names = self.task.class_names(class_names or DIGITS)
        self.metrics = nn.ModuleDict(
            {stage: MetricCollection({"acc": accuracy(self.task), **self.task.metrics()}) for stage in ("val", "test")}
        )
        self.val_accuracy_best = MaxMetric()
        self.test_name = "test"  # what test results are logged as (`on_test_start`)

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        images, labels = batch
        outputs, targets = self(images), self.task.targets(labels)
        loss = self.task.loss(outputs, targets)
        self.log_training_loss(loss, outputs, labels)
        if self.adversarial:
            loss = loss + self.adversarial.penalty(self.net, images, outputs, targets, self.task.loss)
        return loss

    def setup(self, stage: str) -> None:
        # Before Lightning restores a resumed run (`--ckpt_path`), which then overrides these weights.
        if stage == "fit" and self.hparams.weights_from:
            saved = check_checkpoint(Path(self.hparams.weights_from), unsafe_option=None)["state_dict"]
            weights = {name.removeprefix("net."): value for name, value in saved.items() if name.startswith("net.")}
            check_fits(f"model.weights_from {self.hparams.weights_from}", weights, self.net.state_dict())
            self.net.load_state_dict(weights)

    def on_train_start(self) -> None:
        self.val_accuracy_best.reset()  # forget the sanity check's validation

    def on_train_epoch_end(self) -> None:
        # Under DDP every process trains on an equal share, so the mean over processes is the exact accuracy.
        self.log("train/acc", self.epoch_training_accuracy(), sync_dist=True)

    def _evaluate(self, batch: Batch, stage: str) -> dict[str, Tensor]:
        images, labels = batch
        outputs = self(images)
        loss = self.task.loss(outputs, self.task.targets(labels))
        name = self.test_name if stage == "test" else stage
        self.log(f"{name}/loss", loss, batch_size=len(labels), prog_bar=True, sync_dist=True)
        metrics = self.metrics[stage]
        predictions, targets = self.task.classes(outputs), self.task.class_targets(labels)
        metrics["acc"].update(predictions, targets)
        self.task.update_metrics({name: metric for name, metric in metrics.items() if name != "acc"}, outputs, labels)
        self.log_dict({f"{name}/{metric}": value for metric, value in metrics.items()}, prog_bar=stage == "val")
        # For callbacks (confusion matrices, misclassified digits): predicted and true class ids.
        return {"predictions": predictions, "targets": targets}

    def validation_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        return self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self.val_accuracy_best(self.metrics["val"]["acc"].compute())
        self.log_same_everywhere("val/acc_best", self.val_accuracy_best.compute())

    def on_test_start(self) -> None:
        # Scores on a data set of your own (your drawings) are logged under its name: never as the test images'.
        self.test_name = getattr(self.trainer.datamodule, "test_name", "test")

    def test_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        return self._evaluate(batch, "test")

    def predict_step(self, batch: Batch | Tensor, batch_idx: int) -> dict[str, Tensor]:
        """The predicted class of each image, with its class probabilities (classification) or value (regression)."""
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.task.predict(self(images))

    def __getstate__(self) -> dict:
        # A copy of the model (weight averaging keeps one) builds no optimizer; from the command line, the
        # factories refer back to the CLI and its trainer, which under DDP holds what cannot be copied.
        return {**super().__getstate__(), "optimizer_factory": None, "scheduler_factory": None}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        # Dropout draws its masks from torch's global random state, which Lightning's checkpoints leave
        # out: kept here, a resumed run draws the very masks an uninterrupted one would have.
        checkpoint["random_state"] = torch.get_rng_state()
        if self.device.type == "cuda":
            checkpoint["cuda_random_state"] = torch.cuda.get_rng_state(self.device)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "random_state" in checkpoint:
            torch.set_rng_state(checkpoint["random_state"])
        if "cuda_random_state" in checkpoint and self.device.type == "cuda":
            torch.cuda.set_rng_state(checkpoint["cuda_random_state"], self.device)

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        if self.hparams.max_norm:  # here, so that weight averaging (a callback after the step) averages limited weights
            self.net.limit_incoming_norms(self.hparams.max_norm)

    def configure_optimizers(self) -> torch.optim.Optimizer | OptimizerLRSchedulerConfig:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        schedule = self.scheduler_factory(optimizer, self.trainer.estimated_stepping_batches)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
