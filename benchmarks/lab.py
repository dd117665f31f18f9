"""What watching costs: the same `fit` from the command line, and from the page's lab with the page open.

The page run is started as a learner starts it: `mnist-ann serve` in a folder of its own, the page open in
headless Chromium with a digit drawn on it (so that every weights event also asks the run's live model
about the drawing), then `POST /lab/fit` with the settings; its time is from that request until the job is
no longer running (polled every 0.2 s). The command-line run is the very command the lab builds, without
the live report. Both include the process's start (imports, data loading), as a user waits for them.

    python benchmarks/lab.py --data-dir ../shared/data  # --epochs 10 --repeats 5

Needs chromium and chromium-driver (apt-get) and selenium (the dev extra).
"""

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from serve import free_port, started, stopped  # benchmarks/serve.py, beside this script

from mnist_ann.serve.settings import FitSettings

LIVE = "--trainer.callbacks+=mnist_ann.live.LiveReport"
SEVEN = [(0.28, 0.2), (0.72, 0.2), (0.45, 0.84)]  # a 7, in a unit box


def command_line(settings: dict, folder: Path, env: dict) -> float:
    arguments = [argument for argument in FitSettings(**settings).command_line() if argument != LIVE]
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "mnist_ann", "fit", *arguments, "--trainer.enable_progress_bar=false"],
        cwd=folder,
        env=env,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def from_the_page(settings: dict, folder: Path, env: dict, checkpoint: Path) -> float:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "mnist_ann", "serve", "--ckpt_path", str(checkpoint), "--port", str(port)]
    server = started([*command, "--access_log", "false"], port, folder, ready="/health", env=env)
    options = webdriver.ChromeOptions()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000"):
        options.add_argument(flag)
    browser = None
    try:
        browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        browser.get(f"{base}/")
        pad = browser.find_element("id", "pad")
        side = pad.rect["width"]
        points = [(round(x * side - side / 2), round(y * side - side / 2)) for x, y in SEVEN]
        chain = ActionChains(browser, duration=10).move_to_element_with_offset(pad, *points[0]).click_and_hold()
        for (x0, y0), (x1, y1) in itertools.pairwise(points):
            chain.move_by_offset(x1 - x0, y1 - y0)
        chain.release().perform()

        request = urllib.request.Request(
            f"{base}/lab/fit", data=json.dumps(settings).encode(), headers={"Content-Type": "application/json"}
        )
        start = time.perf_counter()
        urllib.request.urlopen(request, timeout=30).read()
        while True:
            job = json.loads(urllib.request.urlopen(f"{base}/lab", timeout=30).read())["job"]
            if job["state"] != "running":
                break
            time.sleep(0.2)
        seconds = time.perf_counter() - start
        if job["state"] != "finished":
            raise RuntimeError(f"the page's run ended {job['state']}: {job['message']}")
        answers = int(browser.find_element("tag name", "body").get_attribute("data-answers"))
        print(f"  (the page showed {answers} answers while it trained)", flush=True)
        return seconds
    finally:
        if browser is not None:
            browser.quit()
        stopped(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    env = {**os.environ, "MNIST_ANN_DATA_DIR": str(Path(args.data_dir).resolve())}
    settings = {"epochs": args.epochs}  # otherwise the recipe: 784-128-64-10, SGD 0.01/0.9, batch 64
    times = {"command line": [], "page": []}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        for repeat in range(args.repeats):
            times["command line"].append(command_line(settings, folder, env))
            print(f"repeat {repeat + 1}: command line {times['command line'][-1]:.1f} s", flush=True)
            checkpoint = sorted(folder.glob("lightning_logs/version_*/checkpoints/best.ckpt"))[0]
            times["page"].append(from_the_page(settings, folder, env, checkpoint))
            print(f"repeat {repeat + 1}: page {times['page'][-1]:.1f} s", flush=True)
    cli, page = statistics.median(times["command line"]), statistics.median(times["page"])
    spread = {name: f"{min(values):.1f}-{max(values):.1f} s" for name, values in times.items()}
    print(
        f"the recipe, {args.epochs} epochs, medians of {args.repeats}: command line {cli:.1f} s "
        f"({spread['command line']}), from the page {page:.1f} s ({spread['page']}): "
        f"the page's run takes {page / cli:.3f}x"
    )


if __name__ == "__main__":
    main()
