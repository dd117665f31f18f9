import lightning as L
import torch
import torch.nn.functional as F

from mnist_ann.data import MNISTDataModule
from mnist_ann.loader import EpochBatchSampler, TensorLoader
from mnist_ann.model import MNISTClassifier


def fixed_batch(size=64):
    generator = torch.Generator().manual_seed(0)
    return torch.randn(size, 1, 28, 28, generator=generator), torch.randint(0, 10, (size,), generator=generator)


def test_default_optimizer_is_the_recipe_sgd():
    optimizer = MNISTClassifier().configure_optimizers()
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.defaults["lr"] == 0.01 and optimizer.defaults["momentum"] == 0.9


def test_one_optimization_step_lowers_the_loss_on_a_fixed_batch(tmp_path):
    torch.manual_seed(0)
    model = MNISTClassifier()
    images, labels = fixed_batch()
    before = F.cross_entropy(model(images), labels).item()
    trainer = L.Trainer(max_steps=1, default_root_dir=tmp_path, logger=False, enable_progress_bar=False)
    trainer.fit(model, train_dataloaders=TensorLoader(images, labels, EpochBatchSampler(len(images), len(images))))
    assert trainer.global_step == 1
    assert F.cross_entropy(model(images), labels).item() < before


def test_predict_step_gives_probabilities_and_digits():
    output = MNISTClassifier().predict_step(fixed_batch(8), 0)
    assert output["probabilities"].shape == (8, 10)
    torch.testing.assert_close(output["probabilities"].sum(dim=1), torch.ones(8))
    assert torch.equal(output["classes"], output["probabilities"].argmax(dim=1))


def test_checkpoint_alone_rebuilds_the_model_and_its_predictions(synthetic_data_dir, tmp_path):
    L.seed_everything(0)
    model = MNISTClassifier(hidden_sizes=[32, 16])
    trainer = L.Trainer(max_epochs=1, default_root_dir=tmp_path, logger=False, enable_progress_bar=False)
    trainer.fit(model, MNISTDataModule(synthetic_data_dir, val_size=200))
    checkpoint = tmp_path / "model.ckpt"
    trainer.save_checkpoint(checkpoint)

    restored = MNISTClassifier.load_from_checkpoint(checkpoint, weights_only=True)
    assert list(restored.hparams.hidden_sizes) == [32, 16]
    images, _ = fixed_batch()
    model.eval()
    torch.testing.assert_close(restored(images), model(images), rtol=0, atol=0)
