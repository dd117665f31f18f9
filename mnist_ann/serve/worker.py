"""What each inference worker of `mnist-ann serve` does (`DigitAPI`, LitServe's four methods): decode and prepare
a picture, run the network on a batch of them with the model asked for, and answer each in JSON.

A worker never raises for a bad request: LitServe would fail every request batched with it; it answers a
`Rejected` with its status instead.
"""

from mnist_ann.start_up import skip_start_up_collections

# An inference worker starts here: LitServe spawns a fresh interpreter that imports this module to rebuild DigitAPI,
# before any code of ours runs. Its start-up skips the collections a command's does (mnist_ann/__main__.py).
skip_start_up_collections()

import base64
import binascii
import multiprocessing
import os
import signal
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import litserve as ls
import torch
from fastapi.responses import JSONResponse

from mnist_ann.data import normalize
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
from mnist_ann.serve.lifetime import die_with_parent
from mnist_ann.serve.middleware import NO_IMAGE_FIELD
from mnist_ann.serve.runs import RunModels
from mnist_ann.threads import AUTO, use_threads

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


def decode_picture(image: str) -> torch.Tensor | Rejected:
    """A picture file in base64 prepared MNIST-style (uint8, 28x28), or why it cannot be."""
    try:
        data = base64.b64decode(image, validate=True)
    except (binascii.Error, ValueError):
        return Rejected(400, "image: not valid base64")
    try:
        return prepare(load_image(BytesIO(data), "image"), "image")
    except ImageError as error:
        return Rejected(IMAGE_STATUS.get(type(error), 422), str(error))


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
        digit = decode_picture(request["image"])
        if isinstance(digit, Rejected):
            return digit
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
