"""The recipe on the real MNIST files (../shared/data or $MNIST_ANN_DATA_DIR); skipped where they are absent."""

import lightning as L
import pytest

from mnist_ann.data import MNISTDataModule
from mnist_ann.model import MNISTClassifier


@pytest.mark.slow
def test_two_epochs_of_the_recipe_reach_95_percent(real_data_dir, tmp_path):
    # One epoch of this recipe measures 92.8-93.7% test accuracy here, short of the 95% bar; two clear it.
    L.seed_everything(42)
    trainer = L.Trainer(max_epochs=2, default_root_dir=tmp_path, logger=False, enable_progress_bar=False)
    model, data = MNISTClassifier(), MNISTDataModule(real_data_dir, download=False)
    trainer.fit(model, data)
    [metrics] = trainer.test(model, data)
    assert len(data.splits["test"][0]) == 10_000
    assert metrics["test/acc"] >= 0.95, metrics
