"""How long the service takes to do what its tests only wait for: stop on a signal while loaded, notice a
killed worker and answer again, and answer small requests while enormous pictures arrive.

    python benchmarks/stops.py --data-dir ../shared/data [--repeats 3]

Each figure is from `mnist-ann serve` started as a user starts it, on 127.0.0.1, serving the recipe trained one
epoch. The last line reads `stop_s_max=<x> worker_back_s_max=<y> small_p99_ms=<z>` over the repeats.
"""

import argparse
import contextlib
import http.client
import json
import os
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from io import BytesIO
from pathlib import Path

from serve import ROOT, free_port, request_body, started, stopped, train_one_epoch


def post(port: int, body: bytes) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
    status = connection.getresponse().status
    connection.close()
    return status


def serve(checkpoint: Path, port: int):
    command = [sys.executable, "-m", "mnist_ann", "serve", "--ckpt_path", str(checkpoint), "--port", str(port)]
    return started(command, port, checkpoint.parent, ready="/health")


def group_gone(group: int, process) -> bool:
    process.poll()  # (a zombie still counts as a member of its group)
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return True
    return False


def stop_under_load(checkpoint: Path, body: bytes, signal_name: str) -> float:
    """Seconds from the signal to the service's whole process group to the last of its processes gone, with 16
    clients sending requests over kept-alive connections."""
    port = free_port()
    process = serve(checkpoint, port)
    done = threading.Event()

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        with contextlib.suppress(OSError, http.client.HTTPException):
            while not done.is_set():
                connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
                connection.getresponse().read()

    with ThreadPoolExecutor(16) as pool:
        for _ in range(16):
            pool.submit(client)
        time.sleep(3)  # loaded for a while first
        signalled = time.monotonic()
        os.killpg(process.pid, signal.Signals[signal_name])
        while not group_gone(process.pid, process) and time.monotonic() - signalled < 60:
            time.sleep(0.01)
        seconds = time.monotonic() - signalled
        done.set()
    stopped(process)
    return seconds


def worker_replaced(checkpoint: Path) -> tuple[float, float]:
    """Seconds from SIGKILL of the inference worker to /health saying so, and to /health answering ok again."""
    port = free_port()
    process = serve(checkpoint, port)
    try:
        [worker] = [
            int(pid)
            for pid in filter(str.isdigit, os.listdir("/proc"))
            if _in_group(int(pid), process.pid) and b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        killed = time.monotonic()
        os.kill(worker, signal.SIGKILL)
        noticed = None
        while time.monotonic() - killed < 120:
            healthy = _health(port)
            if noticed is None and not healthy:
                noticed = time.monotonic() - killed
            elif noticed is not None and healthy:
                return noticed, time.monotonic() - killed
            time.sleep(0.05)
        raise SystemExit("the worker was not replaced within 120 s")
    finally:
        stopped(process)


def _in_group(pid: int, group: int) -> bool:
    with contextlib.suppress(OSError):
        return os.getpgid(pid) == group
    return False


def _health(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/health")
        response = connection.getresponse()
        return response.status == 200 and response.read() == b"ok"
    except OSError:
        return False
    finally:
        connection.close()


def small_among_enormous(checkpoint: Path, body: bytes) -> list[float]:
    """Milliseconds of each of 20 small requests sent every 50 ms from the moment 30 pictures of 7000x7000 pixels
    arrive at once."""
    import base64

    import numpy as np
    from PIL import Image

    pixels = np.zeros((7000, 7000), np.uint8)
    pixels[1000:6000, 3000:3600] = 255
    picture = BytesIO()
    Image.fromarray(pixels).save(picture, format="PNG")
    big = json.dumps({"image": base64.b64encode(picture.getvalue()).decode()}).encode()
    port = free_port()
    process = serve(checkpoint, port)
    try:
        times = []

        def small() -> None:
            for _ in range(20):
                sent = time.monotonic()
                assert post(port, body) == 200
                times.append((time.monotonic() - sent) * 1000)
                time.sleep(0.05)

        with ThreadPoolExecutor(31) as pool:
            watcher = pool.submit(small)
            assert all(status == 413 for status in pool.map(lambda _: post(port, big), range(30)))
            watcher.result()
        return times
    finally:
        stopped(process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"), help="folder holding MNIST/raw/")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = train_one_epoch(Path(args.data_dir), Path(folder))
        body = request_body(Path(args.data_dir))
        stops, backs, smalls = [], [], []
        for repeat in range(args.repeats):
            for name in ("SIGTERM", "SIGINT"):
                stops.append(stop_under_load(checkpoint, body, name))
                print(f"{repeat}: {name} to the group under load: every process gone after {stops[-1]:.2f} s")
            noticed, back = worker_replaced(checkpoint)
            backs.append(back)
            print(f"{repeat}: killed worker: /health not ok after {noticed:.2f} s, ok again after {back:.2f} s")
            times = sorted(small_among_enormous(checkpoint, body))
            smalls += times
            print(f"{repeat}: 20 small requests as 30 enormous pictures arrive: slowest {times[-1]:.0f} ms")
    smalls.sort()
    p99 = smalls[min(len(smalls) - 1, int(0.99 * len(smalls)))]
    print(f"stop_s_max={max(stops):.2f} worker_back_s_max={max(backs):.2f} small_p99_ms={p99:.0f}")


if __name__ == "__main__":
    main()
