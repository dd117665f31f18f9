"""Your own handwriting on the page: collect labelled drawings, measure a model on them, teach a run with them.

    GET  /collect           the collection: its folder, how many drawings of each digit, what is wrong in it
    POST /collect           {"image": "<base64 PNG>", "label": 7}: keep a drawing (`mnist_ann.collect`)
    GET  /collect/measure   ?model=version_3 (or none: the served checkpoint): its accuracy on the drawings,
                            all and held out, their confusion table, and its accuracy on the MNIST test images
    POST /lab/teach         {"run": "version_3", "epochs": 2, "repeats": 50}: a lab job (`mnist_ann.serve.lab`)
                            that fine-tunes that run's best.ckpt on the training images plus the drawings

Saving and teaching follow the lab's rule (only on 127.0.0.1 unless allowed); the drawings stay in their
folder on this machine.
"""

import asyncio
import base64
import binascii
import functools
from pathlib import Path

import torch
from fastapi import FastAPI, Request

from mnist_ann.collect import Collection
from mnist_ann.data import normalize
from mnist_ann.errors import DataError
from mnist_ann.idx import load_split
from mnist_ann.images import ImageError
from mnist_ann.serve.lab import Lab, Refused, body, refusing, run_folder, whole
from mnist_ann.serve.runs import RunModels

TEACH = {"epochs": (1, 20, 2), "repeats": (1, 1000, 50)}  # setting: (lowest, highest, default)


def add_handwriting(app: FastAPI, lab: Lab, collection: Collection, served: Path) -> None:
    """The routes above, on the service's app."""
    models = RunModels(lab.root, "cpu")
    served_model = models.load(served)  # held here: the runs' models come and go from the cache

    @functools.cache  # loaded once, when first asked
    def mnist_test() -> tuple[torch.Tensor, torch.Tensor] | None:
        try:
            images, labels = load_split(lab.data_dir, train=False)
        except DataError:  # no MNIST here: the drawings alone
            return None
        return normalize(images), labels

    async def about(request: Request) -> dict:
        _, labels, held, problems = collection.load()
        return {
            "folder": str(collection.folder),
            "count": len(labels),
            "held_out": int(held.sum()),
            "by_label": torch.bincount(labels, minlength=10).tolist(),
            "problems": problems,
        }

    async def save(request: Request) -> dict:
        lab.check_allowed()
        sent = await body(request)
        label = sent.get("label")
        if type(label) is not int or not 0 <= label <= 9:
            raise Refused(422, f'"label" must be the digit drawn, 0-9, not {str(label)[:20]}')
        try:
            picture = base64.b64decode(str(sent.get("image", "")).split(",")[-1], validate=True)
        except (binascii.Error, ValueError):
            raise Refused(400, "image: not valid base64") from None
        try:
            return {**collection.save(picture, label), **(await about(request))}
        except ImageError as error:
            raise Refused(422, str(error)) from None

    async def measure(request: Request) -> dict:
        name = request.query_params.get("model") or None
        try:
            model, described = models.named(name) if name else served_model
        except LookupError as error:
            raise Refused(404, str(error)) from None
        return {"model": described, **(await asyncio.to_thread(scores, model))}

    def scores(model) -> dict:
        """The model's accuracy on the drawings (all, held out, taught), their confusion table, and MNIST's test."""
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

    async def teach(request: Request) -> dict:
        lab.check_allowed()
        sent = await body(request)
        run = run_folder(lab.root, sent)
        if not (best := run / "checkpoints" / "best.ckpt").is_file():
            raise Refused(409, f"{run.name} has no best.ckpt to teach")
        held = collection.load()[2]
        if not int((~held).sum()):
            raise Refused(409, f"no drawings to teach with in {collection.folder} yet: save a few first")
        settings = {name: sent.get(name, default) for name, (_, _, default) in TEACH.items()}
        for name, (low, high, _) in TEACH.items():
            whole(settings, name, low, high)
        config = run / "config.yaml"
        arguments = [
            "--config",
            str(config),
            f"--model.weights_from={best}",
            f"--data.extra_data={collection.folder.resolve()}",
            f"--data.extra_repeats={settings['repeats']}",
            f"--trainer.max_epochs={settings['epochs']}",
            "--model.scheduler=null",  # the run's own rate, steady: a schedule would warm up and anneal again
        ]
        if "mnist_ann.live.LiveReport" not in config.read_text():
            arguments.append("--trainer.callbacks+=mnist_ann.live.LiveReport")
        return lab.start("fit", arguments)

    for path, action, method in [
        ("/collect", about, "GET"),
        ("/collect", save, "POST"),
        ("/collect/measure", measure, "GET"),
        ("/lab/teach", teach, "POST"),
    ]:
        app.add_api_route(path, refusing(action), methods=[method], include_in_schema=False)


def share(right: torch.Tensor) -> dict:
    return {"accuracy": right.float().mean().item() if len(right) else None, "count": len(right)}
