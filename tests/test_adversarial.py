"""The frontier's levers: (virtual) adversarial training (`mnist_ann.adversarial`) and batch normalization
(`mnist_ann.network`). Resuming exactly with them, on one process and under DDP: `LEVERS` in
tests/helpers/commands.py, run by test_interruptions.py and test_ddp.py; exporting a batch-normalized
network: test_export.py."""

import lightning as L
import pytest
import torch
from torch import nn

from mnist_ann.adversarial import Adversarial
from mnist_ann.data import MNISTDataModule, normalize
from mnist_ann.errors import ConfigError
from mnist_ann.idx import load_split
from mnist_ann.model import MNISTClassifier
from mnist_ann.network import MLP
from mnist_ann.tasks import make_task
from tests.helpers.accuracy import fit
from tests.helpers.commands import CONFIG, main_error


def batch(synthetic_data_dir, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = load_split(synthetic_data_dir, train=True)
    return normalize(images[:size]), labels[:size]


def test_vats_penalty_is_zero_for_a_constant_network_and_positive_otherwise(synthetic_data_dir):
    images, _ = batch(synthetic_data_dir)
    torch.manual_seed(0)
    net = MLP()
    vat = Adversarial(kind="vat", epsilon=2.0)
    assert vat.penalty(net, images, net(images), None, None) > 0
    with torch.no_grad():
        net.linear_layers()[0].weight.zero_()  # the first layer sees nothing: every image gets the same answer
    assert vat.penalty(net, images, net(images), None, None) == 0


def test_fgsm_moves_each_pixel_by_epsilon_the_way_that_raises_the_loss(synthetic_data_dir):
    images, labels = batch(synthetic_data_dir)
    torch.manual_seed(0)
    net, task = MLP(), make_task("multiclass", "0", 0.0)
    clean = task.loss(net(images), labels)
    fgsm = Adversarial(kind="fgsm", epsilon=0.1, weight=0.5)
    penalty = fgsm.penalty(net, images, net(images), labels, task.loss)
    moved = images.clone().requires_grad_()
    task.loss(net(moved), labels).backward()
    worst = task.loss(net(images + 0.1 * moved.grad.sign()), labels)
    assert penalty.item() == pytest.approx(0.5 * worst.item()) and worst > clean


def fitted(synthetic_data_dir, **settings) -> MNISTClassifier:
    return fit(MNISTDataModule(synthetic_data_dir, val_size=200), epochs=1, seed=3, **settings)


@pytest.mark.parametrize("kind", ["vat", "fgsm"])
def test_adversarial_training_changes_the_training_only_and_the_seed_repeats_it(synthetic_data_dir, kind):
    adversarial = Adversarial(kind=kind, epsilon=0.1 if kind == "fgsm" else 2.0)
    plain = fitted(synthetic_data_dir)
    first, again = (
        fitted(synthetic_data_dir, adversarial=adversarial),
        fitted(synthetic_data_dir, adversarial=adversarial),
    )
    assert not torch.equal(plain.net.layers[1].weight, first.net.layers[1].weight)  # it trained otherwise
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values(), strict=True))

    # Evaluation never sees moved images: the same weights score the same with and without the lever.
    plain.net.load_state_dict(first.net.state_dict())
    trainer = L.Trainer(logger=False, enable_progress_bar=False)
    data = MNISTDataModule(synthetic_data_dir, val_size=200)
    assert trainer.validate(plain, data, verbose=False) == trainer.validate(first, data, verbose=False)


def test_vat_on_a_task_without_class_distributions_is_one_message():
    with pytest.raises(ConfigError, match=r"model\.adversarial: vat compares the answers' class distributions"):
        MNISTClassifier(task="regression", adversarial=Adversarial(kind="vat"))


def test_batch_norm_standardizes_over_the_batch_in_training_and_by_its_running_statistics_after(synthetic_data_dir):
    images, _ = batch(synthetic_data_dir, 64)
    torch.manual_seed(0)
    net = MLP(batch_norm=True)
    assert [type(layer) for layer in net.layers[1:4]] == [nn.Linear, nn.BatchNorm1d, nn.ReLU]
    net.train()
    alone, together = net(images[:8])[0], net(images)[0]
    assert not torch.allclose(alone, together)  # in training, an image's answer depends on its batch
    net.eval()
    alone, together = net(images[:8])[0], net(images)[0]
    torch.testing.assert_close(alone, together)  # at evaluation, on the statistics it kept
    norm = net.layers[2]
    features = net.layers[1](images[:1].flatten(1))
    expected = (features - norm.running_mean) / (norm.running_var + norm.eps).sqrt() * norm.weight + norm.bias
    torch.testing.assert_close(net.layers[2](features), expected)


def test_batch_norm_under_weight_averaging_without_buffers_is_refused_before_training(
    synthetic_data_dir, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    averaging = ["--trainer.callbacks+=EMAWeightAveraging", "--trainer.callbacks.use_buffers=false"]
    args = ["fit", "--config", CONFIG, "--model.batch_norm=true", *averaging, "--data.data_dir"]
    message = main_error(monkeypatch, *args, str(synthetic_data_dir), "--data.val_size=200")
    assert "model.batch_norm: weight averaging must average the buffers too (use_buffers: true)" in message
    assert not (tmp_path / "lightning_logs").exists()
