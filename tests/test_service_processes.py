"""The service's promises that need its real processes: another origin's page in Chromium, `--workers 2`, a huge
body against the listening process's memory, Stop in the first second, two services in one folder, and a
`kill -9` of the main process. Each runs `mnist-ann serve` as a user starts it, on the synthetic data."""

import base64
import http.client
import http.server
import json
import os
import signal
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import pytest
import torch

from tests.helpers.commands import finish, free_port, unexpected_warnings
from tests.helpers.service import get, lab_job, lab_server, post, stop_server, wait_until_group_gone
from tests.helpers.synthetic import bar_picture
from tests.helpers.wait import wait_for

pytestmark = pytest.mark.slow
LONG_RUN = json.dumps({"hidden_sizes": [48, 24], "epochs": 100, "batch_size": 32, "val_size": 200}).encode()


def group_resident_kib(group: int) -> int:
    """The memory in use by every process of a process group (the service's: its HTTP process among them)."""
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.getpgid(int(pid)) == group:
                status = Path(f"/proc/{pid}/status").read_text()
                total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
        except (OSError, StopIteration):
            continue
    return total


HOSTILE_PAGE = """<!doctype html><html><body>
<form id="f" method="post" enctype="text/plain" action="{base}/collect" target="out">
<input name='{{"image": "{image}", "label": 9, "x": "' value='"}}'></form>
<iframe name="out"></iframe>
<script>
const body = JSON.stringify({{image: "{image}", label: 9}});
const sent = [];
for (const [path, data] of [["lab/fit", "{{}}"], ["collect", body], ["lab/stop", "{{}}"]]) {{
  sent.push(fetch("{base}/" + path, {{method: "POST", mode: "no-cors", body: data}}).catch(() => null));
  sent.push(fetch("{base}/" + path, {{method: "POST", mode: "no-cors", body: data,
    headers: {{"Content-Type": "text/plain"}}}}).catch(() => null));
  sent.push(fetch("{base}/" + path, {{method: "POST", body: data,
    headers: {{"Content-Type": "application/json"}}}}).catch(() => null));
}}
Promise.all(sent).then(() => {{ document.title = "sent"; document.getElementById("f").submit(); }});
</script></body></html>"""


def test_another_origins_page_in_chromium_starts_nothing_and_saves_nothing(
    trained_checkpoint, synthetic_data_dir, browser, tmp_path
):
    process, base = lab_server(tmp_path, trained_checkpoint, synthetic_data_dir)
    (site := tmp_path / "site").mkdir()
    page = site / "index.html"
    digit = base64.b64encode(bar_picture_png()).decode()
    page.write_text(HOSTILE_PAGE.format(base=base, image=digit))
    other = http.server.ThreadingHTTPServer(
        ("127.0.0.1", free_port()), partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    )
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        for url in (f"http://127.0.0.1:{other.server_port}/index.html", page.as_uri()):
            browser.get(url)
            wait_for(lambda: browser.title == "sent", timeout=30)
            wait_for(lambda: browser.execute_script("return document.readyState") == "complete", timeout=30)
            metrics = get(f"{base}/metrics").decode()
            assert 'path="/collect",status="403"' in metrics or 'path="/collect",status="415"' in metrics
            assert lab_job(base)["state"] == "idle" and not (tmp_path / "my_digits").exists()
            assert not (tmp_path / "lightning_logs").exists()
        # The service's own page still saves (the page's browser tests drive the rest of it).
        browser.get(f"{base}/")
        saved = browser.execute_async_script(
            """const done = arguments[arguments.length - 1];
            import("./web/request.js").then(({call}) => call("collect", {image: arguments[0], label: 1}))
              .then((answer) => done(answer.kept.number), (error) => done(String(error)));""",
            digit,
        )
        assert saved == 1
    finally:
        other.shutdown()
        stop_server(process)


def bar_picture_png() -> bytes:
    from io import BytesIO

    file = BytesIO()
    bar_picture().save(file, format="PNG")
    return file.getvalue()


def answer_on(connection: socket.socket) -> http.client.HTTPResponse:
    """The service's answer to what was sent on `connection`, read whole."""
    connection.settimeout(30)
    answer = http.client.HTTPResponse(connection)
    answer.begin()
    answer.body = answer.read().decode()
    return answer


def test_two_workers_run_one_job_count_each_request_once_hold_no_huge_body_and_stop_on_sigterm(
    trained_checkpoint, synthetic_data_dir, tmp_path
):
    process, base = lab_server(tmp_path, trained_checkpoint, synthetic_data_dir, "--workers", "2")
    port = int(base.rsplit(":", 1)[1])
    try:
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: post(f"{base}/lab/fit", LONG_RUN)[0], range(4)))
        assert sorted(answers) == [200, 409, 409, 409]
        # Stop at once, before the first step: stopped, and no run folder that lists nothing.
        assert post(f"{base}/lab/stop", b"{}")[0] == 200
        ended = wait_for(lambda: (state := lab_job(base))["state"] not in ("running", "stopping") and state)
        assert ended["state"] == "stopped" and ended["message"], ended
        assert all((run / "checkpoints").is_dir() for run in (tmp_path / "lightning_logs").glob("version_*"))
        assert all(run["settings"] for run in json.loads(get(f"{base}/lab/runs")))

        before = group_resident_kib(process.pid)
        for path in ("/collect", "/lab/fit", "/predict"):  # 300 MB announced: refused before a byte of it is read
            with socket.create_connection(("127.0.0.1", port)) as connection:
                connection.sendall(
                    f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    "Content-Length: 300000000\r\n\r\n".encode()
                )
                answer = answer_on(connection)
            assert answer.status == 413 and "300,000,000 bytes, over the 10,485,760 accepted" in answer.body
            assert answer.getheader("Connection") == "close"  # the rest of the body is never read
        for path in ("/collect", "/lab/fit", "/predict"):  # streamed with no length: refused as it passes the limit
            with socket.create_connection(("127.0.0.1", port)) as connection:
                connection.sendall(
                    f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n".encode()
                )
                for _ in range(10):
                    connection.sendall(b"100000\r\n" + b"[" * 2**20 + b"\r\n")
                connection.sendall(b"1\r\n[\r\n0\r\n\r\n")  # one byte over, and the end
                assert answer_on(connection).status == 413
        assert group_resident_kib(process.pid) - before < 100_000  # a third of one announced body
        # Each request counted once, by the one HTTP process.
        metrics = get(f"{base}/metrics").decode()
        assert 'mnist_ann_requests_total{method="POST",path="/lab/fit",status="409"} 3.0' in metrics

        process.send_signal(signal.SIGTERM)  # as a service manager stops it: it ends, and everything it started
        assert process.wait(timeout=60) == 0
        wait_until_group_gone(process.pid)
        assert unexpected_warnings(finish(process).stderr) == []
    finally:
        if process.returncode is None:
            stop_server(process)


def test_a_killed_service_leaves_no_process_and_never_touches_another_services_job(
    trained_checkpoint, synthetic_data_dir, tmp_path
):
    first, first_base = lab_server(tmp_path, trained_checkpoint, synthetic_data_dir)
    second, _ = lab_server(tmp_path, trained_checkpoint, synthetic_data_dir)
    try:
        assert post(f"{first_base}/lab/fit", LONG_RUN)[0] == 200
        run = tmp_path / "lightning_logs" / wait_for(lambda: lab_job(first_base)["run"])
        wait_for(lambda: (run / "live.pt").is_file())
        stop_server(second)  # the other service in the same folder stops: the first's run goes on
        wait_until_group_gone(second.pid)
        assert lab_job(first_base)["state"] == "running"

        os.kill(first.pid, signal.SIGKILL)  # the main process alone
        assert first.wait(timeout=30) == -signal.SIGKILL
        wait_until_group_gone(first.pid)  # its HTTP process, LitServe's manager and workers, the run
        port = int(first_base.rsplit(":", 1)[1])
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", port))  # the port is free
        last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        ended = json.loads((run / "live.jsonl").read_text().splitlines()[-1])
        assert ended == {"event": "end", "step": last["global_step"], "reason": "stopped"} and last["global_step"] > 0
    finally:
        stop_server(first)
        stop_server(second)
