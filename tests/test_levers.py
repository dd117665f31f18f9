"""The levers that make the network better: schedules, dropout, label smoothing, augmentation, weight averaging."""

import itertools

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback, EMAWeightAveraging

from mnist_ann.augment import Distortion
from mnist_ann.data import NORMALIZED_RANGE, MNISTDataModule
from mnist_ann.export import export
from mnist_ann.model import MNISTClassifier
from mnist_ann.network import MLP
from mnist_ann.schedules import OneCycle, WarmupCosine
from tests.helpers.accuracy import single_process_test_accuracy
from tests.helpers.commands import CONFIG, REPO, main_error, run_main, table_values
from tests.helpers.tensorboard import events

DISTORTION = Distortion(rotation=15, scale=0.15, shear=15, translation=0.1, elastic_alpha=34, elastic_sigma=4)
BACKGROUND = NORMALIZED_RANGE[0]


def rates(schedule, steps: int) -> list[float]:
    seen = []
    for _ in range(steps):
        seen.append(schedule.optimizer.param_groups[0]["lr"])
        schedule.optimizer.step()
        schedule.step()
    return seen


def sgd(lr=0.1):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr, momentum=0.9)


def test_one_cycle_climbs_to_its_peak_then_anneals_to_almost_nothing():
    seen = rates(OneCycle(sgd(), total_steps=100, max_lr=0.2, pct_start=0.25), 100)
    assert seen[0] == pytest.approx(0.2 / 25)
    assert max(seen) == pytest.approx(0.2) and seen.index(max(seen)) in (23, 24, 25)
    assert seen[-1] < 1e-4


def test_one_cycle_without_a_peak_peaks_at_the_optimizers_rate_for_sgd_and_adam():
    adam = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=0.001)
    for optimizer, rate in ((sgd(0.3), 0.3), (adam, 0.001)):
        assert max(rates(OneCycle(optimizer, total_steps=50), 50)) == pytest.approx(rate, rel=0.01)


def test_warmup_cosine_reaches_the_optimizers_rate_then_falls_to_the_final_ratio():
    seen = rates(WarmupCosine(sgd(0.1), total_steps=100, warmup=0.1, final_ratio=0.01), 100)
    assert seen[0] == pytest.approx(0.01) and seen[9] == pytest.approx(0.1)
    assert all(later <= earlier for earlier, later in itertools.pairwise(seen[9:]))
    assert seen[-1] == pytest.approx(0.001, rel=0.05)


def test_a_schedule_from_the_config_is_stepped_every_batch_and_logged_as_train_lr(
    synthetic_data_dir, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    run_main(
        monkeypatch,
        "fit",
        "--config",
        CONFIG,
        "--data.data_dir",
        str(synthetic_data_dir),
        "--data.val_size",
        "200",
        "--trainer.max_epochs",
        "2",
        "--trainer.log_every_n_steps",
        "1",
        "--model.scheduler",
        "mnist_ann.schedules.OneCycle",
        "--model.scheduler.max_lr",
        "0.05",
    )
    logged = [point.value for point in events(tmp_path / "lightning_logs" / "version_0").Scalars("train/lr")]
    assert len(logged) == 2 * 16  # one rate per step: 1,000 images in batches of 64, two epochs
    assert logged[0] == pytest.approx(0.05 / 25) and max(logged) == pytest.approx(0.05)
    assert logged[-1] < logged[0]


def test_dropout_is_on_while_training_and_off_at_evaluation():
    torch.manual_seed(0)
    network, images = MLP((64, 32), dropout=0.5, input_dropout=0.2), torch.randn(8, 1, 28, 28)
    network.train()
    assert not torch.equal(network(images), network(images))
    network.eval()
    without_dropout = torch.nn.Sequential(
        *[layer for layer in network.layers if not isinstance(layer, torch.nn.Dropout)]
    )
    torch.testing.assert_close(network(images), without_dropout(images), rtol=0, atol=0)


def incoming_norms(weights: torch.Tensor) -> torch.Tensor:
    return weights.norm(dim=1)


def test_max_norm_shortens_only_the_hidden_units_incoming_weights_that_are_too_long():
    network = MLP((16, 8))
    hidden, output = network.layers[1], network.layers[-1]
    with torch.no_grad():
        hidden.weight[:4] *= 100  # four units whose weights grew long
        output.weight.mul_(100)
    short_rows, output_before = hidden.weight[4:].clone(), output.weight.clone()
    network.limit_incoming_norms(1.0)
    torch.testing.assert_close(incoming_norms(hidden.weight[:4]), torch.ones(4))
    assert torch.equal(hidden.weight[4:], short_rows)
    assert torch.equal(output.weight, output_before)  # the output layer's units are not hidden units


def test_max_norm_holds_after_every_step_of_a_run_and_for_the_averaged_weights(synthetic_data_dir, tmp_path):
    L.seed_everything(0)
    limit = 0.3

    class Check(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            for name, weights in pl_module.named_parameters():
                if name in ("net.layers.1.weight", "net.layers.3.weight"):
                    assert incoming_norms(weights).max() <= limit + 1e-5, (batch_idx, name)

    trainer = L.Trainer(
        max_epochs=1,
        default_root_dir=tmp_path,
        logger=False,
        enable_progress_bar=False,
        callbacks=[Check(), EMAWeightAveraging(decay=0.9, use_buffers=False)],
    )
    model = MNISTClassifier(hidden_sizes=[32, 16], max_norm=limit, optimizer=lambda p: torch.optim.SGD(p, lr=1.0))
    trainer.fit(model, MNISTDataModule(synthetic_data_dir, val_size=200))
    averaged = torch.load(trainer.checkpoint_callback.best_model_path, weights_only=True)["state_dict"]
    assert incoming_norms(averaged["net.layers.1.weight"]).max() <= limit + 1e-5  # an average of limited rows
    assert incoming_norms(averaged["net.layers.1.weight"]).max() > limit * 0.9  # and the limit was reached


def test_label_smoothing_is_the_smoothed_cross_entropy_and_only_for_ten_classes(monkeypatch, synthetic_data_dir):
    model, logits, labels = MNISTClassifier(label_smoothing=0.1), torch.randn(4, 10), torch.tensor([0, 3, 5, 9])
    torch.testing.assert_close(model.task.loss(logits, labels), F.cross_entropy(logits, labels, label_smoothing=0.1))
    message = main_error(monkeypatch, "fit", "--model.task", "binary", "--model.label_smoothing", "0.1")
    assert message == "error: model: label smoothing is for the multiclass task's cross-entropy, not binary"


def test_every_lever_is_an_option_that_help_describes(capsys, monkeypatch):
    with pytest.raises(SystemExit):
        run_main(monkeypatch, "fit", "--help")
    shown = capsys.readouterr().out
    for option in ("scheduler", "dropout", "input_dropout", "max_norm", "label_smoothing"):
        assert f"--model.{option}" in shown
    for option in ("rotation", "scale", "shear", "translation", "elastic_alpha", "elastic_sigma"):
        assert f"--data.augmentation.{option}" in shown


# Augmentation


def test_no_distortion_leaves_images_as_they_are_and_the_background_stays_background():
    images = torch.rand(4, 1, 28, 28) * 2 - 1
    generator = torch.Generator().manual_seed(0)
    torch.testing.assert_close(Distortion()(images, BACKGROUND, generator), images, rtol=0, atol=1e-5)
    blank = torch.full((4, 1, 28, 28), BACKGROUND)
    torch.testing.assert_close(DISTORTION(blank, BACKGROUND, generator), blank)


def test_each_image_gets_its_own_distortion_and_a_seed_repeats_them():
    image = torch.zeros(1, 1, 28, 28) + BACKGROUND
    image[..., 8:20, 12:16] = 1.0  # a thick "1"
    batch = image.repeat(6, 1, 1, 1)
    first = DISTORTION(batch, BACKGROUND, torch.Generator().manual_seed(1))
    again = DISTORTION(batch, BACKGROUND, torch.Generator().manual_seed(1))
    other = DISTORTION(batch, BACKGROUND, torch.Generator().manual_seed(2))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert len({tuple(picture.flatten().tolist()) for picture in first}) == 6


class Batches(Callback):
    """The batches each stage's steps receive (after the data module's hooks)."""

    def __init__(self) -> None:
        self.seen = {"train": [], "val": [], "test": [], "predict": []}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen["train"].append(batch[0].clone())

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.seen["val"].append(batch[0].clone())

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.seen["test"].append(batch[0].clone())

    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.seen["predict"].append(batch[0].clone())


def batches_of_a_run(data_dir, root, augmentation: Distortion, seed: int = 0) -> dict[str, list[torch.Tensor]]:
    L.seed_everything(seed)
    batches = Batches()
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=3,
        default_root_dir=root,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=[batches],
    )
    model, data = MNISTClassifier(hidden_sizes=[16]), MNISTDataModule(data_dir, val_size=200, augmentation=augmentation)
    trainer.fit(model, data)
    trainer.test(model, data, verbose=False)
    trainer.predict(model, data)
    return batches.seen


def test_augmentation_changes_training_images_and_never_validation_test_or_predict_images(synthetic_data_dir, tmp_path):
    plain = batches_of_a_run(synthetic_data_dir, tmp_path, Distortion())
    augmented = batches_of_a_run(synthetic_data_dir, tmp_path, DISTORTION)
    again = batches_of_a_run(synthetic_data_dir, tmp_path, DISTORTION)
    other_seed = batches_of_a_run(synthetic_data_dir, tmp_path, DISTORTION, seed=1)
    assert all(not torch.equal(a, b) for a, b in zip(plain["train"], augmented["train"], strict=True))
    for stage in ("val", "test", "predict"):
        assert all(torch.equal(a, b) for a, b in zip(plain[stage], augmented[stage], strict=True)), stage
    assert all(torch.equal(a, b) for a, b in zip(augmented["train"], again["train"], strict=True))
    assert not torch.equal(augmented["train"][0], other_seed["train"][0])


class FakeTrainer:
    """The little of a trainer that `setup` reads: where the data goes, and which process this is."""

    def __init__(self, rank: int) -> None:
        self.global_rank, self.training, self.predicting = rank, True, False
        self.strategy = type("Strategy", (), {"root_device": torch.device("cpu")})()


def test_each_process_of_a_run_draws_its_own_distortions(synthetic_data_dir):
    batch = torch.zeros(4, 1, 28, 28) + BACKGROUND, torch.arange(4)
    batch[0][..., 8:20, 12:16] = 1.0
    distorted = []
    for rank in (0, 1):
        L.seed_everything(0)
        data = MNISTDataModule(synthetic_data_dir, val_size=200, augmentation=DISTORTION)
        data.trainer = FakeTrainer(rank)
        data.setup("fit")
        distorted.append(data.on_after_batch_transfer(batch, 0)[0])
    assert not torch.equal(*distorted)


# Weight averaging


def test_weight_averaging_checkpoints_hold_the_averaged_weights_that_test_and_export_use(synthetic_data_dir, tmp_path):
    L.seed_everything(0)
    averaging = EMAWeightAveraging(decay=0.9, use_buffers=False)
    trainer = L.Trainer(
        max_epochs=2, default_root_dir=tmp_path, logger=False, enable_progress_bar=False, callbacks=[averaging]
    )
    data = MNISTDataModule(synthetic_data_dir, val_size=200)
    trainer.fit(MNISTClassifier(hidden_sizes=[32]), data)
    checkpoint = torch.load(trainer.checkpoint_callback.best_model_path, weights_only=True)
    averaged, current = checkpoint["state_dict"], checkpoint["current_model_state"]
    assert not torch.equal(averaged["net.layers.1.weight"], current["net.layers.1.weight"])

    restored = MNISTClassifier.load_from_checkpoint(trainer.checkpoint_callback.best_model_path, weights_only=True)
    torch.testing.assert_close(restored.state_dict()["net.layers.1.weight"], averaged["net.layers.1.weight"])
    tested = L.Trainer(logger=False, enable_progress_bar=False).test(restored, data, verbose=False)[0]["test/acc"]
    by_hand = MNISTClassifier(hidden_sizes=[32])
    by_hand.load_state_dict(averaged)
    images, labels = data.splits["test"]
    by_hand.eval()
    assert tested == pytest.approx((by_hand(images).argmax(1) == labels).float().mean().item())

    program = torch.export.load(export(trainer.checkpoint_callback.best_model_path, str(tmp_path / "out"), False)[0])
    torch.testing.assert_close(program.module()(images[:50]), by_hand(images[:50]))  # export: the averaged weights


# The recipes


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["fast.yaml", "best.yaml", "best-augmented.yaml"])
def test_a_best_recipe_runs_as_users_run_it_and_tests_its_averaged_weights(
    recipe, synthetic_data_dir, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    configs = ["--config", CONFIG, "--config", str(REPO / "configs" / recipe)]
    data = ["--data.data_dir", str(synthetic_data_dir), "--data.val_size", "200"]
    run_main(monkeypatch, "fit", *configs, *data, "--trainer.max_epochs", "2", "--trainer.log_every_n_steps", "2")
    capsys.readouterr()
    run_main(monkeypatch, "test", *configs, *data, "--ckpt_path", "best")
    best = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "best.ckpt"
    assert "current_model_state" in torch.load(best, weights_only=True)  # trained with weight averaging
    tested = table_values(capsys.readouterr().out, "test/acc")
    assert tested == [single_process_test_accuracy(best, synthetic_data_dir)]
