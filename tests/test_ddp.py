"""Multi-process training and evaluation on CPU with Lightning's DDP (gloo), as real subprocesses."""

import contextlib
import os
import re
import signal
import subprocess
import sys

import lightning as L
import pytest

from mnist_ann.data import MNISTDataModule
from mnist_ann.model import MNISTClassifier
from tests.conftest import REPO, free_port
from tests.idx import write_mnist

CONFIG = str(REPO / "configs" / "default.yaml")
DDP_CONFIG = str(REPO / "configs" / "ddp.yaml")


def run_ddp(args: list[str], cwd, timeout: int = 240) -> str:
    """One CLI run on CPU processes; all of them are gone afterwards, even when it hangs."""
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    command = [sys.executable, "-m", "mnist_ann", *args, "--trainer.accelerator", "cpu"]
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )  # its own process group: the ranks it launches
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"mnist_ann {' '.join(args)} did not finish in {timeout} s:\n{output[-3000:]}")
    finally:
        with contextlib.suppress(ProcessLookupError):  # ranks left behind by a crash
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, output[-3000:]
    return output


def single_process_test_accuracy(checkpoint, data_dir) -> float:
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    model = MNISTClassifier.load_from_checkpoint(checkpoint, weights_only=True)
    [metrics] = trainer.test(model, MNISTDataModule(data_dir, val_size=200), verbose=False)
    return metrics["test/acc"]


@pytest.mark.parametrize(("processes", "test_size"), [(2, 300), (3, 301)])
def test_ddp_fit_and_test_report_the_exact_single_process_accuracy(tmp_path, processes, test_size):
    # 301: not divisible by 3. Noisy enough that the model makes some mistakes to count.
    data_dir = write_mnist(tmp_path / "data", train_size=1201, test_size=test_size, noise=150)
    common = ["--config", CONFIG, "--config", DDP_CONFIG, "--data.data_dir", str(data_dir), "--data.val_size", "200"]
    common += ["--trainer.devices", str(processes)]
    run_ddp(["fit", *common, "--trainer.max_epochs", "2"], tmp_path)
    output = run_ddp(["test", *common, "--ckpt_path", "best"], tmp_path)

    reported = float(re.search(r"test/acc\s+([\d.]+)", output).group(1))
    checkpoint = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "best.ckpt"
    assert reported == single_process_test_accuracy(checkpoint, data_dir)
    assert 0.5 < reported < 1  # trained, and the comparison is not trivially 0 or 1
