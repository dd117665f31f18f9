"""Requests per second and latency of `mnist-ann serve`, against its limit and against a plain FastAPI peer.

Each request is one real MNIST test digit as a PNG, base64 in a JSON body, as the page sends it.
Three ways, on one machine, loaded by Apache Bench (`ab`, from Debian's apache2-utils: a C load
generator, so that the client does not take the cores the server needs):

1. in-process: decode + prepare + forward + encode, one image at a time, no HTTP: the limit;
2. `mnist-ann serve` (LitServe) in each configuration of `--configs`, started as a user starts it;
3. fastapi: a minimal FastAPI + uvicorn endpoint doing the same work in one process: the server a
   user would otherwise write.

    python benchmarks/serve.py --data-dir ../shared/data [--requests 2000] [--configs default,batch1,...]

The last line reads `serve_rps_16=<x> p99_ms_16=<y> ratio_to_inprocess=<z> ratio_to_fastapi=<w> errors=<n>`,
for the default configuration with 16 concurrent clients.
"""

import argparse
import base64
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# serve's options for each configuration; "default" is what `mnist-ann serve` does without options
# (1 worker, requests passed over ZeroMQ (fast_queue), one request at a time).
CONFIGS = {
    "default": [],
    "litserve-defaults": ["--fast_queue", "false"],
    "batch8-2ms": ["--max_batch_size", "8", "--batch_timeout", "0.002"],
    "batch8-0ms": ["--max_batch_size", "8", "--batch_timeout", "0"],
    "2-workers": ["--workers", "2"],
}


def request_body(data_dir: Path, index: int = 0) -> bytes:
    from PIL import Image

    from mnist_ann.idx import load_split

    images, _ = load_split(data_dir, train=False)
    buffer = BytesIO()
    Image.fromarray(images[index].numpy()).save(buffer, format="PNG")
    return json.dumps({"image": base64.b64encode(buffer.getvalue()).decode()}).encode()


def in_process(checkpoint: str, body: bytes, requests: int) -> dict:
    """The work of one request without HTTP: the most a server can do with one core per request."""
    import torch

    from mnist_ann.serve.lab import RUNS
    from mnist_ann.serve.worker import DigitAPI

    api = DigitAPI(checkpoint, str(RUNS))
    api.setup("cpu")
    torch.set_num_threads(1)
    seconds = []
    for _ in range(requests):
        start = time.perf_counter()
        request = json.loads(body)
        json.dumps(api.encode_response(api.predict(api.decode_request(request))))
        seconds.append(time.perf_counter() - start)
    ordered = sorted(seconds)
    return {
        "rps": len(seconds) / sum(seconds),
        "p50": ordered[len(ordered) // 2] * 1000,
        "p99": ordered[int(len(ordered) * 0.99)] * 1000,
        "errors": 0,
    }


def fastapi_peer(checkpoint: str, port: int) -> None:
    """The same work behind a minimal FastAPI endpoint, in one uvicorn process."""
    import uvicorn
    from fastapi import FastAPI, Request

    from mnist_ann.serve.lab import RUNS
    from mnist_ann.serve.worker import DigitAPI

    api = DigitAPI(checkpoint, str(RUNS))
    api.setup("cpu")
    app = FastAPI()

    @app.post("/predict")
    async def predict(request: Request):
        return api.encode_response(api.predict(api.decode_request(await request.json())))

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def started(command: list[str], port: int, cwd: Path, ready: str = "/docs", env: dict | None = None):
    """A server in a process group of its own, once `ready` (a path) answers on 127.0.0.1:`port`."""
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{ready}", timeout=2):
                return process
        except OSError:
            if process.poll() is not None:
                sys.exit(f"{' '.join(command)} failed:\n{process.stderr.read().decode()[-3000:]}")
            time.sleep(0.3)
    stopped(process)
    sys.exit(f"{' '.join(command)} did not come up on port {port}")


def stopped(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pass
    finally:
        try:
            import os

            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def load(port: int, body_file: Path, requests: int, clients: int) -> dict:
    """`ab`: `requests` POSTs from `clients` concurrent connections, after a warm-up."""
    url = f"http://127.0.0.1:{port}/predict"
    ab = ["ab", "-q", "-p", str(body_file), "-T", "application/json"]
    subprocess.run([*ab, "-n", "200", "-c", str(clients), url], capture_output=True, check=True)  # warm-up
    output = subprocess.run([*ab, "-n", str(requests), "-c", str(clients), url], capture_output=True, text=True).stdout
    # Errors: non-2xx answers and failed connections. Not ab's "Length" failures: ab counts every answer whose
    # length differs from the first one's, and the probabilities' last digits vary with what is batched together.
    failed = re.search(r"\(Connect: (\d+), Receive: (\d+), Length: \d+, Exceptions: (\d+)\)", output)
    non_2xx = re.search(r"Non-2xx responses:\s+(\d+)", output)
    errors = (sum(map(int, failed.groups())) if failed else 0) + (int(non_2xx.group(1)) if non_2xx else 0)
    return {
        "rps": number(output, r"Requests per second:\s+([\d.]+)"),
        "p50": number(output, r"^\s+50%\s+(\d+)"),
        "p99": number(output, r"^\s+99%\s+(\d+)"),
        "errors": errors,
    }


def number(text: str, pattern: str) -> float:
    return float(re.search(pattern, text, re.MULTILINE).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"), help="folder holding MNIST/raw/")
    parser.add_argument("--checkpoint", help="a checkpoint to serve; default: the recipe trained 1 epoch here")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--configs", default="default", help=f"comma-separated, of: {', '.join(CONFIGS)}")
    parser.add_argument("--peer", help=argparse.SUPPRESS)  # internal: run the FastAPI peer on this port
    args = parser.parse_args()
    if args.peer:
        fastapi_peer(args.checkpoint, int(args.peer))
        return
    if not shutil.which("ab"):
        sys.exit("ab not found: apt-get install apache2-utils")

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        checkpoint = args.checkpoint or train_one_epoch(Path(args.data_dir), folder)
        body_file = folder / "digit.json"
        body_file.write_bytes(request_body(Path(args.data_dir)))
        rows = {"in-process": {1: in_process(str(checkpoint), body_file.read_bytes(), args.requests)}}
        servers = {
            f"serve {name}": [
                sys.executable,
                "-m",
                "mnist_ann",
                "serve",
                "--ckpt_path",
                str(checkpoint),
                *CONFIGS[name],
            ]
            for name in args.configs.split(",")
        }
        servers["fastapi"] = [sys.executable, __file__, "--checkpoint", str(checkpoint), "--peer"]
        for name, command in servers.items():
            port = free_port()
            command = [*command, str(port)] if name == "fastapi" else [*command, "--port", str(port)]
            process = started(command, port, folder)
            try:
                rows[name] = {clients: load(port, body_file, args.requests, clients) for clients in (1, 16)}
            finally:
                stopped(process)
            print(f"{name}: {rows[name]}", file=sys.stderr)

    print(f"\n{'':<26}{'1 client':>26}{'16 clients':>30}")
    print(f"{'':<26}{'req/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'req/s':>12}{'p50 ms':>8}{'p99 ms':>8}{'errors':>8}")
    for name, by_clients in rows.items():
        one, many = by_clients[1], by_clients.get(16)
        line = f"{name:<26}{one['rps']:>9.0f}{one['p50']:>8.1f}{one['p99']:>8.1f}"
        if many:
            line += f"{many['rps']:>12.0f}{many['p50']:>8.0f}{many['p99']:>8.0f}{one['errors'] + many['errors']:>8}"
        print(line)
    serve = rows[f"serve {args.configs.split(',')[0]}"][16]
    errors = sum(by[clients]["errors"] for name, by in rows.items() for clients in by if name != "in-process")
    print(
        f"serve_rps_16={serve['rps']:.0f} p99_ms_16={serve['p99']:.0f} "
        f"ratio_to_inprocess={serve['rps'] / rows['in-process'][1]['rps']:.2f} "
        f"ratio_to_fastapi={serve['rps'] / rows['fastapi'][16]['rps']:.2f} errors={errors}"
    )


def train_one_epoch(data_dir: Path, folder: Path) -> Path:
    """The recipe trained one epoch (the speed of serving does not depend on how well it is trained)."""
    import lightning as L

    from mnist_ann.data import MNISTDataModule
    from mnist_ann.model import MNISTClassifier

    L.seed_everything(42)
    trainer = L.Trainer(max_epochs=1, logger=False, enable_progress_bar=False, enable_checkpointing=False)
    trainer.fit(MNISTClassifier(), MNISTDataModule(data_dir, download=False))
    trainer.save_checkpoint(folder / "recipe.ckpt")
    return folder / "recipe.ckpt"


if __name__ == "__main__":
    main()
