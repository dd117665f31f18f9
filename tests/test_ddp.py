"""Multi-process training and evaluation on CPU with Lightning's DDP (gloo), as real subprocesses, signals included."""

import pytest

from tests.helpers.accuracy import single_process_test_accuracy
from tests.helpers.commands import (
    CONFIG,
    LEVERS,
    REPO,
    assert_same_weights,
    free_port,
    last_checkpoint,
    run_cli,
    table_values,
    unexpected_warnings,
)
from tests.helpers.synthetic import bar_picture, write_mnist

DDP_CONFIG = str(REPO / "configs" / "ddp.yaml")


def run_ddp(args: list[str], cwd) -> str:
    """One CLI run on CPU processes (all of them gone afterwards, even when it hangs); its output."""
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    result = run_cli(*args, "--trainer.accelerator", "cpu", cwd=cwd, env=env, timeout=240)
    output = result.stdout + result.stderr
    assert unexpected_warnings(output) == []
    return output


@pytest.fixture(scope="module")
def two_process_run(synthetic_data_dir, tmp_path_factory):
    """The arguments of a 2-process CPU fit of 3 epochs (16 steps each), all levers on, its final weights and
    its best checkpoint."""
    args = ["fit", "--config", CONFIG, "--config", DDP_CONFIG, "--data.data_dir", str(synthetic_data_dir)]
    args += ["--data.val_size", "200", "--trainer.max_epochs", "3", "--trainer.log_every_n_steps", "5", *LEVERS]
    workdir = tmp_path_factory.mktemp("ddp-whole")
    run_ddp(args, workdir)
    return args, last_checkpoint(workdir, 0), workdir / "lightning_logs" / "version_0" / "checkpoints" / "best.ckpt"


@pytest.mark.slow
def test_ddp_test_on_3_processes_reports_the_exact_single_process_accuracy(two_process_run, tmp_path):
    # The 2-process run's best model on 301 test images, not divisible by 3: Lightning's sampler pads each process's
    # share to the same length, and a padded image counted twice would change the accuracy.
    best = two_process_run[2]
    data_dir = write_mnist(tmp_path / "data", train_size=10, test_size=301, noise=150)
    test = ["test", "--config", CONFIG, "--config", DDP_CONFIG, "--data.data_dir", str(data_dir)]
    output = run_ddp([*test, "--trainer.devices", "3", "--ckpt_path", str(best)], tmp_path)

    [reported] = table_values(output, "test/acc")
    assert reported == single_process_test_accuracy(best, data_dir)
    assert 0 < reported < 1  # some right, some wrong (noisy images): either counted twice would show


def stop_at_step_24(args: list[str], workdir, signal_options: list[str]) -> None:
    """The run of `args` in `workdir`, sent SIGTERM (to whom `signal_options` say) at step 23: every process stops at
    the same step and it is saved."""
    stop = ["--trainer.callbacks+=tests.helpers.crash.SendSignal", "--trainer.callbacks.at_step=23"]
    stop += ["--trainer.callbacks.signal_name=SIGTERM", *signal_options]
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    stopped = run_cli(*args, *stop, "--trainer.accelerator", "cpu", cwd=workdir, env=env, timeout=240, check=False)
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    assert "Traceback" not in stopped.stderr and "mismatch" not in stopped.stderr
    assert last_checkpoint(workdir, 0)["global_step"] == 24  # the step in progress, completed by both, then saved
    [line] = [line for line in stopped.stderr.splitlines() if line.startswith("stopped by SIGTERM")]
    assert line.startswith("stopped by SIGTERM at step 24; saved it to lightning_logs/version_0/checkpoints/last.ckpt")


@pytest.mark.slow
def test_sigterm_to_rank_1_alone_stops_every_process_at_one_step(two_process_run, tmp_path):
    stop_at_step_24(two_process_run[0], tmp_path, ["--trainer.callbacks.rank=1"])


@pytest.mark.slow
def test_sigterm_to_the_group_stops_every_process_at_one_step_and_the_run_resumes_exactly(two_process_run, tmp_path):
    args, whole, _ = two_process_run
    stop_at_step_24(args, tmp_path, ["--trainer.callbacks.group=true"])
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    resumed = ["--ckpt_path", "lightning_logs/version_0/checkpoints/last.ckpt", "--trainer.accelerator", "cpu"]
    run_cli(*args, *resumed, cwd=tmp_path, env=env, timeout=240)
    final = last_checkpoint(tmp_path, 1)
    assert final["global_step"] == whole["global_step"] == 48
    assert_same_weights(final, whole)


@pytest.mark.slow
def test_predict_on_two_processes_writes_every_row_in_order(two_process_run, tmp_path):
    best = two_process_run[2]
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    for index in range(11):  # odd: the two processes' shares differ by one
        bar_picture(box=(40 + 10 * index, 30, 100 + 10 * index, 150)).save(pictures / f"{index:02d}.png")
    predict = ["predict", "--config", CONFIG, "--config", DDP_CONFIG, "--ckpt_path", str(best)]
    predict += ["--data.predict_files", str(pictures), "--trainer.callbacks.output", "rows.csv"]
    predict += ["--trainer.callbacks.explain", "explained"]
    run_ddp(predict, tmp_path)
    rows = (tmp_path / "rows.csv").read_text().splitlines()
    assert rows[0].startswith("file,class,name,probability")
    assert [row.split(",")[0] for row in rows[1:]] == [str(pictures / f"{index:02d}.png") for index in range(11)]
    assert len(list((tmp_path / "explained").glob("*.png"))) == 11 and not list(tmp_path.glob(".rows.csv.part*"))
