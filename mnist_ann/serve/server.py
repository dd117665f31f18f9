"""`mnist-ann serve`: a trained checkpoint as an HTTP prediction service on LitServe, with a page to draw on.

    POST /predict   {"image": "<base64 of a PNG, JPEG, ...>", "explain": false}, or a file upload
                    (multipart form, field `file`); the answer is the predicted class, its name, every
                    class's probability (the value, for regression) and, with "explain", what the
                    network saw: the prepared 28x28 input, each layer's activations, and how much
                    each pixel pushed it toward the predicted class (`mnist_ann.explain`).
    GET  /          the draw-a-digit page (mnist_ann/serve/web/: index.html, its stylesheet and modules)
    GET  /health    LitServe's health check: "ok" once a worker is ready

Pictures go through the very preparation `predict` gives files (`mnist_ann.images`). Requests pass
two places, each answering what it can with `{"error": ...}` and a 4xx status: `mnist_ann.serve.middleware`, in
the HTTP process, for the HTTP-level mistakes (size, syntax, missing field), and `DigitAPI` in the
inference workers for the image itself. A worker never raises for a bad request: LitServe would
fail every request batched with it.
"""

import base64
import binascii
import os
import signal
import sys
from dataclasses import dataclass
from importlib.resources import files
from io import BytesIO
from pathlib import Path
from typing import Literal

import litserve as ls
import torch
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from jsonargparse.typing import NonNegativeFloat, PositiveInt, restricted_number_type

from mnist_ann.checkpoints import check_checkpoint, resolve_checkpoint
from mnist_ann.data import normalize
from mnist_ann.errors import UserError
from mnist_ann.explain import class_attributions
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
from mnist_ann.serve.middleware import MAX_BODY_BYTES, RequestGate, SecurityHeaders

Port = restricted_number_type("Port", int, [(">=", 1024), ("<=", 65535)])
IMAGE_STATUS = {EmptyImage: 400, UnreadableImage: 415, DamagedImage: 422, OversizedImage: 413, BlankImage: 422}


@dataclass
class Rejected:
    """A request the worker cannot answer with a prediction: its HTTP status and why."""

    status: int
    error: str


@dataclass
class Prepared:
    """A picture prepared MNIST-style, uint8 (28, 28), and whether the answer should explain itself."""

    digit: torch.Tensor
    explain: bool


class DigitAPI(ls.LitAPI):
    """Decode and prepare pictures, run the network on a batch of them, and answer each in JSON."""

    def __init__(self, checkpoint: str, max_batch_size: int = 1, batch_timeout: float = 0.0) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout)
        self.checkpoint = checkpoint

    def setup(self, device: str) -> None:
        # One image's forward pass is too small for torch's thread pool, whose second thread competes with
        # the HTTP server for the cores: one client got 558-570 requests/s with one thread, 443-528 without
        # (benchmarks/serve.py; with 16 clients the difference was within the noise).
        torch.set_num_threads(1)
        self.model = MNISTClassifier.load_from_checkpoint(self.checkpoint, map_location=device, weights_only=True)
        self.model.eval()
        self.device = device

    # (No type annotations on decode_request's request nor on encode_response's result: LitServe makes
    # FastAPI's request and response models of them.)
    def decode_request(self, request):
        try:
            data = base64.b64decode(request["image"], validate=True)
        except (binascii.Error, ValueError):
            return Rejected(400, "image: not valid base64")
        try:
            return Prepared(prepare(load_image(BytesIO(data), "image"), "image"), bool(request.get("explain")))
        except ImageError as error:
            return Rejected(IMAGE_STATUS.get(type(error), 422), str(error))

    @torch.inference_mode()  # (attributions leave it: they need gradients)
    def predict(self, inputs: list | Prepared | Rejected) -> list | dict | Rejected:
        # With max_batch_size > 1, LitServe's own batch() hands over the list as it is: pictures and rejects.
        items = inputs if isinstance(inputs, list) else [inputs]
        ready = [item for item in items if isinstance(item, Prepared)]
        answers = iter(self.answer(ready) if ready else [])
        results = [next(answers) if isinstance(item, Prepared) else item for item in items]
        return results if isinstance(inputs, list) else results[0]

    def answer(self, pictures: list[Prepared]) -> list[dict]:
        images = normalize(torch.stack([picture.digit for picture in pictures])).to(self.device)
        layers = self.model.net.layer_outputs(images)
        predicted = self.model.task.predict(layers[-1])
        names = self.model.class_names
        explained = [index for index, picture in enumerate(pictures) if picture.explain]
        why = {}  # for each explained picture: what pushed it toward its predicted class
        if explained:
            toward = class_attributions(self.model, images[explained], predicted["classes"][explained])
            why = dict(zip(explained, toward, strict=True))
        answers = []
        for index, picture in enumerate(pictures):
            cls = predicted["classes"][index].item()
            answer = {"class": cls, "name": names[cls], "classes": names}
            if "probabilities" in predicted:
                answer["probabilities"] = predicted["probabilities"][index].tolist()
            else:
                answer["value"] = predicted["values"][index].item()
            if picture.explain:
                answer["input"] = picture.digit.tolist()
                answer["layers"] = [layer[index].tolist() for layer in layers]
                answer["attribution"] = why[index].tolist()
            answers.append(answer)
        return answers

    def encode_response(self, output):
        if isinstance(output, Rejected):
            return JSONResponse({"error": output.error}, status_code=output.status)
        return output


WEB = Path(str(files("mnist_ann.serve") / "web"))


def page() -> FileResponse:
    return FileResponse(WEB / "index.html")


def serve(
    ckpt_path: str = "best",
    host: Literal["127.0.0.1", "0.0.0.0", "::"] = "127.0.0.1",
    port: Port = 8000,
    workers: PositiveInt = 1,
    max_batch_size: PositiveInt = 1,
    batch_timeout: NonNegativeFloat = 0.0,
    fast_queue: bool = True,
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
    """
    checkpoint = resolve_checkpoint(ckpt_path, {})
    check_checkpoint(checkpoint)
    # Built once here too, so that a checkpoint the model cannot take fails with its message, not in a worker.
    MNISTClassifier.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=True)

    api = DigitAPI(str(checkpoint), max_batch_size=max_batch_size, batch_timeout=batch_timeout)
    server = ls.LitServer(
        api,
        accelerator="auto",
        workers_per_device=workers,
        fast_queue=fast_queue,
        middlewares=[SecurityHeaders, (RequestGate, {"max_bytes": MAX_BODY_BYTES})],
    )
    # LitServe answers GET / itself ("litserve running"): the page's route goes first, so that it wins.
    server.app.add_api_route("/", page, methods=["GET"], include_in_schema=False)
    server.app.router.routes.insert(0, server.app.router.routes.pop())
    server.app.mount("/web", StaticFiles(directory=WEB), name="web")

    address = f"http://{'127.0.0.1' if host == '127.0.0.1' else host}:{port}"
    print(f"serving {checkpoint} with {workers} worker(s): the page {address}/, the API POST {address}/predict")
    stop_on_signals()
    try:
        server.run(host=host, port=port, generate_client_file=False, log_level="warning")
    except RuntimeError as error:  # LitServe: "One or more workers failed to start"
        raise UserError(f"the server did not start: {error}") from None


def stop_on_signals() -> None:
    """SIGTERM and SIGINT stop the server as Ctrl-C does: LitServe then stops its workers and HTTP servers
    in order (SIGINT too, since a process started in the background may have inherited it ignored).
    The HTTP servers are forked from this process, and so inherit this handler: there it only exits."""
    main = os.getpid()

    def stop(signum, frame) -> None:
        if os.getpid() != main:
            sys.exit(0)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
