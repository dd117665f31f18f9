"""The built wheel, installed into a fresh virtual environment, run from an empty folder: the recipe and the page
ship inside the package, and `mnist-ann --help` lists every command."""

import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import urllib.request
from pathlib import Path

import pytest

from tests.helpers.commands import REPO, finish, free_port, start_cli
from tests.helpers.service import wait_for_answer
from tests.helpers.synthetic import write_mnist

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh virtual environment with the wheel installed, reusing this environment's dependencies (torch and
    the rest) through a path file, but not its editable install of the project."""
    where = tmp_path_factory.mktemp("wheel")
    source = where / "source"  # (a build writes into its source folder: a copy, not the checkout)
    listing = ["git", "ls-files", "--cached", "--others", "--exclude-standard"]  # the working tree, as git sees it
    tracked = subprocess.run(listing, cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for name in tracked:
        if not (REPO / name).exists():  # deleted in the working tree, not yet in the index
            continue
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        if (REPO / name).is_symlink():
            (source / name).symlink_to((REPO / name).readlink())
        else:
            shutil.copy2(REPO / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", where, source],
        check=True,
    )
    [wheel] = where.glob("mnist_ann-*.whl")
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    site = subprocess.run(
        [venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # A plain path line: the dependencies are importable, this environment's .pth files (the editable install)
    # are not read.
    (Path(site) / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel], check=True
    )
    return venv


def command(venv, *args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([venv / "bin" / "mnist-ann", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_the_wheel_trains_tests_and_serves_from_an_empty_folder(installed, tmp_path):
    where = subprocess.run(
        [installed / "bin" / "python", "-c", "import mnist_ann; print(mnist_ann.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(str(installed))  # the wheel's copy, not the checkout

    help_ = command(installed, "--help", cwd=tmp_path).stdout
    assert re.findall(r"^  (\w+) ", help_, re.M) == ["fit", "validate", "test", "predict", "export", "serve", "tune"]

    data = write_mnist(tmp_path / "data", train_size=600, test_size=100)
    options = ["--data.data_dir", str(data), "--data.val_size", "100"]
    run = tmp_path / "empty"
    run.mkdir()
    fit = command(installed, "fit", *options, "--trainer.max_epochs", "1", cwd=run)
    assert fit.returncode == 0, fit.stderr[-3000:]
    assert (run / "lightning_logs" / "version_0" / "checkpoints" / "best.ckpt").is_file()
    test = command(installed, "test", *options, "--ckpt_path", "best", cwd=run)
    assert test.returncode == 0 and "test/acc" in test.stdout, test.stderr[-3000:]

    port = free_port()
    server = start_cli(
        "serve", "--ckpt_path", "best", "--port", str(port), cwd=run, command=(installed / "bin" / "mnist-ann",)
    )
    try:
        wait_for_answer(server, f"http://127.0.0.1:{port}/health")
        for path in ("/", "/web/page.js", "/web/answer.js", "/web/page.css"):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
                assert response.status == 200 and response.read()
    finally:
        server.send_signal(signal.SIGTERM)
        assert finish(server, timeout=60).returncode == 0
