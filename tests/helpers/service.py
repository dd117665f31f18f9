"""`mnist-ann serve` as a user starts it, on a free port of 127.0.0.1, and plain HTTP requests to it."""

import contextlib
import json
import os
import signal
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.helpers.commands import finish, free_port, start_cli
from tests.helpers.wait import wait_for


def start_server(checkpoint, *args: str, timeout: float = 120, cwd: Path | None = None, env: dict | None = None):
    """`mnist-ann serve` on a free port, in `cwd` (the checkpoint's folder unless given); (process, base URL)
    once its health check answers."""
    port = free_port()
    process = start_cli(
        "serve", "--ckpt_path", str(checkpoint), "--port", str(port), *args, cwd=cwd or Path(checkpoint).parent, env=env
    )
    base = f"http://127.0.0.1:{port}"
    wait_for_answer(process, f"{base}/health", timeout, accept=lambda body: body == b"ok")
    return process, base


def lab_server(folder: Path, checkpoint: Path, data_dir: Path, *args: str):
    """`mnist-ann serve` in `folder`, its lab training on the data in `data_dir`; (process, base URL)."""
    return start_server(checkpoint, *args, cwd=folder, env={"MNIST_ANN_DATA_DIR": str(data_dir)})


def lab_job(base: str) -> dict:
    """The lab's job now, as GET /lab says: its kind, state, run and message."""
    return json.loads(get(f"{base}/lab"))["job"]


def wait_for_answer(process, url: str, timeout: float = 120, accept=lambda body: True) -> None:
    """`url` once it answers a body `accept` takes, while `process` (a server) runs; else the server is
    stopped and the test fails with what it printed."""

    def answered() -> bool:
        with contextlib.suppress(OSError):
            return bool(accept(get(url)))
        return False

    if not wait_for(answered, timeout, every=0.1, while_running=process):
        stop_server(process)
        pytest.fail(f"the server ended before it answered at {url}: {process.stderr_text[-3000:]}")


def stop_server(process) -> None:
    """SIGTERM, as a service manager stops it; then anything of its group still there is killed. What it
    printed on stderr is kept as `process.stderr_text`."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    process.stderr_text = finish(process, timeout=60).stderr


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


def post(
    url: str, body: bytes, content_type: str = "application/json", headers: dict | None = None
) -> tuple[int, dict]:
    headers = {"Content-Type": content_type, **(headers or {})}
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def wait_until_group_gone(group: int, process=None, timeout: float = 120) -> None:
    """Until no process of the process group `group` is left (`process`, its leader, reaped: a zombie still
    counts as a member of its group); the test fails if that takes over `timeout` seconds."""

    def gone() -> bool:
        if process is not None:
            process.poll()
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return True
        return False

    wait_for(gone, timeout)


PORT = 8123  # the service built in this process: never listens, its URLs only name this port
OWN = f"http://127.0.0.1:{PORT}"


def service_in_process(checkpoint, folder, monkeypatch, data_dir=None, **options):
    """The service `serve` runs (not started), in `folder`, on the data in `data_dir` or none (for FastAPI's
    TestClient)."""
    from mnist_ann.serve.lab import RUNS
    from mnist_ann.serve.runs import RunModels
    from mnist_ann.serve.server import service

    monkeypatch.chdir(folder)
    monkeypatch.setenv("MNIST_ANN_DATA_DIR", str(data_dir or folder / "no-data"))
    models = RunModels(RUNS, "cpu")
    options = {"access_log": False, **options}
    return service(checkpoint, models, models.load(checkpoint), port=PORT, **options)


@contextlib.contextmanager
def in_process_client(checkpoint, folder, data_dir=None, **options):
    """FastAPI's TestClient on that service with its inference workers started (LitServe's own test helper); the
    client's `folder` is the service's."""
    from fastapi.testclient import TestClient
    from litserve.utils import wrap_litserve_start

    with pytest.MonkeyPatch.context() as monkeypatch:
        server = service_in_process(checkpoint, folder, monkeypatch, data_dir, **options)
        with wrap_litserve_start(server) as started, TestClient(started.app, base_url=OWN) as client:
            client.folder = folder
            yield client
