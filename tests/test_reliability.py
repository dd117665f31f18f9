"""What users can get wrong or lose: configs, data files, diverging runs, crashes, untrusted checkpoints."""

import os
import shutil
import signal
import subprocess
import sys
import warnings

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint

from mnist_ann.__main__ import main
from mnist_ann.cli import MNISTCLI
from mnist_ann.data import ChecksumWarning, MNISTDataModule, load_split, raw_folder
from mnist_ann.errors import DataError, TrainingDivergedError
from mnist_ann.model import MNISTClassifier
from tests.conftest import REPO
from tests.idx import write_idx, write_mnist

CONFIG = str(REPO / "configs" / "default.yaml")


def run_main(monkeypatch, *args: str) -> str:
    """Run the real entry point in this process; return what it printed as its error."""
    monkeypatch.setattr(sys, "argv", ["mnist-ann", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code != 0
    return str(exit_.value.code)


# Bad configuration: refused before any training, with one message naming the option.


@pytest.mark.parametrize(
    ("option", "value", "named"),
    [
        ("--data.batch_size", "0", "data.batch_size must be a positive integer"),
        ("--data.eval_batch_size", "-1", "data.eval_batch_size must be a positive integer"),
        ("--data.val_size", "60000", "data.val_size must be between 0 and 59999"),
        ("--model.hidden_sizes", "[128, 0]", "model.hidden_sizes must be positive integers"),
        ("--model.task", "ranking", "model.task must be one of multiclass, binary, regression"),
        ("--model.positive", "odd", "model.positive must be a digit 0-9 or `even`"),
        ("--model.optimizer.init_args.lr", "-0.1", "model.optimizer: Invalid learning rate: -0.1"),
        ("--model.optimizer.init_args.lr", "0", "model.optimizer: the learning rate must be positive, got 0"),
    ],
)
def test_bad_values_are_refused_before_training(synthetic_data_dir, tmp_path, monkeypatch, option, value, named):
    monkeypatch.chdir(tmp_path)
    args = ["fit", "--config", CONFIG, "--data.data_dir", str(synthetic_data_dir), option, value]
    assert named in run_main(monkeypatch, *args)
    assert not (tmp_path / "lightning_logs").exists()  # nothing ran, nothing was written


def test_data_dir_that_is_a_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("")
    assert "data.data_dir" in run_main(monkeypatch, "fit", "--config", CONFIG, "--data.data_dir", "afile")


@pytest.mark.parametrize(
    ("args", "named"),
    [(["--trainer.max_epoks", "3"], "max_epoks"), (["--data.batch_size", "many"], "batch_size")],
)
def test_unknown_options_and_wrong_types_are_refused_by_the_parser(tmp_path, monkeypatch, capsys, args, named):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["mnist-ann", "fit", "--config", CONFIG, *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    assert named in capsys.readouterr().err


# Bad data files: one clear error naming the file and the problem.


@pytest.fixture
def data_copy(synthetic_data_dir, tmp_path):
    return shutil.copytree(synthetic_data_dir, tmp_path / "data")


def test_truncated_file(data_copy):
    path = raw_folder(data_copy) / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DataError, match=rf"{path}: 5000 bytes, but its header announces .* it is truncated"):
        load_split(data_copy, train=True)


def test_wrong_magic_number(data_copy):
    path = raw_folder(data_copy) / "t10k-labels-idx1-ubyte"
    path.write_bytes(b"\x1f\x8b\x08\x00" + path.read_bytes()[4:])  # a gzip header where IDX's should be
    with pytest.raises(DataError, match=rf"{path}: not an IDX file .* magic number 1f8b0800"):
        load_split(data_copy, train=False)


def test_image_and_label_counts_disagree(data_copy):
    labels = raw_folder(data_copy) / "t10k-labels-idx1-ubyte"
    write_idx(labels, torch.zeros(299, dtype=torch.uint8).numpy())
    with pytest.raises(DataError, match=r"holds 300 images but .*t10k-labels-idx1-ubyte holds 299 labels"):
        load_split(data_copy, train=False)


def test_label_outside_0_to_9(data_copy):
    path = raw_folder(data_copy) / "t10k-labels-idx1-ubyte"
    labels = torch.zeros(300, dtype=torch.uint8)
    labels[17] = 12
    write_idx(path, labels.numpy())
    with pytest.raises(DataError, match=rf"{path}: label 12 at position 17 is outside 0-9"):
        load_split(data_copy, train=False)


def test_bad_data_through_the_command_line_is_one_message(data_copy, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = raw_folder(data_copy) / "train-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:100])
    message = run_main(monkeypatch, "fit", "--config", CONFIG, "--data.data_dir", str(data_copy))
    assert str(path) in message and "truncated" in message


def test_mnist_sized_files_that_are_not_the_published_ones_warn_by_name(tmp_path):
    write_mnist(tmp_path, train_size=60_000, test_size=10)
    with pytest.warns(ChecksumWarning) as warned:
        load_split(tmp_path, train=True)
    assert {str(warning.message).split(":")[0] for warning in warned} == {
        str(raw_folder(tmp_path) / "train-images-idx3-ubyte"),
        str(raw_folder(tmp_path) / "train-labels-idx1-ubyte"),
    }


def test_shared_mnist_warns_about_its_rebuilt_training_images_only(real_data_dir):
    with pytest.warns(ChecksumWarning, match="train-images-idx3-ubyte") as warned:
        load_split(real_data_dir, train=True)
    assert len(warned) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", ChecksumWarning)
        load_split(real_data_dir, train=False)  # the genuine published test files


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
    message = run_main(monkeypatch, *args, "--model.optimizer.init_args.lr", "1e3", "--trainer.log_every_n_steps", "5")
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
    assert f"refusing to load {evil}" in run_main(monkeypatch, *args)
    assert not marker.exists()


def test_truncated_checkpoint_is_one_clear_message(synthetic_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    broken = tmp_path / "broken.ckpt"
    torch.save({"state_dict": MNISTClassifier().state_dict()}, broken)
    broken.write_bytes(broken.read_bytes()[:1000])
    args = ["test", "--config", CONFIG, "--data.data_dir", str(synthetic_data_dir), "--ckpt_path", str(broken)]
    assert f"cannot read checkpoint {broken}" in run_main(monkeypatch, *args)


# Reproducibility and resuming after a crash.


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
    MNISTCLI(args=["fit", "--config", CONFIG, *data, "--trainer.max_epochs", "1", "--seed_everything", "true"])
    seed = yaml.safe_load((tmp_path / "lightning_logs" / "version_0" / "config.yaml").read_text())["seed_everything"]
    assert isinstance(seed, int) and not isinstance(seed, bool)


RESUME_CONFIG = """
seed_everything: 7
trainer:
  max_epochs: 3
  log_every_n_steps: 5
  enable_progress_bar: false
  callbacks:
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args: {monitor: val/acc, mode: max, filename: best}
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args: {filename: last, enable_version_counter: false}
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args: {filename: last, enable_version_counter: false, every_n_train_steps: 5}
data:
  val_size: 200
"""


def cli_process(args, cwd):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "mnist_ann", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def final_state(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)


def test_a_run_killed_mid_epoch_resumes_to_the_same_result(synthetic_data_dir, tmp_path):
    common = ["--config", "resume.yaml", "--data.data_dir", str(synthetic_data_dir)]
    for name in ("whole", "crashed"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "resume.yaml").write_text(RESUME_CONFIG)
    assert cli_process(["fit", *common], tmp_path / "whole").returncode == 0

    # 16 steps an epoch: killed at step 23, in the middle of the second epoch, three steps after a checkpoint.
    crashed = cli_process(
        ["fit", *common, "--trainer.callbacks+=tests.crash.HardKill", "--trainer.callbacks.at_step", "23"],
        tmp_path / "crashed",
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    resumed = cli_process(["fit", *common, "--ckpt_path", "last"], tmp_path / "crashed")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "version_0/checkpoints/last.ckpt" in resumed.stderr + resumed.stdout

    whole = final_state(tmp_path / "whole" / "lightning_logs" / "version_0")
    after_crash = final_state(tmp_path / "crashed" / "lightning_logs" / "version_1")
    assert whole["global_step"] == after_crash["global_step"] == 48 and whole["epoch"] == after_crash["epoch"]
    for name, tensor in whole["state_dict"].items():  # weights, and the counters behind the logged metrics
        assert torch.equal(tensor, after_crash["state_dict"][name]), name
