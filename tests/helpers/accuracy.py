"""Models trained and measured in this process: a short seeded fit, and one process's test accuracy on a
checkpoint (the reference a multi-process run is held to)."""

from pathlib import Path

import lightning as L

from mnist_ann.data import MNISTDataModule
from mnist_ann.model import MNISTClassifier


def single_process_test_accuracy(checkpoint, data_dir) -> float:
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    model = MNISTClassifier.load_from_checkpoint(checkpoint, weights_only=True)
    [metrics] = trainer.test(model, MNISTDataModule(data_dir, val_size=200), verbose=False)
    return metrics["test/acc"]


def fit(datamodule: MNISTDataModule, epochs: int = 2, seed: int = 0, checkpoint: Path | None = None, **settings):
    """The model of `settings` trained `epochs` on `datamodule` from `seed`, saved to `checkpoint` if given."""
    L.seed_everything(seed)
    model = MNISTClassifier(**settings)
    trainer = L.Trainer(max_epochs=epochs, logger=False, enable_progress_bar=False, enable_checkpointing=False)
    trainer.fit(model, datamodule)
    if checkpoint is not None:
        trainer.save_checkpoint(checkpoint)
    return model
