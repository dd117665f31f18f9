"""Your own handwriting on the page: collect labelled drawings, measure a model on them, teach a run with them.

    GET  /collect           the collection: its folder, how many drawings of each digit, each drawing, what is wrong
    POST /collect           `Drawing`: {"image": "<base64 PNG>", "label": 7}: keep a drawing (`mnist_ann.collect`)
    DELETE /collect/{number}            remove a drawing (the IDX files follow)
    GET  /collect/digits/{NNNNNN-L.png}  a drawing as the network sees it: 28x28
    GET  /collect/measure   ?model=version_3 (or none: the served checkpoint): its accuracy on the drawings,
                            all and held out, their confusion table, and its accuracy on the MNIST test images
    POST /lab/teach         `TeachSettings`: {"run": "version_3", "epochs": 2, "repeats": 50}: a lab job that
                            fine-tunes that run's best.ckpt on the training images plus the drawings

Saving and teaching answer only the service's own page (`mnist_ann.serve.guard.OwnPage`); the drawings stay in
their folder on this machine. Reading and writing the collection, and measuring, run in the thread pool.
"""

import base64
import binascii
import errno
import functools
from pathlib import Path

import torch
from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import FileResponse
from pydantic import Field, field_validator

from mnist_ann.collect import Collection
from mnist_ann.data import normalize
from mnist_ann.errors import DataError
from mnist_ann.idx import load_split
from mnist_ann.images import ImageError
from mnist_ann.serve.guard import OwnPage
from mnist_ann.serve.jobs import Lab
from mnist_ann.serve.lab import RunChoice, run_folder, time_limit
from mnist_ann.serve.runs import MODEL, RunModels
from mnist_ann.serve.settings import LabRequest

MAX_DRAWING_BYTES = 4 * 1024 * 1024  # a pad's drawing is ~10 KB; a phone's photo of a digit, a few MB


class Drawing(LabRequest):
    image: str = Field(description="base64 of a picture file (a data: URL too)")
    label: int = Field(ge=0, le=9, description="the digit drawn")

    @field_validator("image")
    @classmethod
    def small_enough(cls, image: str) -> str:
        if len(image) > MAX_DRAWING_BYTES * 4 // 3 + 100:
            raise ValueError(f"a drawing is at most {MAX_DRAWING_BYTES // 2**20} MB: a pad's or a photo of one digit")
        return image


class TeachSettings(RunChoice):
    epochs: int = Field(2, ge=1, le=20)
    repeats: int = Field(50, ge=1, le=1000, description="each drawing to teach with, this many times an epoch")


def handwriting_router(
    lab: Lab, own_page: OwnPage, collection: Collection, models: RunModels, served: tuple, data_dir: Path
) -> APIRouter:
    """The routes above; `served` is the served checkpoint's (model, description), measured unless one is named."""
    router = APIRouter(tags=["handwriting"])
    changes = [Depends(own_page)]

    @functools.cache  # loaded once, when first asked
    def mnist_test() -> tuple[torch.Tensor, torch.Tensor] | None:
        try:
            images, labels = load_split(data_dir, train=False)
        except DataError:  # no MNIST here: the drawings alone
            return None
        return normalize(images), labels

    @router.get("/collect")
    def about() -> dict:
        """How many drawings the collection holds, of each digit and held out; its files that are no drawing."""
        return collection.summary()

    @router.post("/collect", dependencies=changes)
    def save(drawing: Drawing) -> dict:
        """Keep a drawing with its label; `kept` says which drawing it became, `collection` what is held now."""
        try:
            picture = base64.b64decode(drawing.image.split(",")[-1], validate=True)
        except (binascii.Error, ValueError):
            raise HTTPException(400, "image: not valid base64") from None
        try:
            kept = collection.save(picture, drawing.label)
        except ImageError as error:
            raise HTTPException(422, str(error)) from None
        except OSError as error:  # a read-only folder, a full disk
            status = 507 if error.errno in (errno.ENOSPC, errno.EDQUOT) else 503
            raise HTTPException(status, f"cannot keep the drawing in {collection.folder}/: {error.strerror}") from None
        return {"kept": kept, "collection": collection.summary()}

    @router.delete("/collect/{number}", dependencies=changes)
    def delete(number: int) -> dict:
        """Remove a drawing: its pictures, and its place in the IDX files."""
        if not collection.delete(number):
            raise HTTPException(404, f"no drawing {number} in {collection.folder}/")
        return collection.summary()

    @router.get("/collect/digits/{name}", response_class=FileResponse)
    def digit(name: str) -> FileResponse:
        """A kept drawing prepared as the network sees it, 28x28."""
        if (path := collection.digit_file(name)) is None:
            raise HTTPException(404, f"no drawing {name[:40]!r} in {collection.folder}/")
        return FileResponse(path, media_type="image/png", headers={"Cache-Control": "no-cache"})

    @router.get("/collect/measure")
    def measure(
        model: str | None = Query(None, pattern=f"^{MODEL.pattern}$", description="a run's model; none: the served"),
    ) -> dict:
        """The model's accuracy on the drawings (all, held out, taught), their confusion table, MNIST's test."""
        try:
            network, described = models.named(model) if model else served
        except LookupError as error:
            raise HTTPException(404, str(error)) from None
        return {"model": described, **scores(network)}

    def scores(model) -> dict:
        digits, labels, held, _ = collection.load()
        with torch.inference_mode():
            predicted = model.task.classes(model(normalize(digits))) if len(labels) else labels
            confusion = torch.zeros(10, 10, dtype=torch.long)
            confusion.index_put_((labels, predicted), torch.ones_like(labels), accumulate=True)
            mnist = None
            if (test := mnist_test()) is not None:
                images, test_labels = test
                mnist = share(model.task.classes(model(images)) == test_labels)["accuracy"]
        return {
            "all": share(predicted == labels),
            "held_out": share(predicted[held] == labels[held]),
            "taught": share(predicted[~held] == labels[~held]),
            "confusion": confusion.tolist(),
            "mnist_test": mnist,
        }

    @router.post("/lab/teach", dependencies=changes)
    def teach(settings: TeachSettings) -> dict:
        """Fine-tune the run's best.ckpt on the training images plus the drawings to teach with."""
        run = run_folder(lab.root, settings)
        if not (best := run / "checkpoints" / "best.ckpt").is_file():
            raise HTTPException(409, f"{run.name} has no best.ckpt to teach")
        if not (held := collection.summary())["count"] - held["held_out"]:
            raise HTTPException(409, f"no drawings to teach with in {collection.folder} yet: save a few first")
        config = run / "config.yaml"
        arguments = [
            "--config",
            str(config),
            f"--model.weights_from={best}",
            f"--data.extra_data={collection.folder.resolve()}",
            f"--data.extra_repeats={settings.repeats}",
            f"--trainer.max_epochs={settings.epochs}",
            "--model.scheduler=null",  # the run's own rate, steady: a schedule would warm up and anneal again
            time_limit(),
        ]
        if "mnist_ann.live.LiveReport" not in config.read_text():
            arguments.append("--trainer.callbacks+=mnist_ann.live.LiveReport")
        return lab.start("fit", arguments)

    return router


def share(right: torch.Tensor) -> dict:
    return {"accuracy": right.float().mean().item() if len(right) else None, "count": len(right)}
