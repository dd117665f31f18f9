"""What users can get wrong or lose: configs, diverging runs, crashes, untrusted checkpoints."""

import os
import pickle
import re
import shutil
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint

from mnist_ann.data import MNISTDataModule
from mnist_ann.errors import TrainingDivergedError
from mnist_ann.model import MNISTClassifier
from tests.helpers.commands import CONFIG, REPO, main_error, run_main
from tests.helpers.synthetic import bar_picture

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
        # Lightning's own refusals of a trainer setting, as its one line
        ("--trainer.accelerator", "mps", "error: `MPSAccelerator` can not run on your system"),
    ],
)
def test_bad_values_are_refused_before_training(synthetic_data_dir, tmp_path, monkeypatch, option, value, named):
    monkeypatch.chdir(tmp_path)
    args = ["fit", "--config", CONFIG, "--data.data_dir", str(synthetic_data_dir), option, value]
    assert named in main_error(monkeypatch, *args)
    assert not (tmp_path / "lightning_logs").exists()  # nothing ran, nothing was written


def test_the_progress_bar_turned_off_is_left_out_of_the_configs_callbacks(
    synthetic_data_dir, tmp_path, monkeypatch, capsys
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
        "1",
        "--trainer.enable_progress_bar",
        "false",
    )
    printed = capsys.readouterr()
    assert "Epoch 0:" not in printed.out + printed.err  # (the bar, when on, draws on stdout)
    assert (tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "best.ckpt").is_file()


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
    with pytest.raises(TrainingDivergedError, match=r"diverged by step \d+: .* Stopped without saving them"):
        trainer.fit(model, MNISTDataModule(synthetic_data_dir, val_size=200))
    kept = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert kept["global_step"] >= 1
    assert all(torch.isfinite(tensor).all() for tensor in kept["state_dict"].values())


def test_diverging_run_through_the_command_line(synthetic_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["fit", "--config", CONFIG, "--data.data_dir", str(synthetic_data_dir), "--data.val_size", "200"]
    args += ["--model.optimizer.init_args.lr", "1e3", "--trainer.log_every_n_steps", "5"]
    message = main_error(monkeypatch, *args)
    assert "training diverged" in message and "learning rate" in message
    assert message.endswith("Stopped without saving them; no checkpoint had been written yet")
    every_step = [
        "--trainer.callbacks+=ModelCheckpoint",
        "--trainer.callbacks.filename",
        "last",
        "--trainer.callbacks.enable_version_counter",
        "false",
        "--trainer.callbacks.every_n_train_steps",
        "1",
    ]
    message = main_error(monkeypatch, *args, *every_step)
    kept = r"Stopped without saving them; the last good checkpoint is .*version_1/checkpoints/last\.ckpt$"
    assert re.search(kept, message)


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


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"hello, I am notes\n", "not a file torch can read"),
        (b"\x80\x02}q\x00.", "Invalid magic number; corrupt file?"),
        (b"PK\x03\x04" + bytes(60), "PytorchStreamReader failed reading zip archive: failed finding central directory"),
        (pickle.dumps([1, 2, 3]), "Weights only load failed"),
        (b"{}", "Weights only load failed"),
    ],
    ids=["text", "a small pickle", "a broken zip", "a list", "two bytes"],
)
@pytest.mark.parametrize("command", ["test", "serve", "export"])
def test_a_file_that_is_no_checkpoint_is_one_message_and_no_false_alarm(
    tmp_path, monkeypatch, command, content, reason
):
    monkeypatch.chdir(tmp_path)
    (notes := tmp_path / "notes.ckpt").write_bytes(content)
    message = main_error(monkeypatch, command, "--ckpt_path", str(notes))
    assert message == f"error: cannot read {notes} ({reason}): it is truncated or not a checkpoint"


def test_serve_and_export_do_not_offer_an_option_they_lack(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    marker, evil = tmp_path / "pwned", tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": RunsCode(marker)}, evil)
    for command in ("serve", "export"):
        message = main_error(monkeypatch, command, "--ckpt_path", str(evil))
        refusal = f"error: refusing to load {evil}: it would call posix.system when loaded. "
        assert message == refusal + "Only load checkpoints from sources you trust"
    assert not marker.exists()


def test_truncated_checkpoint_is_one_clear_message(synthetic_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    broken = tmp_path / "broken.ckpt"
    torch.save({"state_dict": MNISTClassifier().state_dict()}, broken)
    broken.write_bytes(broken.read_bytes()[:1000])
    args = ["test", "--config", CONFIG, "--data.data_dir", str(synthetic_data_dir), "--ckpt_path", str(broken)]
    assert main_error(monkeypatch, *args) == (
        f"error: cannot read {broken} (PytorchStreamReader failed reading zip archive: failed finding central "
        "directory): it is truncated or not a checkpoint"
    )


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


# Checkpoints that cannot be used as given: one message saying why, and what to use instead.


@pytest.fixture(scope="module")
def small_run(synthetic_data_dir, tmp_path_factory):
    """A folder with one short run of the default config: lightning_logs/version_0/checkpoints/{best,last}.ckpt."""
    workdir = tmp_path_factory.mktemp("small_run")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(workdir)
        run_main(
            monkeypatch,
            "fit",
            "--config",
            CONFIG,
            "--data.data_dir",
            str(synthetic_data_dir),
            "--data.val_size=200",
            "--trainer.max_epochs=1",
            "--model.hidden_sizes=[32]",
        )
    return workdir


def copy_of(small_run, tmp_path):
    return shutil.copytree(small_run / "lightning_logs", tmp_path / "lightning_logs").parent


def test_a_truncated_checkpoint_names_the_usable_ones(small_run, synthetic_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(copy_of(small_run, tmp_path))
    last = Path("lightning_logs/version_0/checkpoints/last.ckpt")
    last.write_bytes(last.read_bytes()[:5000])
    message = main_error(
        monkeypatch, "test", "--config", CONFIG, "--data.data_dir", str(synthetic_data_dir), "--ckpt_path", "last"
    )
    assert message.startswith(f"error: cannot read {last} (") and len(message) < 400
    assert message.endswith(
        "it is truncated or not a checkpoint; other checkpoints: lightning_logs/version_0/checkpoints/best.ckpt"
    )


def test_weights_without_lightnings_record_are_refused_by_name(small_run, synthetic_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plain = tmp_path / "weights.ckpt"
    state = torch.load(small_run / "lightning_logs/version_0/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    torch.save({"state_dict": state}, plain)
    message = main_error(
        monkeypatch, "test", "--config", CONFIG, "--data.data_dir", str(synthetic_data_dir), "--ckpt_path", str(plain)
    )
    assert f"{plain} holds weights but not Lightning's record of the run" in message


def test_weights_of_another_shape_say_which_the_model_expects(small_run, synthetic_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    checkpoint = torch.load(small_run / "lightning_logs/version_0/checkpoints/last.ckpt", weights_only=True)
    del checkpoint["hyper_parameters"]  # nothing tells the command line that its hidden layer had 32 units
    torch.save(checkpoint, stripped := tmp_path / "stripped.ckpt")
    message = main_error(
        monkeypatch,
        "test",
        "--config",
        CONFIG,
        "--data.data_dir",
        str(synthetic_data_dir),
        "--ckpt_path",
        str(stripped),
    )
    assert f"{stripped} does not fit this model: net.layers.1.bias is (32,), the model expects (128,);" in message


def test_a_checkpoint_of_another_task_is_used_as_it_was_trained_and_says_so(
    synthetic_data_dir, tmp_path, monkeypatch, caplog
):
    monkeypatch.chdir(tmp_path)
    data = ["--data.data_dir", str(synthetic_data_dir), "--data.val_size", "200"]
    binary = ["--config", str(REPO / "configs" / "binary.yaml"), "--trainer.max_epochs", "1"]
    run_main(monkeypatch, "fit", "--config", CONFIG, *binary, *data)
    with caplog.at_level("INFO"):
        run_main(monkeypatch, "test", "--config", CONFIG, *data, "--ckpt_path", "best")
    assert "the checkpoint's model is used: model.task=binary (the config says multiclass)" in caplog.text


# Config files a user wrote by hand.


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "trainer:\n  max_epochs: [1\n",
            r"{path}: not valid YAML: expected ',' or '\]', but got '<stream end>' \(line 3, column 1\)",
        ),
        ("trainer:\n\tmax_epochs: 1\n", r"{path}: not valid YAML: found character '\\t' that cannot start any token"),
        ("", r"{path} is empty: a config holds settings such as `trainer:`"),
        ("# only a comment\n", r"{path} is empty"),
    ],
)
def test_a_broken_config_file_is_named_in_the_error(tmp_path, monkeypatch, capsys, content, message):
    monkeypatch.chdir(tmp_path)
    (path := tmp_path / "mine.yaml").write_text(content)
    with pytest.raises(SystemExit) as exit_:
        run_main(monkeypatch, "fit", "--config", CONFIG, "--config", str(path))
    assert exit_.value.code == 2
    assert re.search("^error: " + message.format(path=re.escape(str(path))), capsys.readouterr().err, re.MULTILINE)


def test_a_run_refused_before_its_first_step_leaves_no_run_folder(synthetic_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["fit", "--config", CONFIG, "--data.data_dir", str(synthetic_data_dir)]
    message = main_error(monkeypatch, *args, "--data.val_size", "5000")
    assert message == "error: data.val_size=5000 leaves no training images out of 1200"
    assert not list((tmp_path / "lightning_logs").glob("version_*"))  # nothing TensorBoard would list as a run


def test_evaluating_and_predicting_never_write_a_placeholder_hparams_row(synthetic_data_dir, tmp_path, monkeypatch):
    """fit, test, then predict on a picture, as the README goes: every run's HParams row stays the project's."""
    from tests.helpers.tensorboard import events, session_hparams

    monkeypatch.chdir(tmp_path)
    data = ["--data.data_dir", str(synthetic_data_dir), "--data.val_size", "200"]
    run_main(monkeypatch, "fit", *data, "--trainer.max_epochs", "1")
    run_main(monkeypatch, "test", *data, "--ckpt_path", "best")
    bar_picture().save(tmp_path / "my_digit.png")
    run_main(monkeypatch, "predict", *data, "--ckpt_path", "best", "--data.predict_files", "my_digit.png")
    for run in (tmp_path / "lightning_logs").iterdir():
        assert "hp_metric" not in events(run).Tags()["scalars"]
        assert {"predict_files", "_instantiator"}.isdisjoint(session_hparams(run))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            ["--trainer.callbacks.output", "p.txt"],
            "error: --trainer.callbacks.output must end in .csv or .jsonl, not p.txt",
        ),
        (
            ["--trainer.callbacks.output", "/nonexistent/dir/p.csv"],
            "error: --trainer.callbacks.output /nonexistent/dir/p.csv: cannot write there (No such file or directory)",
        ),
        (
            ["--trainer.callbacks.explain", "/proc/x"],
            "error: --trainer.callbacks.explain /proc/x: cannot write there (No such file or directory)",
        ),
        (
            ["--trainer.callbacks.explain", "digit.png"],
            "error: --trainer.callbacks.explain: digit.png is a file; name a folder",
        ),
    ],
    ids=["output of another type", "output in no folder", "explain where none can be made", "explain naming a file"],
)
def test_a_predict_output_that_cannot_be_written_is_one_line(
    trained_checkpoint, tmp_path, monkeypatch, capsys, options, message
):
    monkeypatch.chdir(tmp_path)
    bar_picture().save(tmp_path / "digit.png")
    args = ["predict", "--ckpt_path", str(trained_checkpoint), "--data.predict_files", "digit.png", *options]
    assert main_error(monkeypatch, *args).startswith(message)
    assert "Union" not in capsys.readouterr().err  # the parser's report of every type it tried


def test_export_to_a_folder_that_cannot_be_made_is_one_line(trained_checkpoint, monkeypatch):
    message = main_error(monkeypatch, "export", "--ckpt_path", str(trained_checkpoint), "--output_dir", "/proc/x")
    assert message == "error: --output_dir /proc/x: cannot write there (No such file or directory)"


def test_a_run_folder_that_cannot_be_written_is_one_line(synthetic_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["fit", "--data.data_dir", str(synthetic_data_dir), "--trainer.logger.init_args.save_dir", "/sys/runs"]
    assert main_error(monkeypatch, *args) == "error: /sys/runs: Operation not permitted"


def test_a_run_folder_where_a_file_stands_is_one_line(synthetic_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lightning_logs").write_text("my notes")
    message = main_error(monkeypatch, "fit", "--data.data_dir", str(synthetic_data_dir), "--trainer.max_epochs", "1")
    assert message == f"error: {tmp_path}/lightning_logs: a file stands where the command needs a folder"
    assert (tmp_path / "lightning_logs").read_text() == "my notes"


def test_default_root_dir_is_where_the_runs_go(synthetic_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = ["--data.data_dir", str(synthetic_data_dir), "--data.val_size", "200", "--trainer.max_epochs", "1"]
    run_main(monkeypatch, "fit", *data, "--trainer.default_root_dir", "elsewhere")
    assert (tmp_path / "elsewhere" / "lightning_logs" / "version_0" / "checkpoints" / "best.ckpt").is_file()
    assert not (tmp_path / "lightning_logs").exists()
    run_main(monkeypatch, "test", *data, "--trainer.default_root_dir", "elsewhere", "--ckpt_path", "best")


def test_a_checkpoint_folder_given_as_a_url_goes_to_lightnings_own_checkpoint_io(tmp_path, monkeypatch):
    """s3://, gs://, ... are not local paths: fsspec's in-memory filesystem stands in for them here."""
    import fsspec

    from mnist_ann.checkpoints import AtomicCheckpointIO

    monkeypatch.chdir(tmp_path)
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(2)}}, "memory://bucket/run/last.ckpt")
    with fsspec.open("memory://bucket/run/last.ckpt", "rb") as file:
        assert torch.equal(torch.load(file, weights_only=True)["state_dict"]["w"], torch.ones(2))
    assert list(tmp_path.iterdir()) == []  # no local folder named after the URL


@pytest.mark.parametrize("option", [["--trainer.max_epoch", "3"], ["--data.batch", "3"], ["--model.hidden", "[8]"]])
def test_an_abbreviated_option_is_refused_and_nothing_runs(synthetic_data_dir, tmp_path, monkeypatch, capsys, option):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        run_main(monkeypatch, "fit", "--data.data_dir", str(synthetic_data_dir), *option)
    assert exit_.value.code == 2 and f"unrecognized arguments: {' '.join(option)}" in capsys.readouterr().err
    assert not (tmp_path / "lightning_logs").exists()
