"""POST /predict's latency while another client keeps drawings into a large collection.

The service starts in a folder whose collection already holds `--drawings` drawings (real MNIST test
digits, written through `mnist_ann.collect`). One client then saves drawings one after the other (as a
learner clicking "keep" as fast as the page allows), while another sends `--requests` predictions one at a
time; the medians and 90th percentiles of both, and the prediction median with nobody saving.

    python benchmarks/collect.py --data-dir ../shared/data [--drawings 1000] [--requests 300] [--package DIR]

`--package DIR` serves the `mnist_ann` found in DIR (an older checkout, to compare with). The last line reads
`predict_p50_ms_quiet=<a> predict_p50_ms_saving=<b> save_p50_ms=<c> saves=<n>`.
"""

import argparse
import base64
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.serve import free_port, started, stopped, train_one_epoch  # noqa: E402


def png(digit) -> bytes:
    from PIL import Image

    buffer = BytesIO()
    Image.fromarray(255 - digit.numpy()).resize((280, 280)).save(buffer, format="PNG")  # as the pad draws
    return buffer.getvalue()


def timed_post(url: str, body: bytes) -> float:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()
    return (time.perf_counter() - start) * 1000


def percentile(values: list[float], share: float) -> float:
    return sorted(values)[int(share * (len(values) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--drawings", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--package", type=Path, default=ROOT, help="the folder whose mnist_ann is served")
    args = parser.parse_args()

    from mnist_ann.collect import Collection
    from mnist_ann.idx import load_split

    images, labels = load_split(args.data_dir, train=False)
    folder = Path(tempfile.mkdtemp(prefix="collect-bench-"))
    checkpoint = train_one_epoch(args.data_dir, folder)
    collection = Collection(folder / "my_digits")
    for index in range(args.drawings):
        collection.save(png(images[index]), int(labels[index]))
    digit = json.dumps({"image": base64.b64encode(png(images[-1])).decode()}).encode()
    drawings = [
        json.dumps({"image": base64.b64encode(png(images[-2 - i])).decode(), "label": int(labels[-2 - i])}).encode()
        for i in range(50)
    ]

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(args.package.resolve()), "MNIST_ANN_DATA_DIR": str(args.data_dir)}
    command = [sys.executable, "-m", "mnist_ann", "serve", "--ckpt_path", str(checkpoint), "--port", str(port)]
    server = started([*command, "--access_log", "false"], port, folder, ready="/health", env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(20):  # warm-up
            timed_post(f"{base}/predict", digit)
        quiet = [timed_post(f"{base}/predict", digit) for _ in range(args.requests)]
        saving, saves, done = [], [], threading.Event()

        def keep_drawings() -> None:
            index = 0
            while not done.is_set():
                saves.append(timed_post(f"{base}/collect", drawings[index % len(drawings)]))
                index += 1

        saver = threading.Thread(target=keep_drawings)
        saver.start()
        try:
            saving = [timed_post(f"{base}/predict", digit) for _ in range(args.requests)]
        finally:
            done.set()
            saver.join()
    finally:
        stopped(server)
    print(f"served from {args.package}; a collection of {args.drawings} drawings, then {len(saves)} more kept")
    print(f"predict, nobody saving:   p50 {statistics.median(quiet):7.1f} ms  p90 {percentile(quiet, 0.9):7.1f} ms")
    print(f"predict, a client saving: p50 {statistics.median(saving):7.1f} ms  p90 {percentile(saving, 0.9):7.1f} ms")
    print(f"save:                     p50 {statistics.median(saves):7.1f} ms  p90 {percentile(saves, 0.9):7.1f} ms")
    print(
        f"predict_p50_ms_quiet={statistics.median(quiet):.1f} predict_p50_ms_saving={statistics.median(saving):.1f} "
        f"save_p50_ms={statistics.median(saves):.1f} saves={len(saves)}"
    )


if __name__ == "__main__":
    main()
