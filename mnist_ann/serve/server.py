"""`mnist-ann serve`: a trained checkpoint as an HTTP prediction service on LitServe, with a page to draw on.

    POST /predict   {"image": "<base64 of a PNG, JPEG, ...>", "explain": false}, or a file upload
                    (multipart form, field `file`); the answer is the predicted class, its name, every
                    class's probability (the value, for regression) and, with "explain", what the
                    network saw: the prepared 28x28 input, each layer's activations, and how much
                    each pixel pushed it toward the predicted class (`mnist_ann.explain`).
    GET  /          the draw-a-digit page (mnist_ann/serve/web/: index.html, its stylesheet and modules)
    GET  /health    LitServe's health check: "ok" once a worker is ready

Pictures go through the very preparation `predict` gives files (`mnist_ann.images`). Requests pass
two places, each answering what it can with `{"error": ...}` and a 4xx status: the guards and middlewares
(`mnist_ann.serve.app`), in the HTTP process, for the HTTP-level mistakes (host, size, syntax, fields), and
`DigitAPI` in the inference workers for the image itself. A worker never raises for a bad request: LitServe
would fail every request batched with it.

Every process the service starts ends with its main process, however that ends (`die_with_parent`; the lab's
job through its lifeline, `mnist_ann.serve.jobs`).
"""

import base64
import binascii
import ctypes
import multiprocessing
import os
import secrets
import signal
import socket
import sys
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Literal

import litserve as ls
import torch
from fastapi.responses import JSONResponse
from jsonargparse.typing import NonNegativeFloat, PositiveInt, restricted_number_type

from mnist_ann.checkpoints import check_checkpoint, resolve_checkpoint
from mnist_ann.collect import Collection
from mnist_ann.data import normalize
from mnist_ann.errors import UserError
from mnist_ann.explain import class_attributions
from mnist_ann.idx import resolve_data_dir
from mnist_ann.images import (
    BlankImage,
    DamagedImage,
    EmptyImage,
    ImageError,
    OversizedImage,
    UnreadableImage,
    load_image,
    prepare,
)
from mnist_ann.model import MNISTClassifier
from mnist_ann.serve.app import Service, complete
from mnist_ann.serve.guard import OwnPage, host_names
from mnist_ann.serve.jobs import Lab, wait_for_job
from mnist_ann.serve.lab import RUNS
from mnist_ann.serve.middleware import NO_IMAGE_FIELD, ServiceMetrics
from mnist_ann.serve.runs import RunModels
from mnist_ann.threads import AUTO, use_threads

Port = restricted_number_type("Port", int, [(">=", 1024), ("<=", 65535)])
STOP_SECONDS = 2
IMAGE_STATUS = {EmptyImage: 400, UnreadableImage: 415, DamagedImage: 422, OversizedImage: 413, BlankImage: 422}


@dataclass
class Rejected:
    """A request the worker cannot answer with a prediction: its HTTP status and why."""

    status: int
    error: str


@dataclass
class Prepared:
    """A picture prepared MNIST-style, uint8 (28, 28), whether the answer should explain itself (toward which
    class: `target`, else the predicted one), and which model answers (`model`: a run of the lab, else the
    served checkpoint)."""

    digit: torch.Tensor
    explain: bool
    target: int | None = None
    model: str | None = None


class DigitAPI(ls.LitAPI):
    """Decode and prepare pictures, run the network on a batch of them, and answer each in JSON."""

    def __init__(
        self, checkpoint: str, runs: str, max_batch_size: int = 1, batch_timeout: float = 0.0, stopping=None
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout)
        self.checkpoint, self.runs = checkpoint, runs
        self.service = os.getpid()  # the service's main process, which starts the workers
        # Set by the main process once it stops (`stop_on_signals`): a worker that LitServe's monitor started
        # again meanwhile (a SIGTERM to the whole group ended the one before) then leaves at once, instead of
        # failing with a traceback against LitServe's manager, which the stop has ended.
        self.stopping = stopping or multiprocessing.get_context("spawn").Event()

    def setup(self, device: str) -> None:
        # Ctrl-C reaches every process of the terminal's group: the main process stops this one in order.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        die_with_parent(self.service)
        self.device = device
        self.models = RunModels(Path(self.runs), device)
        self.served = self.models.load(Path(self.checkpoint))  # held here: the runs' models come and go from the cache
        # The threads a batch of pictures pays for, chosen as every command chooses them (one, for the recipe).
        use_threads(AUTO, self.served[0], self.max_batch_size)
        if self.stopping.is_set():
            os._exit(0)

    # (No type annotations on decode_request's request nor on encode_response's result: LitServe makes
    # FastAPI's request and response models of them.)
    def decode_request(self, request):
        if not (isinstance(request, dict) and isinstance(request.get("image"), str)):  # (the gate refuses these)
            return Rejected(422, NO_IMAGE_FIELD)
        try:
            data = base64.b64decode(request["image"], validate=True)
        except (binascii.Error, ValueError):
            return Rejected(400, "image: not valid base64")
        try:
            digit = prepare(load_image(BytesIO(data), "image"), "image")
        except ImageError as error:
            return Rejected(IMAGE_STATUS.get(type(error), 422), str(error))
        return Prepared(digit, bool(request.get("explain")), request.get("target"), request.get("model"))

    @torch.inference_mode()  # (attributions leave it: they need gradients)
    def predict(self, inputs: list | Prepared | Rejected) -> list | dict | Rejected:
        # With max_batch_size > 1, LitServe's own batch() hands over the list as it is: pictures and rejects.
        items = inputs if isinstance(inputs, list) else [inputs]
        results = list(items)
        for name in {item.model for item in items if isinstance(item, Prepared)}:
            group = [index for index, item in enumerate(items) if isinstance(item, Prepared) and item.model == name]
            try:
                model, about = self.models.named(name) if name else self.served
            except LookupError as error:
                for index in group:
                    results[index] = Rejected(404, str(error))
                continue
            for index in group:  # a class this model does not have: that request's mistake alone
                if (target := items[index].target) is not None and not 0 <= target < len(model.class_names):
                    results[index] = Rejected(422, f"target: {target} is not a class of this model")
            ready = [index for index in group if isinstance(results[index], Prepared)]
            if ready:
                for index, answer in zip(ready, self.answer(model, about, [items[i] for i in ready]), strict=True):
                    results[index] = answer
        return results if isinstance(inputs, list) else results[0]

    def answer(self, model: MNISTClassifier, about: dict, pictures: list[Prepared]) -> list[dict]:
        images = normalize(torch.stack([picture.digit for picture in pictures])).to(self.device)
        layers = model.net.layer_outputs(images)
        predicted = model.task.predict(layers[-1])
        names = model.class_names
        targets = predicted["classes"].clone()
        for index, picture in enumerate(pictures):
            if picture.target is not None:
                targets[index] = picture.target
        explained = [index for index, picture in enumerate(pictures) if picture.explain]
        why = {}  # for each explained picture: what pushed it toward its target class
        if explained:
            toward = class_attributions(model, images[explained], targets[explained])
            why = dict(zip(explained, toward, strict=True))
        answers = []
        for index, picture in enumerate(pictures):
            cls = predicted["classes"][index].item()
            answer = {"class": cls, "name": names[cls], "classes": names, "model": about}
            if "probabilities" in predicted:
                answer["probabilities"] = predicted["probabilities"][index].tolist()
            else:
                answer["value"] = predicted["values"][index].item()
            if picture.explain:
                answer["input"] = picture.digit.tolist()
                answer["layers"] = [layer[index].tolist() for layer in layers]  # the last: the output layer's logits
                answer["target"] = targets[index].item()
                answer["attribution"] = why[index].tolist()
            answers.append(answer)
        return answers

    def encode_response(self, output):
        if isinstance(output, Rejected):
            return JSONResponse({"error": output.error}, status_code=output.status)
        return output


def serve(
    ckpt_path: str = "best",
    host: Literal["127.0.0.1", "0.0.0.0", "::"] = "127.0.0.1",
    port: Port = 8000,
    workers: PositiveInt = 1,
    max_batch_size: PositiveInt = 1,
    batch_timeout: NonNegativeFloat = 0.0,
    fast_queue: bool = True,
    access_log: bool = True,
    allow_remote_training: bool = False,
    training_key: str | None = None,
    collect_dir: str = "my_digits",
) -> None:
    """Serve a checkpoint over HTTP until Ctrl-C or SIGTERM.

    Args:
        ckpt_path: the checkpoint (loaded with weights_only=True); `best` or `last`: that file of the
            newest run under lightning_logs/.
        host: 127.0.0.1 (this machine only), or 0.0.0.0 / :: (every interface: others can reach it).
        port: the TCP port, 1024-65535.
        workers: inference processes; each loads the model and takes batches of requests.
        max_batch_size: requests a worker answers with one forward pass, at most.
        batch_timeout: seconds a worker waits to fill a batch.
        fast_queue: pass requests to the workers over ZeroMQ rather than multiprocessing queues.
        access_log: one line on stderr per request: client, method, path, status, milliseconds.
        allow_remote_training: let the page's lab train, and keep drawings, when the service listens beyond
            127.0.0.1: any client that reaches it and has the training key can then use this machine's cores
            for hours (on 127.0.0.1 the lab always trains).
        training_key: the key that training and saving from beyond this machine need (`Authorization: Bearer
            KEY`, or the page opened with #key=KEY); unset, a new one is printed at start.
        collect_dir: the folder the page keeps your labelled drawings in (`mnist_ann.collect`); created
            with the first one.
    """
    # The HTTP process, forked from this one, runs torch too (the collection, the measurements): a thread pool
    # this process had started would deadlock there, since a fork copies no threads.
    torch.set_num_threads(1)
    checkpoint = resolve_checkpoint(ckpt_path, {})
    saved = check_checkpoint(checkpoint, unsafe_option=None)  # (serve always loads weights only)
    # Built once here too, so that a checkpoint the model cannot take fails with its message, not in a worker.
    model = MNISTClassifier.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=True)
    check_port(host, port)
    stopping = multiprocessing.get_context("spawn").Event()
    local = host == "127.0.0.1"
    if not local and allow_remote_training and training_key is None:
        training_key = secrets.token_urlsafe(16)
    server = service(
        checkpoint,
        saved,
        model,
        host=host,
        port=port,
        workers=workers,
        max_batch_size=max_batch_size,
        batch_timeout=batch_timeout,
        fast_queue=fast_queue,
        access_log=access_log,
        training_allowed=local or allow_remote_training,
        training_key=training_key,
        collect_dir=collect_dir,
        stopping=stopping,
    )
    # Open connections get this long to finish when the server stops (LitServe's default, 30 s, made a stop
    # under load take that long); a prediction takes milliseconds.
    server.uvicorn_graceful_timeout = STOP_SECONDS
    server.monitor_internal = 0.5  # seconds between LitServe's checks that its workers live (2 by default)

    address = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    print(f"serving {checkpoint} with {workers} worker(s): the page {address}/, the API POST {address}/predict")
    if training_key is not None:
        print(f"training and saving from the page need its key: open {address}/#key={training_key}")
    stop_on_signals(stopping)
    die_with_this_process()
    try:
        # One HTTP process whatever the workers (LitServe starts one per worker by default): the lab's job, the
        # collection's writes and the metrics then live in one process, and one job runs at a time.
        server.run(host=host, port=port, num_api_servers=1, generate_client_file=False, log_level="warning")
    except RuntimeError as error:  # LitServe: "One or more workers failed to start"
        raise UserError(f"the server did not start: {error}") from None
    finally:
        wait_for_job(RUNS)


def service(
    checkpoint: Path,
    saved: dict,
    model: MNISTClassifier,
    host: str = "127.0.0.1",
    port: int | None = None,
    workers: int = 1,
    max_batch_size: int = 1,
    batch_timeout: float = 0.0,
    fast_queue: bool = True,
    access_log: bool = True,
    training_allowed: bool = True,
    training_key: str | None = None,
    collect_dir: str = "my_digits",
    stopping=None,
) -> ls.LitServer:
    """The LitServer of `serve`, its app complete (`mnist_ann.serve.app`), not yet started; `stopping`: the
    event its main process sets when it stops."""
    api = DigitAPI(str(checkpoint), str(RUNS), max_batch_size, batch_timeout, stopping)
    server = ls.LitServer(
        api,
        accelerator="auto",
        workers_per_device=workers,
        fast_queue=fast_queue,
        model_metadata=model_metadata(checkpoint, saved, model),
        restart_workers=True,  # a worker that dies is started again; /health is not "ok" until it is ready
    )
    models = RunModels(RUNS, "cpu")
    parts = Service(
        lab=Lab(RUNS),
        collection=Collection(collect_dir),
        models=models,
        served=models.load(checkpoint),  # held here: the runs' models come and go from the cache
        metrics=ServiceMetrics(),
        data_dir=resolve_data_dir(None),
        own_page=OwnPage(allowed=training_allowed, key=training_key),
        host_names=host_names(host),
        port=port,
        model_name=str(checkpoint),
        access_log=access_log,
    )
    complete(server.app, parts)
    return server


def check_port(host: str, port: int) -> None:
    """Refuse a port another program listens on, before anything says it is served."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will: TIME_WAIT is no obstacle
        try:
            probe.bind((host, port))
        except OSError as error:
            raise UserError(f"--port {port}: cannot listen on {host} ({error.strerror}); choose another port") from None


def model_metadata(checkpoint, saved: dict, model: MNISTClassifier) -> dict:
    """What GET /info says of the model: its checkpoint, task, layers, class names and validation accuracy."""
    scores = [
        state["best_model_score"].item()
        for key, state in saved.get("callbacks", {}).items()
        if "'monitor': 'val/acc'" in key and state.get("best_model_score") is not None
    ]
    return {
        "checkpoint": str(checkpoint),
        "task": model.hparams.task,
        "hidden_sizes": list(model.hparams.hidden_sizes),
        "class_names": model.class_names,
        "val_acc_best": max(scores) if scores else None,
        "global_step": saved.get("global_step"),
    }


def stop_on_signals(stopping) -> None:
    """SIGTERM and SIGINT stop the server as Ctrl-C does: LitServe then stops its HTTP servers and workers in
    order (SIGINT too, since a process started in the background may have inherited it ignored); `stopping`
    (an event the workers see) is set first.

    LitServe's manager process is forked from this one and inherits the handler: there a signal is left to
    this process, which stops it last, since a manager gone first (a signal to the whole process group, as
    systemd and a terminal's Ctrl-C send) broke LitServe's worker monitor with a traceback. The HTTP servers
    install uvicorn's own handlers."""
    main = os.getpid()

    def stop(signum, frame) -> None:
        if os.getpid() == main:
            stopping.set()
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


_forking = 0  # the pid of the process that forks, recorded before each fork


def die_with_this_process() -> None:
    """Every process this one forks from here on (LitServe's HTTP process and manager) is killed when this one
    ends, however it ends: a `kill -9` of the service would otherwise leave them holding its port."""

    def before() -> None:
        global _forking
        _forking = os.getpid()

    os.register_at_fork(before=before, after_in_child=lambda: die_with_parent(_forking))


def die_with_parent(parent: int) -> None:
    """This process gets SIGKILL when `parent` ends (Linux's PR_SET_PDEATHSIG; elsewhere nothing happens); if it
    has ended already, this process ends now."""
    if not sys.platform.startswith("linux"):
        return
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)
