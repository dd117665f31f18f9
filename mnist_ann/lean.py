"""What keeps Lightning's own per-step cost small for a network whose step is half a millisecond.

None of this changes what is computed or logged; each measure only does the same bookkeeping more
cheaply (`benchmarks/lean.py` measures each by undoing it). `mnist_ann.model` makes one call to it per
training step, `log_training_loss`, where the textbook writes `self.log("train/loss", loss)`: the
model is the lesson, this module is the engineering.
"""

from contextlib import nullcontext

import lightning as L
import torch
from lightning.pytorch.profilers import PassThroughProfiler
from torch import Tensor

from mnist_ann.errors import TrainingDivergedError


class LeanLightningModule(L.LightningModule):
    """A LightningModule whose training loss and accuracy are counted on the device, for a module with a
    `task` (`mnist_ann.tasks`), and which stops a run whose loss or weights stop being finite.

    - Running training loss: summed on the device and logged once per window of
      `trainer.log_every_n_steps` steps, instead of a `self.log` call every step.
    - Training accuracy: correct predictions and images are summed into two device counters per
      step and divided once per epoch, instead of a torchmetrics update every step.

    What each saves is measured by `benchmarks/lean.py` (`benchmarks/README.md`).

    The counters are buffers, so checkpoints carry them and a resumed run logs what an uninterrupted one does.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("train_correct", torch.zeros((), dtype=torch.long))
        self.register_buffer("train_seen", torch.zeros((), dtype=torch.long))
        self.register_buffer("running_loss", torch.zeros(()))

    def log_training_loss(self, loss: Tensor, outputs: Tensor, labels: Tensor) -> None:
        """What `self.log("train/loss", loss, prog_bar=True)` shows, logged once per window with the
        learning rate of the window's last step; training accuracy counted; a run whose loss or weights
        are no longer finite stopped before it logs them."""
        predicted, target = self.task.classes(outputs.detach()), self.task.class_targets(labels)
        if (running_loss := self.count_training_step(loss, predicted, target)) is not None:
            self.check_finite(running_loss)
            self.log("train/loss", running_loss, prog_bar=True, sync_dist=True)
            self.log_same_everywhere("train/lr", self.optimizers().param_groups[0]["lr"])

    def count_training_step(self, loss: Tensor, predicted: Tensor, target: Tensor) -> Tensor | None:
        """Add one step to the counters; at the end of each logging window, the window's mean loss."""
        self.train_correct.add_((predicted == target).sum())
        self.train_seen.add_(len(target))
        self.running_loss.add_(loss.detach())
        window = self.trainer.log_every_n_steps
        if not window or (self.global_step + 1) % window:
            return None
        mean = self.running_loss / window
        self.running_loss.zero_()
        return mean

    def epoch_training_accuracy(self) -> Tensor:
        """The share of this epoch's training images predicted right; the counters restart."""
        accuracy = self.train_correct / self.train_seen
        self.train_correct.zero_()
        self.train_seen.zero_()
        return accuracy

    def check_finite(self, loss: Tensor) -> None:
        """Stop a run whose loss or weights are no longer finite numbers, before it logs or saves them
        (the command line adds which checkpoint was kept)."""
        if not (torch.isfinite(loss) and all(torch.isfinite(p).all() for p in self.parameters())):
            raise TrainingDivergedError(
                f"training diverged by step {self.global_step + 1}: the loss or the weights became NaN or "
                "infinite (is the learning rate too high?). Stopped without saving them"
            )

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        self.check_finite(self.running_loss)

    def log_same_everywhere(self, name: str, value: Tensor | float) -> None:
        """Log a value that every process already holds (the learning rate, or one computed from metrics
        torchmetrics has synchronized): without a collective of its own. Under DDP a synchronized copy of it
        is what broke a resumed run: the processes' logged results differ after a mid-epoch restart, and
        their collectives then no longer paired up."""
        self.log(name, value, sync_dist=False)


class NoProfiler(PassThroughProfiler):
    """The CLI's default profiler: like Lightning's default, it records nothing, only cheaper.

    Lightning wraps each of its ~60 hook calls per training step in `profiler.profile(...)`; its
    default's is a generator-based context manager, this one a plain `nullcontext`.
    `--trainer.profiler simple` (or `advanced`, `pytorch`) still profiles a run.
    """

    def profile(self, action_name: str) -> nullcontext:
        return nullcontext(action_name)
