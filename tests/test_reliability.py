"""What users can get wrong or lose: configs, diverging runs, crashes, untrusted checkpoints."""

import os

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint

from mnist_ann.data import MNISTDataModule
from mnist_ann.errors import TrainingDivergedError
from mnist_ann.model import MNISTClassifier
from tests.conftest import CONFIG, main_error, run_main

# Bad configuration: refused before any training, with one message naming the option.


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--data.batch_size", "0", 'Parser key "data.batch_size":\n  Not of type PositiveInt'),
        ("--data.batch_size", "many", 'Parser key "data.batch_size":\n  Not of type PositiveInt'),
        ("--data.eval_batch_size", "-1", 'Parser key "data.eval_batch_size":\n  Not of type PositiveInt'),
        ("--data.val_size", "-1", 'Parser key "data.val_size":\n  Not of type NonNegativeInt'),
        ("--model.hidden_sizes", "[128, 0]", 'Parser key "model.hidden_sizes":\n  Not of type PositiveInt'),
        ("--model.task", "ranking", "Parser key \"model.task\":\n  Expected a typing.Literal['multiclass'"),
        ("--model.positive", "odd", "Parser key \"model.positive\":\n  Expected a typing.Literal['0'"),
        ("--trainer.max_epoks", "3", "unrecognized arguments: --trainer.max_epoks 3"),
    ],
)
def test_the_parser_refuses_bad_options_with_one_error_naming_them(
    tmp_path, monkeypatch, capsys, option, value, message
):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        run_main(monkeypatch, "fit", "--config", CONFIG, option, value)
    assert exit_.value.code == 2
    printed = capsys.readouterr().err
    assert (
        printed
        == f"tip: For details of accepted options run: mnist-ann fit --help\nerror: {message}"
        + printed.split(message, 1)[1]
    )
    assert not (tmp_path / "lightning_logs").exists()  # nothing ran, nothing was written


@pytest.mark.parametrize(
    ("option", "value", "named"),
    [
        ("--model.optimizer.init_args.lr", "-0.1", "model.optimizer: Invalid learning rate: -0.1"),
        ("--model.optimizer.init_args.lr", "0", "model.optimizer: the learning rate must be positive, got 0"),
    ],
)
def test_bad_values_are_refused_before_training(synthetic_data_dir, tmp_path, monkeypatch, option, value, named):
    monkeypatch.chdir(tmp_path)
    args = ["fit", "--config", CONFIG, "--data.data_dir", str(synthetic_data_dir), option, value]
    assert named in main_error(monkeypatch, *args)
    assert not (tmp_path / "lightning_logs").exists()  # nothing ran, nothing was written


def test_data_dir_that_is_a_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("")
    assert "data.data_dir" in main_error(monkeypatch, "fit", "--config", CONFIG, "--data.data_dir", "afile")


# Diverging training stops with a clear message and never saves non-finite weights.


def test_diverging_run_stops_and_keeps_the_last_good_checkpoint(synthetic_data_dir, tmp_path):
    L.seed_everything(0)
    model = MNISTClassifier(optimizer=lambda params: torch.optim.SGD(params, lr=1e3))
    every_step = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=1, save_top_k=0, save_last=True)
    trainer = L.Trainer(
        max_epochs=2, logger=False, enable_progress_bar=False, callbacks=[every_step], log_every_n_steps=5
    )
    with pytest.raises(TrainingDivergedError, match=r"diverged by step \d+: .* last good checkpoint is .*last\.ckpt"):
        trainer.fit(model, MNISTDataModule(synthetic_data_dir, val_size=200))
    kept = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert kept["global_step"] >= 1
    assert all(torch.isfinite(tensor).all() for tensor in kept["state_dict"].values())


def test_diverging_run_through_the_command_line(synthetic_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["fit", "--config", CONFIG, "--data.data_dir", str(synthetic_data_dir), "--data.val_size", "200"]
    message = main_error(
        monkeypatch, *args, "--model.optimizer.init_args.lr", "1e3", "--trainer.log_every_n_steps", "5"
    )
    assert "training diverged" in message and "learning rate" in message


# Untrusted and broken checkpoints.


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_that_would_run_code_is_refused_unrun(synthetic_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    marker, evil = tmp_path / "pwned", tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": RunsCode(marker)}, evil)
    args = ["test", "--config", CONFIG, "--data.data_dir", str(synthetic_data_dir), "--ckpt_path", str(evil)]
    assert f"refusing to load {evil}: it would call posix.system when loaded" in main_error(monkeypatch, *args)
    assert not marker.exists()


def test_truncated_checkpoint_is_one_clear_message(synthetic_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    broken = tmp_path / "broken.ckpt"
    torch.save({"state_dict": MNISTClassifier().state_dict()}, broken)
    broken.write_bytes(broken.read_bytes()[:1000])
    args = ["test", "--config", CONFIG, "--data.data_dir", str(synthetic_data_dir), "--ckpt_path", str(broken)]
    assert f"cannot read checkpoint {broken}" in main_error(monkeypatch, *args)


# Reproducibility.


def fit_in_process(data_dir, root, epochs=2):
    L.seed_everything(123)
    trainer = L.Trainer(max_epochs=epochs, default_root_dir=root, enable_progress_bar=False, logger=False)
    model = MNISTClassifier()
    trainer.fit(model, MNISTDataModule(data_dir, val_size=200))
    return model.state_dict(), {name: value.item() for name, value in trainer.callback_metrics.items()}


def test_same_config_and_seed_give_identical_weights_and_metrics(synthetic_data_dir, tmp_path):
    first, second = (
        fit_in_process(synthetic_data_dir, tmp_path / "a"),
        fit_in_process(synthetic_data_dir, tmp_path / "b"),
    )
    assert first[1] == second[1]
    assert first[0].keys() == second[0].keys()
    assert all(torch.equal(first[0][name], second[0][name]) for name in first[0])


def test_the_seed_is_recorded_with_the_run(synthetic_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = ["--data.data_dir", str(synthetic_data_dir), "--data.val_size", "200"]
    run_main(monkeypatch, "fit", "--config", CONFIG, *data, "--trainer.max_epochs", "1", "--seed_everything", "true")
    seed = yaml.safe_load((tmp_path / "lightning_logs" / "version_0" / "config.yaml").read_text())["seed_everything"]
    assert isinstance(seed, int) and not isinstance(seed, bool)
