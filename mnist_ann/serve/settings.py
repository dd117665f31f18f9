"""What a run started from the page's lab may be: `FitSettings`, checked by Pydantic (which also describes it in
/openapi.json), the `fit` options a user would type for it, and the presets: the shipped recipes as settings.

A preset is read from its config over the recipe's (configs/fast.yaml, configs/best.yaml), so that the page's
"fast" trains what `mnist-ann fit --config configs/default.yaml --config configs/fast.yaml` trains
(tests/test_lab.py compares what the command line's parser makes of both).
"""

import functools
import itertools
import json
import math
from typing import Annotated, Literal, get_args

import yaml
from fastapi import HTTPException
from pydantic import BaseModel, ConfigDict, Field, model_validator

from mnist_ann.adversarial import Adversarial, Kind
from mnist_ann.cli import RECIPE as RECIPE_CONFIG
from mnist_ann.network import IMAGE_PIXELS, NUM_CLASSES


def shipped(name: str) -> dict:
    """A config that ships with the package (mnist_ann/configs/, linked from configs/ at the top)."""
    return yaml.safe_load((RECIPE_CONFIG.parent / f"{name}.yaml").read_text())


RECIPE = shipped("default")  # the page's settings start from the recipe's own
PRESETS = {"recipe": "default", "fast": "fast", "best": "best"}  # the page's name: the config's
LIMITS = {"layers": 4, "width": 2048, "parameters": 3_000_000, "epochs": 100, "batch_size": 1024, "lr": 1.0}
LIMITS |= {"steps": 100_000, "hours": 2}  # the heaviest run: this many optimizer steps, stopped after this long
OPTIMIZERS = {"SGD": "torch.optim.SGD", "Adam": "torch.optim.Adam", "AdamW": "torch.optim.AdamW"}
ONE_CYCLE_RISE = 0.2  # the share of the run the one-cycle rate climbs for, as in the shipped recipes
SCHEDULES = {
    "constant": None,
    "one-cycle": "mnist_ann.schedules.OneCycle",
    "cosine": "mnist_ann.schedules.WarmupCosine",
}
DISTORTED = shipped("best-augmented")["data"]["augmentation"]
AUGMENTATIONS = {
    "none": {},
    "light": shipped("fast")["data"]["augmentation"],
    "affine": {name: value for name, value in DISTORTED.items() if not name.startswith("elastic")},
    "affine+elastic": DISTORTED,
}
ADVERSARIAL = ("none", *get_args(Kind))
DATASETS = ("mnist", "fashion-mnist")
Width = Annotated[int, Field(ge=1, le=LIMITS["width"])]
Share = Annotated[float, Field(ge=0, le=0.9)]


class LabRequest(BaseModel):
    """What the lab's requests share: unknown fields refused, numbers never taken from strings, no NaN."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class FitSettings(LabRequest):
    """A run of the lab: the recipe's settings unless given (each is a `fit` option, `command_line`)."""

    hidden_sizes: list[Width] = Field(
        RECIPE["model"]["hidden_sizes"], max_length=LIMITS["layers"], description="one width per layer"
    )
    optimizer: Literal[tuple(OPTIMIZERS)] = "SGD"
    lr: float = Field(RECIPE["model"]["optimizer"]["init_args"]["lr"], gt=0, le=LIMITS["lr"])
    nesterov: bool = Field(False, description="SGD's Nesterov momentum")
    batch_size: int = Field(RECIPE["data"]["batch_size"], ge=1, le=LIMITS["batch_size"])
    epochs: int = Field(RECIPE["trainer"]["max_epochs"], ge=1, le=LIMITS["epochs"])
    val_size: int = Field(RECIPE["data"]["val_size"], ge=0, le=30_000)
    schedule: Literal[tuple(SCHEDULES)] = "constant"
    input_dropout: Share = 0.0
    dropout: Share = 0.0
    label_smoothing: float = Field(0.0, ge=0, le=0.5)
    augmentation: Literal[tuple(AUGMENTATIONS)] = "none"
    batch_norm: bool = False
    adversarial: Literal[ADVERSARIAL] = "none"
    adversarial_epsilon: float = Field(
        Adversarial.epsilon,
        gt=0,
        le=10,
        description="how far the images are moved: over the whole image (vat), per pixel (fgsm)",
    )
    weight_averaging: bool = False
    averaging_decay: float = Field(0.999, ge=0.9, lt=1, description="the weight average's decay, each step")
    dataset: Literal[DATASETS] = "mnist"

    @model_validator(mode="after")
    def within_limits(self) -> "FitSettings":
        widths = [IMAGE_PIXELS, *self.hidden_sizes, NUM_CLASSES]
        if (parameters := sum(a * b + b for a, b in itertools.pairwise(widths))) > LIMITS["parameters"]:
            raise ValueError(f"hidden_sizes: {parameters:,} parameters, over the {LIMITS['parameters']:,} allowed here")
        if self.nesterov and self.optimizer != "SGD":
            raise ValueError(f"nesterov: SGD's momentum only, not {self.optimizer}'s")
        return self

    def check_steps(self, images: int) -> None:
        """Refuse a run of more optimizer steps than the lab allows, on `images` training images."""
        steps = self.epochs * math.ceil(max(images - self.val_size, 0) / self.batch_size)
        if steps > LIMITS["steps"]:
            raise HTTPException(
                422,
                f"epochs: {steps:,} steps of batch {self.batch_size}, over the {LIMITS['steps']:,} allowed here: "
                "fewer epochs or a larger batch",
            )

    def command_line(self) -> list[str]:
        """The `fit` options a user would type for these settings."""
        arguments = [
            f"--model.hidden_sizes={json.dumps(self.hidden_sizes, separators=(',', ':'))}",
            f"--model.optimizer={OPTIMIZERS[self.optimizer]}",
            f"--model.optimizer.lr={self.lr}",
            f"--model.input_dropout={self.input_dropout}",
            f"--model.dropout={self.dropout}",
            f"--model.label_smoothing={self.label_smoothing}",
            f"--trainer.max_epochs={self.epochs}",
            f"--data.batch_size={self.batch_size}",
            f"--data.val_size={self.val_size}",
            f"--data.dataset={self.dataset}",
        ]
        if self.optimizer == "SGD":
            arguments += ["--model.optimizer.momentum=0.9", f"--model.optimizer.nesterov={str(self.nesterov).lower()}"]
        if schedule := SCHEDULES[self.schedule]:
            arguments.append(f"--model.scheduler={schedule}")
        if self.schedule == "one-cycle":  # peaking at the rate set
            arguments += [f"--model.scheduler.max_lr={self.lr}", f"--model.scheduler.pct_start={ONE_CYCLE_RISE}"]
        arguments += [f"--data.augmentation.{name}={value}" for name, value in AUGMENTATIONS[self.augmentation].items()]
        if self.batch_norm:
            arguments.append("--model.batch_norm=true")
        if self.adversarial != "none":
            arguments += [
                f"--model.adversarial.kind={self.adversarial}",
                f"--model.adversarial.epsilon={self.adversarial_epsilon}",
            ]
        if self.weight_averaging:  # the buffers too, as the shipped recipes: batch normalization's statistics
            arguments += [
                "--trainer.callbacks+=EMAWeightAveraging",
                f"--trainer.callbacks.decay={self.averaging_decay}",
                "--trainer.callbacks.use_buffers=true",
            ]
        return [*arguments, "--trainer.callbacks+=mnist_ann.live.LiveReport"]  # what the page watches


@functools.cache  # the shipped configs do not change while the service runs: read once, not at every GET /lab
def preset(name: str) -> FitSettings:
    """The settings of a preset: its config's over the recipe's, each as the command line reads it."""
    config = shipped(PRESETS[name])
    model = {**RECIPE["model"], **config.get("model", {})}
    data = {**RECIPE["data"], **config.get("data", {})}
    trainer = {**RECIPE["trainer"], **config.get("trainer", {})}
    optimizer = {**RECIPE["model"]["optimizer"]["init_args"], **model["optimizer"].get("init_args", {})}
    averaged = [
        callback["init_args"]
        for callback in trainer.get("callbacks+", [])
        if callback["class_path"].endswith("EMAWeightAveraging")
    ]
    scheduler = (model.get("scheduler") or {}).get("class_path")
    adversarial = Adversarial(**model["adversarial"]) if model.get("adversarial") else None  # its own defaults
    return FitSettings(
        hidden_sizes=model["hidden_sizes"],
        optimizer=next(name for name, path in OPTIMIZERS.items() if path == model["optimizer"]["class_path"]),
        lr=optimizer["lr"],
        nesterov=optimizer.get("nesterov", False),
        batch_size=data["batch_size"],
        epochs=trainer["max_epochs"],
        val_size=data["val_size"],
        schedule=next(name for name, path in SCHEDULES.items() if path == scheduler),
        input_dropout=model.get("input_dropout", 0.0),
        dropout=model.get("dropout", 0.0),
        label_smoothing=model.get("label_smoothing", 0.0),
        augmentation=next(name for name, values in AUGMENTATIONS.items() if values == data.get("augmentation", {})),
        batch_norm=model.get("batch_norm", False),
        **({"adversarial": adversarial.kind, "adversarial_epsilon": adversarial.epsilon} if adversarial else {}),
        **({"weight_averaging": True, "averaging_decay": averaged[0]["decay"]} if averaged else {}),
    )
