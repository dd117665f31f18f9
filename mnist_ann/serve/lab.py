"""The page's lab: start a real `mnist-ann fit` from the page, watch it learn, stop it, test a run.

    GET  /lab            whether training is allowed here, the limits, the datasets present, the job now
    POST /lab/fit        {"hidden_sizes": [256, 128], "optimizer": "SGD", "lr": 0.01, "epochs": 10, ...}
    POST /lab/resume     {"run": "version_3"}: `fit` again from that run's last.ckpt
    POST /lab/test       {"run": "version_3"}: `test` of that run's best.ckpt
    POST /lab/stop       the job in progress stops as SIGTERM stops it (its step saved to last.ckpt)
    GET  /lab/runs       every run under lightning_logs/ (`mnist_ann.serve.runs`)
    GET  /lab/events     server-sent events: the job's state, and the watched run's `live.jsonl` as it grows

Each job is the command line itself, in a process of its own (`python -m mnist_ann fit ...`): the same configs
and code path as a user's, an ordinary run folder that replays with `fit --config <run>/config.yaml`, a crash
that cannot take the service down, and the stop a user already has (SIGTERM). The service's HTTP process only
starts it and reads the files it writes. One job at a time: training takes every core.
"""

import asyncio
import itertools
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from mnist_ann.errors import DataError
from mnist_ann.idx import ensure_files, resolve_data_dir
from mnist_ann.live import EVENTS
from mnist_ann.serve.runs import RUN, list_runs

RUNS = Path("lightning_logs")  # the recipe's logger folder, under the folder the service runs in
PID_FILE = ".lab-job.pid"  # in RUNS: the job's process, for the service's main process to stop at exit

LIMITS = {"layers": 4, "width": 2048, "parameters": 3_000_000, "epochs": 100, "batch_size": 1024, "lr": 1.0}
OPTIMIZERS = {"SGD": "torch.optim.SGD", "Adam": "torch.optim.Adam", "AdamW": "torch.optim.AdamW"}
SCHEDULES = {
    "constant": None,
    "one-cycle": "mnist_ann.schedules.OneCycle",
    "cosine": "mnist_ann.schedules.WarmupCosine",
}
AFFINE = {"rotation": 10, "scale": 0.1, "shear": 10, "translation": 0.05}
AUGMENTATIONS = {"none": {}, "affine": AFFINE, "affine+elastic": {**AFFINE, "elastic_alpha": 36, "elastic_sigma": 6}}
DATASETS = ("mnist", "fashion-mnist")
DEFAULTS = {
    "hidden_sizes": [128, 64],
    "optimizer": "SGD",
    "lr": 0.01,
    "batch_size": 64,
    "epochs": 10,
    "val_size": 5000,
    "schedule": "constant",
    "dropout": 0.0,
    "label_smoothing": 0.0,
    "augmentation": "none",
    "weight_averaging": False,
    "dataset": "mnist",
}


class Refused(Exception):
    """A request the lab does not carry out: its HTTP status and one message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def fit_arguments(request: dict, datasets: list[str]) -> list[str]:
    """The `fit` command line for the page's settings, refusing what is not a setting or over a limit."""
    if unknown := sorted(set(request) - set(DEFAULTS)):
        raise Refused(422, f"{unknown[0]}: not a setting (the settings: {', '.join(DEFAULTS)})")
    given = {**DEFAULTS, **request}
    sizes = given["hidden_sizes"]
    if not (isinstance(sizes, list) and all(type(size) is int for size in sizes)):
        raise Refused(422, "hidden_sizes: a list of whole numbers, one width per hidden layer")
    if len(sizes) > LIMITS["layers"] or not all(1 <= size <= LIMITS["width"] for size in sizes):
        raise Refused(422, f"hidden_sizes: at most {LIMITS['layers']} layers, each 1-{LIMITS['width']} units wide")
    widths = [784, *sizes, 10]
    if (parameters := sum(a * b + b for a, b in itertools.pairwise(widths))) > LIMITS["parameters"]:
        raise Refused(422, f"hidden_sizes: {parameters:,} parameters, over the {LIMITS['parameters']:,} allowed here")
    choose(given, "optimizer", OPTIMIZERS)
    choose(given, "schedule", SCHEDULES)
    choose(given, "augmentation", AUGMENTATIONS)
    choose(given, "dataset", datasets)
    number(given, "lr", 0, LIMITS["lr"], low_allowed=False)
    number(given, "dropout", 0, 0.9)
    number(given, "label_smoothing", 0, 0.5)
    whole(given, "epochs", 1, LIMITS["epochs"])
    whole(given, "batch_size", 1, LIMITS["batch_size"])
    whole(given, "val_size", 0, 30_000)
    if not isinstance(given["weight_averaging"], bool):
        raise Refused(422, "weight_averaging: true or false")

    arguments = [
        f"--model.hidden_sizes={json.dumps(sizes, separators=(',', ':'))}",
        f"--model.optimizer={OPTIMIZERS[given['optimizer']]}",
        f"--model.optimizer.lr={given['lr']}",
        f"--model.dropout={given['dropout']}",
        f"--model.label_smoothing={given['label_smoothing']}",
        f"--trainer.max_epochs={given['epochs']}",
        f"--data.batch_size={given['batch_size']}",
        f"--data.val_size={given['val_size']}",
        f"--data.dataset={given['dataset']}",
    ]
    if given["optimizer"] == "SGD":
        arguments.append("--model.optimizer.momentum=0.9")  # the recipe's
    if schedule := SCHEDULES[given["schedule"]]:
        arguments.append(f"--model.scheduler={schedule}")
    arguments += [f"--data.augmentation.{name}={value}" for name, value in AUGMENTATIONS[given["augmentation"]].items()]
    if given["weight_averaging"]:  # as configs/best.yaml averages
        arguments += [
            "--trainer.callbacks+=EMAWeightAveraging",
            "--trainer.callbacks.decay=0.999",
            "--trainer.callbacks.use_buffers=false",
        ]
    return [*arguments, "--trainer.callbacks+=mnist_ann.live.LiveReport"]  # what the page watches


def choose(given: dict, name: str, choices) -> None:
    if given[name] not in choices:
        raise Refused(422, f"{name}: one of {', '.join(map(str, choices))}, not {json.dumps(given[name])[:40]}")


def number(given: dict, name: str, low: float, high: float, low_allowed: bool = True) -> None:
    value = given[name]
    if type(value) not in (int, float) or not (low <= value <= high) or (value == low and not low_allowed):
        raise Refused(422, f"{name}: a number {'from' if low_allowed else 'above'} {low} to {high}")


def whole(given: dict, name: str, low: int, high: int) -> None:
    if type(given[name]) is not int or not low <= given[name] <= high:
        raise Refused(422, f"{name}: a whole number from {low} to {high}")


def run_folder(root: Path, request: dict) -> Path:
    """The run a request names (`{"run": "version_3"}`), which must be there."""
    name = request.get("run")
    if not (isinstance(name, str) and RUN.fullmatch(name) and (root / name).is_dir()):
        raise Refused(404, f"run: no run {json.dumps(name)[:40]} under {root}/")
    return root / name


class Job:
    """One `mnist-ann` command in a process of its own, its output kept in a file; the run it writes."""

    def __init__(self, kind: str, arguments: list[str], root: Path, run: Path | None = None) -> None:
        self.kind, self.root, self.run = kind, root, run
        self.stop_requested = False
        self.ended: tuple[str, str] | None = None  # once the process has exited: its state and last words
        self.earlier = {folder.name for folder in root.glob("version_*")}
        self.output = tempfile.TemporaryFile("w+")  # noqa: SIM115 (read while the job runs, closed with the job)
        command = [sys.executable, "-m", "mnist_ann", kind, *arguments, "--trainer.enable_progress_bar=false"]
        self.command = ["mnist-ann", kind, *arguments]
        self.process = subprocess.Popen(
            command, stdout=self.output, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
        root.mkdir(parents=True, exist_ok=True)
        (root / PID_FILE).write_text(str(self.process.pid))

    def watched(self) -> Path | None:
        """The run folder this job writes: for `fit`, the new one that appears."""
        if self.run is None and self.kind == "fit":
            new = [folder for folder in self.root.glob("version_*") if folder.name not in self.earlier]
            self.run = next((folder for folder in new if (folder / EVENTS).is_file()), None)
        return self.run

    def state(self) -> dict:
        if self.ended is None and (code := self.process.poll()) is not None:
            (self.root / PID_FILE).unlink(missing_ok=True)
            self.ended = {0: "finished", 128 + signal.SIGTERM: "stopped"}.get(code, "failed"), self.last_lines()
        state, message = self.ended or ("stopping" if self.stop_requested else "running", "")
        run = self.watched()
        return {
            "state": state,
            "kind": self.kind,
            "run": run.name if run else None,
            "command": shlex.join(self.command),
            "message": message,
        }

    def last_lines(self, count: int = 2) -> str:
        """What the command said last: its summary, its resume hint, or its one error line (not the warnings)."""
        self.output.seek(0)
        lines = [line.strip() for line in self.output.read().splitlines()[-200:]]
        said = [line for line in lines if line and not re.search(r"\.py:\d+: ", line)]
        errors = [line for line in said if line.startswith("error:")]
        return "\n".join(errors[-1:] or said[-count:])

    def stop(self) -> None:
        self.stop_requested = True
        self.process.send_signal(signal.SIGTERM)


class Lab:
    """The lab's one job at a time, and whether this service may train at all."""

    def __init__(self, root: Path, allowed: bool, data_dir: str | None = None) -> None:
        self.root, self.allowed = root, allowed
        self.data_dir = resolve_data_dir(data_dir)
        self.job: Job | None = None
        self.lock = threading.Lock()

    def datasets(self) -> list[str]:
        present = []
        for dataset in DATASETS:
            try:
                ensure_files(self.data_dir, download=False, dataset=dataset)
                present.append(dataset)
            except DataError:
                pass
        return present

    def check_allowed(self) -> None:
        if not self.allowed:
            raise Refused(
                403,
                "training from the page is off: this service listens beyond 127.0.0.1; "
                "start it with --allow_remote_training true to let every client that reaches it train",
            )

    def start(self, kind: str, arguments: list[str], run: Path | None = None) -> dict:
        self.check_allowed()
        with self.lock:
            if self.job and self.job.process.poll() is None:
                raise Refused(
                    409,
                    f"a {self.job.kind} is in progress ({self.job.state()['run'] or 'starting'}): "
                    "stop it first, or wait for it to end",
                )
            self.job = Job(kind, arguments, self.root, run)
            return self.job.state()

    def stop(self) -> dict:
        self.check_allowed()
        with self.lock:
            if not (self.job and self.job.process.poll() is None):
                raise Refused(409, "nothing is training: there is nothing to stop")
            self.job.stop()
            return self.job.state()

    def state(self) -> dict:
        return self.job.state() if self.job else {"state": "idle", "kind": None, "run": None, "message": ""}

    def about(self) -> dict:
        return {
            "allowed": self.allowed,
            "limits": LIMITS,
            "defaults": DEFAULTS,
            "choices": {
                "optimizer": list(OPTIMIZERS),
                "schedule": list(SCHEDULES),
                "augmentation": list(AUGMENTATIONS),
                "dataset": self.datasets(),
            },
            "job": self.state(),
        }


def stop_job_left_running(root: Path = RUNS, seconds: float = 60) -> None:
    """At the service's exit: the lab's job, if one still runs, stops as SIGTERM stops it (its step saved);
    this waits for it, so that no process is left."""
    try:
        pid = int((root / PID_FILE).read_text())
        if b"mnist_ann" not in Path(f"/proc/{pid}/cmdline").read_bytes():  # a file left by a killed service
            raise ProcessLookupError
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        (root / PID_FILE).unlink(missing_ok=True)
        return
    print(f"stopping the lab's training (process {pid}): its step is saved to last.ckpt", file=sys.stderr)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            break
        time.sleep(0.1)
    (root / PID_FILE).unlink(missing_ok=True)


def refusing(action):
    """A route of `action(request)`: its JSON answer, or a refusal's `{"error": ...}` with its status."""

    async def route(request: Request) -> JSONResponse:
        try:
            return JSONResponse(await action(request))
        except Refused as refused:
            return JSONResponse({"error": refused.message}, status_code=refused.status)

    return route


async def body(request: Request) -> dict:
    """The request's JSON object."""
    try:
        sent = await request.json()
    except ValueError:
        raise Refused(400, "malformed JSON") from None
    if not isinstance(sent, dict):
        raise Refused(422, "send a JSON object")
    return sent


def add_lab(app: FastAPI, lab: Lab) -> None:
    """The lab's routes on the service's app (see the module's docstring)."""

    async def about(request: Request) -> dict:
        return lab.about()

    async def fit(request: Request) -> dict:
        lab.check_allowed()
        return lab.start("fit", fit_arguments(await body(request), lab.datasets()))

    async def resume(request: Request) -> dict:
        lab.check_allowed()
        run = run_folder(lab.root, await body(request))
        if not (last := run / "checkpoints" / "last.ckpt").is_file():
            raise Refused(409, f"{run.name} has no last.ckpt to resume from")
        return lab.start("fit", ["--config", str(run / "config.yaml"), "--ckpt_path", str(last)])

    async def test(request: Request) -> dict:
        lab.check_allowed()
        run = run_folder(lab.root, await body(request))
        if not (best := run / "checkpoints" / "best.ckpt").is_file():
            raise Refused(409, f"{run.name} has no best.ckpt to test")
        return lab.start("test", ["--config", str(run / "config.yaml"), "--ckpt_path", str(best)], run)

    async def stop(request: Request) -> dict:
        return lab.stop()

    async def runs(request: Request) -> list:
        return list_runs(lab.root)

    for path, action, method in [
        ("/lab", about, "GET"),
        ("/lab/fit", fit, "POST"),
        ("/lab/resume", resume, "POST"),
        ("/lab/test", test, "POST"),
        ("/lab/stop", stop, "POST"),
        ("/lab/runs", runs, "GET"),
    ]:
        app.add_api_route(path, refusing(action), methods=[method], include_in_schema=False)

    async def watch(request: Request) -> StreamingResponse:
        return events(lab, request)

    app.add_api_route("/lab/events", watch, methods=["GET"], include_in_schema=False)


def events(lab: Lab, request: Request) -> StreamingResponse:
    """Server-sent events: `job` when the job's state changes, `live` for each line of the watched run's
    live.jsonl (from its beginning, so that a page that connects late draws the whole curve)."""

    async def stream():
        sent, run, offset, partial, quiet = None, None, 0, "", 0.0
        while not await request.is_disconnected():
            state = lab.state()
            if state != sent:
                sent = state
                yield f"event: job\ndata: {json.dumps(state)}\n\n"
            watched = lab.job.watched() if lab.job else None
            if watched != run:
                run, offset, partial = watched, 0, ""
            if run is not None and (run / EVENTS).is_file():
                with open(run / EVENTS) as file:
                    file.seek(offset)
                    partial += file.read()
                    offset = file.tell()
                *lines, partial = partial.split("\n")  # a line being written waits for its end
                for line in lines:
                    yield f"event: live\ndata: {line}\n\n"
                    quiet = 0.0
            quiet += 0.25
            if quiet >= 15:  # a comment now and then keeps proxies from closing a quiet stream
                quiet = 0.0
                yield ": waiting\n\n"
            await asyncio.sleep(0.25)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
