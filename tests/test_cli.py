"""The command line end to end, as a user runs it: real processes on synthetic IDX files, each command
run once per module and checked by several tests; what needs no process of its own runs in this one."""

import logging
import re
import shlex
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

from mnist_ann.model import MNISTClassifier
from tests.helpers.commands import CONFIG, REPO, main_error, run_cli, run_main, table_values, unexpected_warnings


@pytest.fixture(scope="module")
def trained_run(synthetic_data_dir, tmp_path_factory):
    """One `fit` of one epoch with the default config, run in its own folder."""
    workdir = tmp_path_factory.mktemp("run")
    data = ("--data.data_dir", str(synthetic_data_dir), "--data.val_size", "200")
    fit = run_cli(
        "fit", "--config", CONFIG, *data, "--trainer.max_epochs", "1", "--trainer.log_every_n_steps", "5", cwd=workdir
    )
    return workdir, data, fit


@pytest.fixture(scope="module")
def commands(trained_run):
    """In fresh processes after that `fit`: the `test` it printed, as printed, and `predict` of one picture file,
    named without brackets and without a config."""
    workdir, _, fit = trained_run
    picture, image = workdir / "digit.png", Image.new("L", (60, 60), 255)
    ImageDraw.Draw(image).line([(30, 10), (30, 50)], fill=0, width=6)  # a "1"
    image.save(picture)
    [printed] = re.findall(r"Test it on the test images: (mnist-ann test .*)", fit.stdout + fit.stderr)
    return {
        "test": run_cli(*shlex.split(printed)[1:], cwd=workdir),
        "predict": run_cli("predict", "--ckpt_path", "best", "--data.predict_files", str(picture), cwd=workdir),
    }


def test_fit_shows_running_loss_and_validation_accuracy_and_saves_run(trained_run):
    workdir, _, fit = trained_run
    assert re.search(r"train/loss=[\d.]+.*val/acc=[\d.]+", fit.stdout + fit.stderr)
    run = workdir / "lightning_logs" / "version_0"
    assert {"best.ckpt", "last.ckpt"} <= {path.name for path in (run / "checkpoints").iterdir()}
    assert (run / "config.yaml").is_file() and list(run.glob("events.out.tfevents.*"))


def test_fit_ends_with_its_best_epoch_the_checkpoint_and_the_command_that_tests_it(trained_run):
    fit = trained_run[2]
    output = fit.stdout + fit.stderr
    best = "lightning_logs/version_0/checkpoints/best.ckpt"
    assert re.search(rf"Best val/acc \d+\.\d\d% in epoch 0 \(of 0-0\), kept as \S*{best}\n", output)
    [command] = re.findall(r"Test it on the test images: (mnist-ann test .*)", output)
    assert command.endswith(f"--ckpt_path {best}") and "--data.val_size 200" in command  # run: `commands`


def test_the_model_summary_shows_each_layers_sizes_and_the_networks_flops(trained_run):
    output = trained_run[2].stdout + trained_run[2].stderr
    assert re.search(r"\| net +\| MLP +\| 109 K .*\| 218 K +\| \[1, 1, 28, 28\] \| \[1, 10\]", output)
    for name, sizes in [
        ("1", r"\[1, 784\] +\| \[1, 128\]"),
        ("3", r"\[1, 128\] +\| \[1, 64\]"),
        ("5", r"\[1, 64\] +\| \[1, 10\]"),
    ]:
        assert re.search(rf"\| net\.layers\.{name} +\| Linear .*\| {sizes}", output)  # and each layer's
    assert "Total Flops" in output and not re.search(r"^0 +Total Flops", output, re.MULTILINE)


def test_the_summary_and_the_progress_bar_can_be_turned_off(synthetic_data_dir, tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    args = ["fit", "--data.data_dir", str(synthetic_data_dir), "--data.val_size=200", "--trainer.max_epochs=1"]
    with caplog.at_level(logging.INFO):
        run_main(monkeypatch, *args, "--trainer.enable_model_summary=false", "--trainer.enable_progress_bar=false")
    assert not [message for message in caplog.messages if "Total params" in message]


def test_the_printed_test_command_runs_in_a_fresh_process_and_prints_the_table(commands):
    output = commands["test"].stdout + commands["test"].stderr
    [accuracy] = table_values(output, "test/acc")
    assert accuracy > 0.9  # synthetic classes are easy to tell apart
    assert table_values(output, "test/loss")


def test_validate_from_the_last_checkpoint_logs_into_its_run(trained_run, monkeypatch, capsys, caplog):
    workdir, data, _ = trained_run
    monkeypatch.chdir(workdir)
    with caplog.at_level(logging.INFO):
        run_main(monkeypatch, "validate", "--config", CONFIG, *data, "--ckpt_path", "last")
    output = capsys.readouterr().out + caplog.text
    assert "version_0/checkpoints/last.ckpt" in output and table_values(output, "val/acc")
    assert (workdir / "lightning_logs" / "version_0" / "validate-config.yaml").is_file()


def test_predict_of_one_file_without_config_prints_its_row(commands):
    [row] = [line.split() for line in commands["predict"].stdout.splitlines() if "digit.png" in line]
    assert re.fullmatch(r"\d", row[1]) and 0.1 < float(row[2]) <= 1  # one digit, and how sure


def test_evaluation_commands_log_into_the_checkpoints_run(trained_run, commands):
    workdir, _, _ = trained_run
    runs = workdir / "lightning_logs"
    assert [path.name for path in runs.iterdir()] == ["version_0"]
    saved = {path.name for path in (runs / "version_0").iterdir()}
    assert {"config.yaml", "test-config.yaml", "predict-config.yaml"} <= saved


def test_fit_test_and_predict_print_no_warning_a_user_cannot_act_on(trained_run, commands):
    for result in (trained_run[2], *commands.values()):
        assert unexpected_warnings(result.stdout + result.stderr) == [], " ".join(result.args)


def test_checkpoint_rebuilds_the_model_alone(trained_run):
    workdir, _, _ = trained_run
    model = MNISTClassifier.load_from_checkpoint(
        workdir / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    )
    assert model(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


# In this process.


def test_rerun_of_fit_starts_a_new_run_without_crashing(synthetic_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = ["--data.data_dir", str(synthetic_data_dir), "--data.val_size", "200"]
    for _ in range(2):
        run_main(
            monkeypatch, "fit", "--config", CONFIG, *data, "--trainer.max_epochs=1", "--trainer.limit_train_batches=2"
        )
    assert (tmp_path / "lightning_logs" / "version_1" / "config.yaml").is_file()  # earlier runs' files remain
    assert (tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt").is_file()


def test_print_config_shows_the_recipe(tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit):
        run_main(monkeypatch, "fit", "--config", CONFIG, "--print_config")
    output = capsys.readouterr().out
    for line in ("max_epochs: 10", "batch_size: 64", "class_path: torch.optim.SGD", "lr: 0.01", "momentum: 0.9"):
        assert line in output


def test_help_shows_the_allowed_values(monkeypatch, capsys):
    with pytest.raises(SystemExit):
        run_main(monkeypatch, "fit", "--help")
    output = capsys.readouterr().out
    assert "--model.task {multiclass,binary,regression}" in output
    assert "--model.positive {0,1,2,3,4,5,6,7,8,9,even}" in output


def test_profiler_on_request_only(trained_run, tmp_path, monkeypatch, caplog):
    _, data, fit = trained_run
    assert "Profiler Report" not in fit.stdout + fit.stderr  # the default records nothing
    monkeypatch.chdir(tmp_path)
    args = ("--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3", "--trainer.profiler", "simple")
    with caplog.at_level("INFO"):  # Lightning prints the report through logging
        run_main(monkeypatch, "fit", "--config", CONFIG, *data, *args)
    assert re.search(r"FIT Profiler Report.*training_step", caplog.text, re.DOTALL)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["fit", "--data.data_dir", "{tmp}", "--data.download", "false"], "MNIST not found in"),
        (["test", "--data.data_dir", "{data}", "--ckpt_path", "best"], "--ckpt_path best: no checkpoint under"),
        (["test", "--data.data_dir", "{data}", "--ckpt_path", "{tmp}/nope.ckpt"], "nope.ckpt: no such checkpoint file"),
    ],
)
def test_user_errors_are_one_message(synthetic_data_dir, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    args = [arg.format(tmp=tmp_path, data=synthetic_data_dir) for arg in args]
    assert message in main_error(monkeypatch, args[0], "--config", CONFIG, *args[1:])


def test_a_run_config_saved_by_the_earlier_layout_replays(synthetic_data_dir, tmp_path, monkeypatch):
    """`lightning_logs/version_N/config.yaml` of a run from before serve, tune and the configs moved (commit
    d06276f: it holds a `tune:` section and the class paths of that layout) still replays with fit."""
    monkeypatch.chdir(tmp_path)
    saved = Path(__file__).parent / "data" / "run-config-d06276f.yaml"
    run_main(
        monkeypatch,
        "fit",
        "--config",
        str(saved),
        "--data.data_dir",
        str(synthetic_data_dir),
        "--trainer.max_epochs",
        "1",
    )
    assert (tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "best.ckpt").is_file()


def test_version_is_the_projects_release_and_help_lists_every_command(capsys):
    import tomllib

    from mnist_ann.__main__ import main

    main(["--version"])
    release = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert capsys.readouterr().out == f"mnist-ann {release}\n"  # the installed release is the project's
    main(["--help"])
    listed = re.findall(r"^  (\w+) ", capsys.readouterr().out, re.MULTILINE)
    assert listed == ["fit", "validate", "test", "predict", "export", "serve", "tune"]
