"""What each measure in `mnist_ann.lean` saves: a training step of the default fit, with each one undone.

Runs the default config (its callbacks, progress bar and TensorBoard included) in this process on
the real MNIST, training only (no validation, so that training steps are what is timed), and times
each epoch after the first. Each variant undoes one measure the way one would write it without
`mnist_ann.lean`:

- (the other way) `_current_fx_name`, which Lightning writes about 40 times a step, stored past
  nn.Module.__setattr__'s checks: a measure `mnist_ann.lean` does not take, since the attribute is
  Lightning's private one.
- torchmetrics accuracy: training accuracy as a MulticlassAccuracy updated every step.
- loss logged per step: `self.log("train/loss", loss)` every step, Lightning averaging the window.
- Lightning's profiler: the PassThroughProfiler Lightning uses by default, instead of NoProfiler.

    python benchmarks/lean.py --data-dir ../shared/data [--rounds 5] [--epochs 3]

Rounds interleave the variants; each variant's figure is its fastest epoch, and the share is
(variant - lean) / variant: how much of that variant's step the measure saves (negative for the
variant that takes a measure `mnist_ann.lean` does not: what leaving it out costs).
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
from lightning.pytorch.profilers import PassThroughProfiler
from torchmetrics.classification import MulticlassAccuracy

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mnist_ann.cli import MNISTCLI  # noqa: E402
from mnist_ann.model import MNISTClassifier  # noqa: E402


class PrivateAttributeStoredDirectly(MNISTClassifier):
    def __setattr__(self, name, value):
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)


class TorchmetricsAccuracy(MNISTClassifier):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.train_accuracy = MulticlassAccuracy(10)

    def count_training_step(self, loss, predicted, target):
        self.train_accuracy.update(predicted, target)
        self.running_loss.add_(loss.detach())
        window = self.trainer.log_every_n_steps
        if (self.global_step + 1) % window:
            return None
        mean = self.running_loss / window
        self.running_loss.zero_()
        return mean

    def epoch_training_accuracy(self):
        accuracy = self.train_accuracy.compute()
        self.train_accuracy.reset()
        return accuracy


class LossLoggedPerStep(MNISTClassifier):
    def count_training_step(self, loss, predicted, target):
        self.train_correct.add_((predicted == target).sum())
        self.train_seen.add_(len(target))
        self.log("train/loss", loss, prog_bar=True)
        return None


class EpochTimer(L.Callback):
    def __init__(self):
        self.seconds = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        self.seconds.append(time.perf_counter() - self.start)


def epoch_seconds(model_class, profiler: bool, data_dir: str, epochs: int, logs: str) -> tuple[float, int]:
    """The fastest training epoch after the first, and the steps in an epoch."""
    args = ["--config", str(ROOT / "configs" / "default.yaml"), "--data.data_dir", data_dir]
    args += [
        "--trainer.max_epochs",
        str(epochs),
        "--trainer.limit_val_batches",
        "0",
        "--trainer.logger.init_args.save_dir",
        logs,
    ]
    cli = MNISTCLI(args=args, run=False)
    if profiler:
        cli.trainer.profiler = PassThroughProfiler()
    model = model_class(**{k: v for k, v in cli.model.hparams.items() if not k.startswith("_")})
    timer = EpochTimer()
    cli.trainer.callbacks.append(timer)
    cli.trainer.fit(model, cli.datamodule)
    return min(timer.seconds[1:]), cli.trainer.num_training_batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    variants = {
        "lean (as shipped)": (MNISTClassifier, False),
        "private attribute stored directly": (PrivateAttributeStoredDirectly, False),
        "torchmetrics training accuracy": (TorchmetricsAccuracy, False),
        "loss logged every step": (LossLoggedPerStep, False),
        "Lightning's default profiler": (MNISTClassifier, True),
    }
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as logs:
        for round_ in range(args.rounds):
            for name, (model_class, profiler) in variants.items():
                wall, steps = epoch_seconds(model_class, profiler, args.data_dir, args.epochs, logs)
                seconds[name].append(wall)
            print(f"round {round_ + 1}: " + ", ".join(f"{v[-1]:.2f}" for v in seconds.values()), file=sys.stderr)
    lean = seconds["lean (as shipped)"]
    print(
        f"\n{'variant':<34}{'ms/step':>9}{'saved':>8}  (fastest epoch of {args.rounds} rounds; saved: median per round)"
    )
    for name, walls in seconds.items():
        saved = statistics.median((wall - base) / wall for wall, base in zip(walls, lean, strict=True))
        print(f"{name:<34}{min(walls) / steps * 1000:>9.3f}{'' if walls is lean else f'{saved:>8.1%}'}")


if __name__ == "__main__":
    main()
