"""The backward pass on the page: how the answering model would learn from the drawing on the pad.

    POST /backward   `BackwardRequest`: {"image": "<base64 PNG>", "target": 8, "model": "version_3", "lr": 0.01,
                     "steps": 2}: the loss toward `target` (the answer by default), its gradient at every layer,
                     and, after `steps` of the run's optimizer at rate `lr` (the run's own by default) on a copy of
                     the network, the same again with how far each layer's weights moved; both with the network's
                     accuracy on the run's validation images (`mnist_ann.backprop`)

Each request starts from the model as saved and takes its steps on a copy made for it and dropped with it: the
page asks for one more step each time, so that nothing is held between requests and no request can change the
served model, a run's model or a checkpoint. Like the lab's, it answers only the service's own page.
"""

import functools
from pathlib import Path

import torch
import yaml
from fastapi import APIRouter, Depends, HTTPException
from fastapi.concurrency import run_in_threadpool
from pydantic import Field

from mnist_ann.backprop import learning_steps, optimizer_factory
from mnist_ann.data import MNISTDataModule, normalize
from mnist_ann.errors import ConfigError, DataError
from mnist_ann.serve.guard import OwnPage
from mnist_ann.serve.runs import MODEL, RunModels, run_of
from mnist_ann.serve.settings import RECIPE, LabRequest
from mnist_ann.serve.worker import Rejected, decode_picture

MAX_STEPS = 100
SPLIT = ("dataset", "val_size", "split_seed")  # what decides a run's validation images


class BackwardRequest(LabRequest):
    image: str = Field(description="base64 of a picture file: the pad's drawing")
    target: int | None = Field(None, ge=0, le=9, description="the class to learn toward; the answer by default")
    model: str | None = Field(None, pattern=f"^{MODEL.pattern}$", description="a run's model; else the served one")
    lr: float | None = Field(None, gt=0, le=10, description="the optimizer's rate; the run's own by default")
    steps: int = Field(0, ge=0, le=MAX_STEPS, description="optimizer steps on the drawing, from the model as saved")


def run_config(checkpoint: Path) -> dict:
    """The config of the run a model file belongs to, or nothing (a checkpoint outside any run)."""
    try:
        return yaml.safe_load((run_of(checkpoint) / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}


def backward_router(own_page: OwnPage, models: RunModels, served: tuple, data_dir: Path) -> APIRouter:
    router = APIRouter(tags=["backward"])

    @functools.lru_cache(maxsize=2)  # a data set's validation images, split as the run split them: loaded once
    def validation(split: tuple) -> tuple[torch.Tensor, torch.Tensor] | None:
        datamodule = MNISTDataModule(data_dir, download=False, **dict(split))
        try:
            datamodule.setup("validate")
        except (DataError, ConfigError):  # no data here, or too few for the run's split: the learning step alone
            return None
        images, labels = datamodule.splits["val"]
        return (images, labels) if len(labels) else None

    def accuracy(net, task, images_labels) -> float | None:
        if images_labels is None:
            return None
        images, labels = images_labels
        with torch.inference_mode():
            return (task.classes(net(images)) == labels).float().mean().item()

    def learn(request: BackwardRequest) -> dict:
        try:
            model, about = models.named(request.model) if request.model else served
        except LookupError as error:
            raise HTTPException(404, str(error)) from None
        digit = decode_picture(request.image)
        if isinstance(digit, Rejected):
            raise HTTPException(digit.status, digit.error)
        image = normalize(digit.unsqueeze(0))
        with torch.inference_mode():
            answer = model.task.classes(model.net(image.unsqueeze(0)))[0].item()
        target = answer if request.target is None else request.target
        if target >= len(model.class_names):
            raise HTTPException(422, f"target: {target} is not a class of this model")
        config = run_config(Path(about["checkpoint"]))
        settings = (config.get("model") or {}).get("optimizer") or RECIPE["model"]["optimizer"]  # else the recipe's
        try:
            optimizer, name, rate = optimizer_factory(settings, request.lr)
        except ValueError as error:
            raise HTTPException(422, str(error)) from None
        before, after, stepped = learning_steps(model, image, target, optimizer, request.steps)
        data = config.get("data") or {}
        images_labels = validation(tuple((key, data[key]) for key in SPLIT if data.get(key) is not None))
        before["val_acc"] = accuracy(model.net, model.task, images_labels)
        if after is not None:
            after["val_acc"] = accuracy(stepped, model.task, images_labels)
        return {
            "model": about,
            "answer": answer,
            "target": target,
            "optimizer": name,
            "lr": rate,
            "steps": request.steps,
            "before": before,
            "after": after,
        }

    @router.post("/backward", dependencies=[Depends(own_page)])
    async def backward(request: BackwardRequest) -> dict:
        """The loss toward a target, its gradient at every layer, and optimizer steps on a copy of the network."""
        return await run_in_threadpool(learn, request)

    return router
