"""Running the product as users run it: its command line as a real process or in this process, and reading what
it prints."""

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
CONFIG = str(REPO / "configs" / "default.yaml")
REAL_DATA_DIR = Path(os.environ.get("MNIST_ANN_DATA_DIR") or REPO.parent / "shared" / "data")


# Every lever with state or randomness of its own (a schedule, dropout, batch normalization's statistics, VAT's
# random directions, augmentation, weight averaging): the resume tests run with them, so that "resumes exactly"
# holds for them too.
LEVERS = [
    "--model.dropout=0.2",
    "--model.batch_norm=true",
    "--model.adversarial.kind=vat",
    "--model.scheduler=mnist_ann.schedules.OneCycle",
    "--data.augmentation.rotation=10",
    "--data.augmentation.elastic_alpha=20",
    "--trainer.callbacks+=EMAWeightAveraging",
    "--trainer.callbacks.decay=0.9",
    "--trainer.callbacks.use_buffers=true",  # batch normalization's statistics averaged with the weights
]


def assert_same_weights(resumed: dict, whole: dict) -> None:
    """Two checkpoints hold the same averaged weights, weights being trained, and counters behind the metrics."""
    for weights in ("state_dict", "current_model_state"):
        for name, tensor in whole[weights].items():
            assert torch.equal(tensor, resumed[weights][name]), (weights, name)


def last_checkpoint(workdir, version: int) -> dict:
    """What `lightning_logs/version_N/checkpoints/last.ckpt` of a run in `workdir` holds."""
    return torch.load(
        Path(workdir) / "lightning_logs" / f"version_{version}" / "checkpoints" / "last.ckpt", weights_only=True
    )


def table_values(output: str, metric: str) -> list[float]:
    """The figures of `metric` in the tables that test and validate print (plain, or drawn by `rich` if installed)."""
    return [float(value) for value in re.findall(rf"{re.escape(metric)}[\s│]+([\d.]+)", output)]


def missing(reason: str) -> None:
    """A test that cannot run here for want of something outside the project: skipped, saying why; under CI
    (CI=true) it fails instead, so that CI never passes by not running it."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run this test: {reason}", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, for servers and process groups the tests start."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_cli(*args: str, cwd, env: dict | None = None, command: tuple[str, ...] = ()) -> subprocess.Popen:
    """`python -m mnist_ann ARGS` (or another `command`) started as a user starts it, in its own process
    group so that everything it launches can be stopped together; `tests` is importable in it."""
    environment = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.Popen(
        list(command or (sys.executable, "-m", "mnist_ann")) + list(args),
        cwd=cwd,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def finish(process: subprocess.Popen, timeout: float = 300) -> subprocess.CompletedProcess:
    """Wait for a process started by `start_cli`; whatever happens, nothing of its group is left running."""
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"{' '.join(process.args)} did not finish in {timeout} s:\n{stdout[-2000:]}\n{stderr[-3000:]}")
    finally:
        with contextlib.suppress(ProcessLookupError):  # children left behind by a crash (DDP ranks, workers)
            os.killpg(process.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def run_cli(*args: str, cwd, env: dict | None = None, timeout: float = 300, check: bool = True):
    """Run the command line in a subprocess; with `check`, fail the test unless it exits 0."""
    result = finish(start_cli(*args, cwd=cwd, env=env), timeout)
    if check and result.returncode:
        pytest.fail(f"mnist_ann {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


# Warnings a user should see: the shared MNIST's rebuilt training file (not on the synthetic data), and
# Lightning's note, on a machine with a GPU, that the tests' deliberately CPU-only processes leave it unused.
EXPECTED_WARNINGS = ("ChecksumWarning", "GPU available but not used")


def unexpected_warnings(output: str) -> list[str]:
    """Warnings and tips printed by a command, other than the expected ones. Python prints a warning as
    `file.py:LINE: Category: message`, Lightning as `file.py:LINE: message`; progress bars rewrite lines with \\r."""
    lines = re.split(r"[\r\n]+", output)
    printed = [line for line in lines if re.search(r"\.py:\d+: |Warning|💡", line)]
    return [line for line in printed if not any(expected in line for expected in EXPECTED_WARNINGS)]


def run_main(monkeypatch, *args: str) -> None:
    """The real entry point in this process (faster than a subprocess, for tests that need no isolation)."""
    from mnist_ann.__main__ import main

    monkeypatch.setattr(sys, "argv", ["mnist-ann", *args])
    main()


def main_error(monkeypatch, *args: str) -> str:
    """Run the real entry point in this process and return the message it exits with."""
    with pytest.raises(SystemExit) as exit_:
        run_main(monkeypatch, *args)
    assert exit_.value.code != 0
    return str(exit_.value.code)
