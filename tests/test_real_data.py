"""The recipe on the real MNIST files (../shared/data or $MNIST_ANN_DATA_DIR)."""

import lightning as L
import pytest

from mnist_ann.data import MNISTDataModule
from mnist_ann.model import MNISTClassifier


@pytest.mark.slow
def test_two_epochs_of_the_recipe_reach_95_percent(recipe_checkpoint, real_data_dir):
    # One epoch of this recipe measures 92.8-93.7% test accuracy here, short of the 95% bar; two clear it.
    trainer = L.Trainer(logger=False, enable_progress_bar=False)
    model = MNISTClassifier.load_from_checkpoint(recipe_checkpoint, weights_only=True)
    data = MNISTDataModule(real_data_dir, download=False)
    [metrics] = trainer.test(model, data, verbose=False)
    assert len(data.splits["test"][0]) == 10_000
    assert metrics["test/acc"] >= 0.95, metrics
