"""Runs that are stopped mid-epoch. Each uses the default config with all its callbacks, as users run it,
and a resumed run must end with the very weights of one that was never stopped."""

import signal

import pytest
import torch

from tests.conftest import CONFIG, run_cli

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
    return ["fit", "--config", CONFIG, "--data.data_dir", str(data_dir), "--data.val_size", "200",
            "--trainer.max_epochs", str(EPOCHS), "--trainer.log_every_n_steps", "5"]  # fmt: skip


def final_state(workdir, version: int) -> dict:
    return torch.load(
        workdir / "lightning_logs" / f"version_{version}" / "checkpoints" / "last.ckpt", weights_only=True
    )


@pytest.fixture(scope="module")
def uninterrupted(synthetic_data_dir, tmp_path_factory) -> dict:
    workdir = tmp_path_factory.mktemp("whole")
    run_cli(*fit_args(synthetic_data_dir), cwd=workdir)
    return final_state(workdir, 0)


def assert_same_run(resumed: dict, whole: dict) -> None:
    assert resumed["global_step"] == whole["global_step"] == EPOCHS * STEPS_PER_EPOCH
    for name, tensor in whole["state_dict"].items():  # weights, and the counters behind the logged metrics
        assert torch.equal(tensor, resumed["state_dict"][name]), name


@pytest.mark.slow
def test_a_run_killed_mid_epoch_resumes_from_its_step_checkpoint_exactly(synthetic_data_dir, tmp_path, uninterrupted):
    args = [*fit_args(synthetic_data_dir), *STEP_CHECKPOINTS]
    kill = ["--trainer.callbacks+=tests.crash.SendSignal", f"--trainer.callbacks.at_step={STOP_AT}"]
    killed = run_cli(*args, *kill, cwd=tmp_path, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert final_state(tmp_path, 0)["global_step"] == 20  # the last 5-step mark before the kill

    resumed = run_cli(*args, "--ckpt_path", "last", cwd=tmp_path)
    assert "version_0/checkpoints/last.ckpt" in resumed.stderr + resumed.stdout
    assert_same_run(final_state(tmp_path, 1), uninterrupted)
