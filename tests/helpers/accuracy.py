"""The reference a multi-process run is held to: one process's test accuracy on the same checkpoint."""

import lightning as L

from mnist_ann.data import MNISTDataModule
from mnist_ann.model import MNISTClassifier


def single_process_test_accuracy(checkpoint, data_dir) -> float:
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    model = MNISTClassifier.load_from_checkpoint(checkpoint, weights_only=True)
    [metrics] = trainer.test(model, MNISTDataModule(data_dir, val_size=200), verbose=False)
    return metrics["test/acc"]
