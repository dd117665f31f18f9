"""Runs that are stopped: by SIGKILL, SIGTERM or Ctrl-C mid-epoch, or by a full disk. Each uses the default
config with all its callbacks, as users run it, with every lever that has state or randomness of its own
(a schedule, dropout, augmentation, weight averaging), and a resumed run must end with the very weights
of one that was never stopped."""

import contextlib
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import torch

from tests.helpers.commands import CONFIG, LEVERS, assert_same_weights, last_checkpoint, main_error, run_cli, run_main

EPOCHS, STEPS_PER_EPOCH = 3, 16  # 1,000 synthetic training images in batches of 64
STOP_AT = 23  # in the middle of the second epoch, three steps after a 5-step checkpoint
# The README's recipe for long epochs: also save last.ckpt every N steps.
STEP_CHECKPOINTS = [
    "--trainer.callbacks+=ModelCheckpoint",
    "--trainer.callbacks.filename=last",
    "--trainer.callbacks.enable_version_counter=false",
    "--trainer.callbacks.every_n_train_steps=5",
]


def fit_args(data_dir) -> list[str]:
    return [
        "fit",
        "--config",
        CONFIG,
        "--data.data_dir",
        str(data_dir),
        "--data.val_size",
        "200",
        "--trainer.max_epochs",
        str(EPOCHS),
        "--trainer.log_every_n_steps",
        "5",
        *LEVERS,
    ]


@pytest.fixture(scope="module")
def uninterrupted(synthetic_data_dir, tmp_path_factory) -> dict:
    workdir = tmp_path_factory.mktemp("whole")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(workdir)
        run_main(monkeypatch, *fit_args(synthetic_data_dir))
    return last_checkpoint(workdir, 0)


def assert_same_run(resumed: dict, whole: dict) -> None:
    assert resumed["global_step"] == whole["global_step"] == EPOCHS * STEPS_PER_EPOCH
    assert_same_weights(resumed, whole)


@pytest.mark.slow
def test_a_run_killed_mid_epoch_resumes_from_its_step_checkpoint_exactly(synthetic_data_dir, tmp_path, uninterrupted):
    args = [*fit_args(synthetic_data_dir), *STEP_CHECKPOINTS]
    kill = ["--trainer.callbacks+=tests.helpers.crash.SendSignal", f"--trainer.callbacks.at_step={STOP_AT}"]
    killed = run_cli(*args, *kill, cwd=tmp_path, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert last_checkpoint(tmp_path, 0)["global_step"] == 20  # the last 5-step mark before the kill

    resumed = run_cli(*args, "--ckpt_path", "last", cwd=tmp_path)
    assert "version_0/checkpoints/last.ckpt" in resumed.stderr + resumed.stdout
    assert_same_run(last_checkpoint(tmp_path, 1), uninterrupted)


@pytest.mark.slow
@pytest.mark.parametrize(("signal_name", "status"), [("SIGTERM", 143), ("SIGINT", 130)])
def test_a_run_stopped_by_a_signal_saves_its_step_and_resumes_exactly(
    synthetic_data_dir, tmp_path, monkeypatch, uninterrupted, signal_name, status
):
    stop = [
        "--trainer.callbacks+=tests.helpers.crash.SendSignal",
        f"--trainer.callbacks.at_step={STOP_AT}",
        f"--trainer.callbacks.signal_name={signal_name}",
    ]
    stopped = run_cli(*fit_args(synthetic_data_dir), *stop, cwd=tmp_path, check=False)
    assert stopped.returncode == status, stopped.stderr[-3000:]
    saved = Path("lightning_logs", "version_0", "checkpoints", "last.ckpt")  # as named from where it ran
    # The step in progress completes, then it is saved: the signal came before step 23 (of 0, 1, ...).
    last_line = stopped.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"stopped by {signal_name} at step {STOP_AT + 1}; saved it to {saved}. Resume with: ")
    assert last_checkpoint(tmp_path, 0)["global_step"] == STOP_AT + 1

    command = last_line.split("Resume with: mnist-ann ", 1)[1].split()
    assert command[-2:] == ["--ckpt_path", str(saved)]
    monkeypatch.chdir(tmp_path)
    crash = ("tests.helpers.crash", "callbacks.at_step", "signal_name")
    run_main(monkeypatch, *[arg for arg in command if not any(part in arg for part in crash)])  # as printed
    assert_same_run(last_checkpoint(tmp_path, 1), uninterrupted)


# A full disk, for real: a file-size limit (EFBIG), or a small tmpfs filled up (ENOSPC) where the tests may mount one.


@contextlib.contextmanager
def small_disk(folder, size: str = "8m"):
    folder.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small tmpfs needs root; the file-size-limit case covers a full disk")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.slow
@pytest.mark.parametrize(("limit", "reason"), [("FileSizeLimit", "File too large"), ("FillDisk", "No space left")])
def test_a_full_disk_stops_with_one_message_and_keeps_the_last_checkpoint(synthetic_data_dir, tmp_path, limit, reason):
    with small_disk(tmp_path / "disk") if limit == "FillDisk" else contextlib.nullcontext(tmp_path) as disk:
        args = [*fit_args(synthetic_data_dir), "--trainer.logger.init_args.save_dir", str(disk)]
        result = run_cli(*args, f"--trainer.callbacks+=tests.helpers.crash.{limit}", cwd=tmp_path, check=False)
        assert result.returncode == 1
        assert "Traceback" not in result.stderr and "you tried to log" not in result.stderr
        [message] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        checkpoints = disk / "lightning_logs" / "version_0" / "checkpoints"
        assert re.match(rf"error: no space left (writing|under) \S+ \({reason}.*\): training stopped at step", message)
        assert f"Kept {checkpoints}" in message and "(step 16), whole" in message
        assert result.stderr.rstrip().endswith(message)  # the last thing printed
        kept = torch.load(checkpoints / "last.ckpt", weights_only=True)  # the first epoch's, intact
        assert kept["global_step"] == STEPS_PER_EPOCH
        assert not list(checkpoints.glob(".*.tmp"))  # no half-written file left behind


@pytest.mark.slow
def test_best_after_a_run_stopped_in_its_first_epoch_is_not_an_older_runs(synthetic_data_dir, tmp_path, monkeypatch):
    one_epoch = [*fit_args(synthetic_data_dir), "--trainer.max_epochs", "1"]
    monkeypatch.chdir(tmp_path)
    run_main(monkeypatch, *one_epoch)  # version_0: best.ckpt and last.ckpt
    stop = [
        "--trainer.callbacks+=tests.helpers.crash.SendSignal",
        "--trainer.callbacks.at_step=3",
        "--trainer.callbacks.signal_name=SIGTERM",
    ]
    assert run_cli(*one_epoch, *stop, cwd=tmp_path, check=False).returncode == 143  # version_1: last.ckpt only
    monkeypatch.chdir(tmp_path)
    data = ["--data.data_dir", str(synthetic_data_dir), "--data.val_size", "200"]
    message = main_error(monkeypatch, "test", "--config", CONFIG, *data, "--ckpt_path", "best")
    assert message == (
        "error: --ckpt_path best: the newest run's checkpoints (lightning_logs/version_1/checkpoints) hold no "
        "best.ckpt, only last.ckpt (a run stopped before its first validation has no best.ckpt); pass one of those "
        "by its path, or lightning_logs/version_0/checkpoints/best.ckpt of an earlier run"
    )
