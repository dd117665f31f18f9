"""The runs under `lightning_logs/` as the service sees them: what each was trained with, how well it did, and its
models for answering a drawing (its `best.ckpt`, `last.ckpt`, or while it trains `live.pt`).

A run is named by its folder (`version_3`); a model by the run and the file (`version_3/best`, `version_3/live`).
Nothing else names a file: a request never reaches outside the runs' folder.
"""

import re
import struct
from io import BytesIO
from pathlib import Path

import torch
import yaml
from tensorboard.compat.proto import event_pb2

from mnist_ann.checkpoints import check_checkpoint
from mnist_ann.errors import CheckpointError
from mnist_ann.live import EVENTS, WEIGHTS
from mnist_ann.model import MNISTClassifier
from mnist_ann.network import IMAGE_PIXELS, NUM_CLASSES

RUN = re.compile(r"version_\d{1,9}")
MODEL = re.compile(rf"(?P<run>{RUN.pattern})(?:/(?P<file>best|last|live))?")
FILES = {"best": "checkpoints/best.ckpt", "last": "checkpoints/last.ckpt", "live": WEIGHTS}
SCORES = ("val/acc", "test/acc")  # and the test on the drawings: `drawings_tag`
CACHED_MODELS = 4


def model_file(root: Path, name: str) -> Path:
    """The file a model name stands for; LookupError when the name is no model or the file is not there."""
    if not (match := MODEL.fullmatch(name)):
        raise LookupError(f"model: {name!r} names no run's model (version_N, version_N/best, /last or /live)")
    path = root / match["run"] / FILES[match["file"] or "best"]
    if not path.is_file():
        raise LookupError(f"model: {name} has no {path.name} (yet)")
    return path


class RunModels:
    """The runs' models, loaded weights only, the few last used kept (and loaded again when their file changes)."""

    def __init__(self, root: Path, device: str) -> None:
        self.root, self.device = root, device
        self.loaded: dict[Path, tuple[float, MNISTClassifier, dict]] = {}

    def load(self, path: Path) -> tuple[MNISTClassifier, dict]:
        """The model in `path` and what the page says of it (kept: `named` finds it again)."""
        content = path.read_bytes() if path.is_file() else None  # read once: checked, then made into the model
        saved = check_checkpoint(path, unsafe_option=None, content=content)
        # Loaded while a request is answered, under inference mode: weights made there could not take part in the
        # attributions' backpropagation.
        with torch.inference_mode(False):
            model = MNISTClassifier.load_from_checkpoint(BytesIO(content), map_location=self.device, weights_only=True)
        model.eval()
        self.loaded[path] = (path.stat().st_mtime, model, describe(path, saved, model))
        return model, self.loaded[path][2]

    def named(self, name: str) -> tuple[MNISTClassifier, dict]:
        path = model_file(self.root, name)
        if path not in self.loaded or self.loaded[path][0] != path.stat().st_mtime:
            try:
                self.load(path)
            except CheckpointError as error:
                raise LookupError(f"model: {name}: {error}") from None
            while len(self.loaded) > CACHED_MODELS:
                del self.loaded[next(iter(self.loaded))]
        _, model, about = self.loaded[path]
        return model, {**about, "name": name}


def describe(path: Path, saved: dict, model: MNISTClassifier) -> dict:
    """What GET /info, the answers and the page say of a model: its file, run, task, layers (batch-normalized or
    not), class names, best validation accuracy and step."""
    scores = [
        state["best_model_score"].item()
        for key, state in saved.get("callbacks", {}).items()
        if "'monitor': 'val/acc'" in key and state.get("best_model_score") is not None
    ]
    return {
        "checkpoint": str(path),
        "run": run_of(path).name,
        "task": model.hparams.task,
        "hidden_sizes": list(model.hparams.hidden_sizes),
        "batch_norm": bool(model.hparams.get("batch_norm")),
        "class_names": model.class_names,
        "val_acc_best": max(scores) if scores else None,
        "global_step": saved.get("global_step"),
    }


def run_of(path: Path) -> Path:
    """The run folder a model file belongs to (its checkpoints/best.ckpt, or its live.pt)."""
    return path.parent.parent if path.parent.name == "checkpoints" else path.parent


def drawings_tag(collection: Path) -> str:
    """The tag of a test on the drawings in `collection` (`--data.dataset my_digits` logs `test_my_digits/acc`)."""
    return f"test_{collection.name}/acc"


def list_runs(root: Path, drawings: str | None = None) -> list[dict]:
    """Every run under `root`, newest first: its settings (from its config.yaml), its models, and its best
    validation and latest test accuracy (from its TensorBoard events), and on the drawings (tag `drawings`)."""
    runs = []
    folders = [folder for folder in root.glob("version_*") if RUN.fullmatch(folder.name) and folder.is_dir()]
    tags = (*SCORES, drawings) if drawings else SCORES
    for folder in sorted(folders, key=lambda folder: int(folder.name.split("_")[1]), reverse=True):
        scores = logged(folder, tags)
        runs.append(
            {
                "run": folder.name,
                "settings": settings(folder / "config.yaml"),
                "models": [name for name, file in FILES.items() if (folder / file).is_file()],
                "val_acc": max(scores["val/acc"], default=None),
                "test_acc": scores["test/acc"][-1] if scores["test/acc"] else None,
                "drawings_acc": scores[drawings][-1] if drawings and scores[drawings] else None,
                "live": (folder / EVENTS).is_file(),
            }
        )
    return runs


def settings(config: Path) -> dict:
    """The settings a learner compares runs by, from a run's saved config (empty when it cannot be read)."""
    try:
        saved = yaml.safe_load(config.read_text())
        model, data, trainer = saved["model"], saved["data"], saved["trainer"]
        optimizer = model["optimizer"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return {}
    scheduler = model.get("scheduler")
    taught = [Path(str(model["weights_from"])).parent.parent.name] if model.get("weights_from") else []
    taught += [Path(str(data["extra_data"])).name] if data.get("extra_data") else []
    return {
        "hidden_sizes": model.get("hidden_sizes"),
        "inputs": IMAGE_PIXELS,
        "outputs": NUM_CLASSES if model.get("task", "multiclass") == "multiclass" else 1,
        "taught_from": " + ".join(taught) or None,  # a run fine-tuned from another's weights, on drawings
        "optimizer": str(optimizer.get("class_path", "")).rsplit(".", 1)[-1],
        "lr": optimizer.get("init_args", {}).get("lr"),
        "schedule": str(scheduler["class_path"]).rsplit(".", 1)[-1] if isinstance(scheduler, dict) else None,
        "dropout": model.get("dropout"),
        "batch_size": data.get("batch_size"),
        "epochs": trainer.get("max_epochs"),
        "dataset": data.get("dataset"),
    }


_logged: dict[Path, tuple[tuple[int, float], dict[str, list[float]]]] = {}  # by file: (size, mtime), its scalars


def logged(folder: Path, tags: tuple[str, ...]) -> dict[str, list[float]]:
    """The values of scalar `tags` in a run's event files, in the order they were written."""
    found: dict[str, list[float]] = {tag: [] for tag in tags}
    for events in sorted(folder.glob("events.out.tfevents.*"), key=lambda path: path.stat().st_mtime):
        stat = (events.stat().st_size, events.stat().st_mtime)
        if events not in _logged or _logged[events][0] != stat:
            _logged[events] = (stat, scalars(events, tags))
        for tag, values in _logged[events][1].items():
            found[tag] += values
    return found


def scalars(path: Path, tags: tuple[str, ...]) -> dict[str, list[float]]:
    """Scalars from one event file. TensorBoard's own loaders check every record's CRC in Python (30 s for a
    long run's 180 MB of images); here only the records that name a wanted tag are parsed."""
    found: dict[str, list[float]] = {tag: [] for tag in tags}
    wanted = [tag.encode() for tag in tags]
    with open(path, "rb") as file:
        while header := file.read(12):  # TFRecord: length (8 bytes), its CRC (4), data, the data's CRC (4)
            if len(header) < 12:
                break
            (length,) = struct.unpack("<Q", header[:8])
            record = file.read(length)
            file.seek(4, 1)
            if len(record) < length:  # the file is being written: the rest next time
                break
            if not any(tag in record for tag in wanted):
                continue
            for value in event_pb2.Event.FromString(record).summary.value:
                if value.tag in found:  # (torch's SummaryWriter, under Lightning's logger, writes simple values)
                    found[value.tag].append(value.simple_value)
    return found
