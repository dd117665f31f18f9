"""`mnist-ann serve` as a user starts it, on a free port of 127.0.0.1, and plain HTTP requests to it."""

import json
import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.helpers.commands import finish, free_port, start_cli


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


def wait_for_answer(process, url: str, timeout: float = 120, accept=lambda body: True) -> None:
    """`url` once it answers a body `accept` takes, while `process` (a server) runs; else the server is
    stopped and the test fails with what it printed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if accept(get(url)):
                return
        except OSError:
            pass
        if process.poll() is not None:
            break
        time.sleep(0.3)
    stop_server(process)
    pytest.fail(f"the server did not come up at {url}: {process.stderr_text[-3000:]}")


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


def wait_until_group_gone(group: int, seconds: float = 30) -> None:
    """Fail unless every process of the process group `group` ends within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return  # no process of its group is left
        time.sleep(0.2)
    pytest.fail(f"processes of the group {group} were still running {seconds} s later")
