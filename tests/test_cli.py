"""The command line end to end, as a user runs it: real subprocesses on synthetic IDX files."""

import re
import subprocess
import sys

import pytest
import torch

from mnist_ann.model import MNISTClassifier
from tests.conftest import REPO

CONFIG = str(REPO / "configs" / "default.yaml")


def cli(*args: str, cwd, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "mnist_ann", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    if check and result.returncode:
        pytest.fail(f"mnist_ann {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def trained_run(synthetic_data_dir, tmp_path_factory):
    """One `fit` of one epoch with the default config, run in its own folder."""
    workdir = tmp_path_factory.mktemp("run")
    data = ("--data.data_dir", str(synthetic_data_dir), "--data.val_size", "200")
    fit = cli(
        "fit", "--config", CONFIG, *data, "--trainer.max_epochs", "1", "--trainer.log_every_n_steps", "5", cwd=workdir
    )
    return workdir, data, fit


def test_fit_shows_running_loss_and_validation_accuracy_and_saves_run(trained_run):
    workdir, _, fit = trained_run
    assert re.search(r"train/loss=[\d.]+.*val/acc=[\d.]+", fit.stdout + fit.stderr)
    run = workdir / "lightning_logs" / "version_0"
    assert {"best.ckpt", "last.ckpt"} <= {path.name for path in (run / "checkpoints").iterdir()}
    assert (run / "config.yaml").is_file() and list(run.glob("events.out.tfevents.*"))


def test_test_from_best_checkpoint_in_a_fresh_process_prints_the_table(trained_run):
    workdir, data, _ = trained_run
    result = cli("test", "--config", CONFIG, *data, "--ckpt_path", "best", cwd=workdir)
    output = result.stdout + result.stderr
    assert re.search(r"--ckpt_path best -> \S*version_0/checkpoints/best\.ckpt", output)
    accuracy = float(re.search(r"test/acc\s+([\d.]+)", output).group(1))
    assert accuracy > 0.9  # synthetic classes are easy to tell apart
    assert re.search(r"test/loss\s+[\d.]+", output)


def test_validate_and_predict_from_last_checkpoint(trained_run):
    workdir, data, _ = trained_run
    validate = cli("validate", "--config", CONFIG, *data, "--ckpt_path", "last", cwd=workdir)
    assert re.search(r"val/acc\s+[\d.]+", validate.stdout)
    predict = cli("predict", "--config", CONFIG, *data, "--ckpt_path", "last", cwd=workdir)
    assert "version_0/checkpoints/last.ckpt" in predict.stdout + predict.stderr


def test_rerun_of_fit_starts_a_new_run_without_crashing(trained_run):
    workdir, data, _ = trained_run
    cli("fit", "--config", CONFIG, *data, "--trainer.max_epochs", "1", cwd=workdir)
    assert (workdir / "lightning_logs" / "version_1" / "config.yaml").is_file()  # earlier runs' files remain


def test_checkpoint_rebuilds_the_model_alone(trained_run):
    workdir, _, _ = trained_run
    model = MNISTClassifier.load_from_checkpoint(
        workdir / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt", weights_only=True
    )
    assert model(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


def test_print_config_shows_the_recipe(tmp_path):
    output = cli("fit", "--config", CONFIG, "--print_config", cwd=tmp_path).stdout
    for line in ("max_epochs: 10", "batch_size: 64", "class_path: torch.optim.SGD", "lr: 0.01", "momentum: 0.9"):
        assert line in output


def test_profiler_on_request_only(trained_run, tmp_path):
    _, data, fit = trained_run
    assert "Profiler Report" not in fit.stdout + fit.stderr  # the default records nothing
    args = ("--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3", "--trainer.profiler", "simple")
    profiled = cli("fit", "--config", CONFIG, *data, *args, cwd=tmp_path)
    assert re.search(r"FIT Profiler Report.*training_step", profiled.stdout + profiled.stderr, re.DOTALL)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["fit", "--data.data_dir", "{tmp}", "--data.download", "false"], "MNIST not found in"),
        (["test", "--data.data_dir", "{data}", "--ckpt_path", "best"], "no best.ckpt"),
        (["test", "--data.data_dir", "{data}", "--ckpt_path", "{tmp}/nope.ckpt"], "nope.ckpt: no such checkpoint file"),
    ],
)
def test_user_errors_are_one_message_without_traceback(synthetic_data_dir, tmp_path, args, message):
    args = [arg.format(tmp=tmp_path, data=synthetic_data_dir) for arg in args]
    result = cli(args[0], "--config", CONFIG, *args[1:], cwd=tmp_path, check=False)
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr
