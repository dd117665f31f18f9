"""Finding, opening and writing checkpoints safely, for every command that takes `--ckpt_path`.

- `best` / `last` work in a fresh process: the newest `best.ckpt` / `last.ckpt` written by an
  earlier run under the same logger folder (plain Lightning only knows the checkpoints of the run it
  is in).
- Checkpoints are loaded with `weights_only=True`: a file that would run code when unpickled is
  refused, not executed. A missing, unreadable or foreign file is one clear message.
- `AtomicCheckpointIO` writes each checkpoint so that no failure, a full disk included, leaves
  neither the old file nor the new one whole.
- Evaluating a checkpoint logs into the TensorBoard run it was saved in (`log_into_checkpoint_run`).
"""

import pickle
import re
from io import BytesIO
from pathlib import Path
from typing import Any

import torch
from jsonargparse import Namespace
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from torch import Tensor

from mnist_ann.errors import CheckpointError
from mnist_ann.files import replaced_whole

ALIASES = ("best", "last")


def resolve_checkpoint(requested: str, trainer: dict | None = None) -> Path:
    """`best` / `last`: that file of the newest run under `trainer`'s logger folders (the default logger's,
    lightning_logs/, without a trainer config: `export` and `serve`); else the path itself.

    The newest run is the one that wrote the newest checkpoint. When it has no such file (a run
    stopped before its first validation has `last.ckpt` only), that is an error, not a silent
    fallback to an older run's file.
    """
    if requested not in ALIASES:
        return Path(requested)
    roots = checkpoint_roots(trainer or {})
    everything = checkpoints_under(roots)
    if not everything:
        where = " or ".join(str(root) for root in roots)
        raise CheckpointError(f"--ckpt_path {requested}: no checkpoint under {where}; run `fit` first")
    newest_run = everything[0].parent
    path = newest_run / f"{requested}.ckpt"
    if not path.is_file():
        has = ", ".join(sorted({other.name for other in everything if other.parent == newest_run}))
        earlier = next((other for other in everything if other.name == path.name), None)
        raise CheckpointError(
            f"--ckpt_path {requested}: the newest run's checkpoints ({newest_run}) hold no {path.name}, only {has} "
            "(a run stopped before its first validation has no best.ckpt); pass one of those by its path"
            + (f", or {earlier} of an earlier run" if earlier else "")
        )
    rank_zero_info(f"--ckpt_path {requested} -> {path}")
    return path


def checkpoints_under(roots: list[Path], name: str = "*.ckpt") -> list[Path]:
    """The checkpoint files called `name` under the folders `roots`, newest first."""
    found = {path for root in roots if root.is_dir() for path in root.glob(f"**/{name}")}
    return sorted(found, key=lambda path: path.stat().st_mtime, reverse=True)


def newest_loadable(folders: list[Path]) -> tuple[Path, int] | None:
    """The newest checkpoint under `folders` that loads, with its step."""
    for path in checkpoints_under(folders):
        try:
            return path, torch.load(path, map_location="cpu", weights_only=True)["global_step"]
        except Exception:  # a partial file of some other writer: look further
            continue
    return None


def differ(saved, configured) -> bool:
    """Whether a checkpoint's setting and the config's differ (a list in one is a tuple in the other)."""
    if isinstance(saved, (list, tuple)) and isinstance(configured, (list, tuple)):
        return list(saved) != list(configured)
    return saved != configured


def checkpoint_roots(trainer: dict) -> list[Path]:
    """Where earlier runs of this trainer config wrote checkpoints: the loggers' run folders, explicit dirpaths."""
    root = Path(trainer.get("default_root_dir") or ".")
    loggers = trainer.get("logger")
    if loggers in (None, True):
        roots = [root / "lightning_logs"]
    elif loggers is False:
        roots = [root]
    else:
        roots = [logger_root(logger, root) for logger in (loggers if isinstance(loggers, list) else [loggers])]
    for callback in trainer.get("callbacks") or []:
        if "ModelCheckpoint" in str(callback.get("class_path")) and (callback.get("init_args") or {}).get("dirpath"):
            roots.append(Path(callback["init_args"]["dirpath"]))
    return list(dict.fromkeys(roots))


def logger_root(logger: dict, default_root_dir: Path) -> Path:
    """The folder holding a configured logger's runs (`version_0`, `version_1`, ...)."""
    init = logger.get("init_args") or {}
    return Path(init.get("save_dir") or default_root_dir) / (init.get("name") or "lightning_logs")


def check_checkpoint(
    path: Path,
    weights_only: bool = True,
    others: list[Path] = (),
    unsafe_option: str | None = "--weights_only false",
    content: bytes | None = None,
) -> dict[str, Any]:
    """Load a checkpoint once, as Lightning will, to turn any failure into one clear message.

    `others`: checkpoints the message can offer instead when this one cannot be read; `unsafe_option`: how
    this command loads a trusted checkpoint that would run code (None: it cannot); `content`: the file's bytes,
    where the caller has read them to build its model from them too.
    """
    if content is None and not path.is_file():
        raise CheckpointError(f"--ckpt_path {path}: no such checkpoint file")
    try:
        source = path if content is None else BytesIO(content)
        checkpoint = torch.load(source, map_location="cpu", weights_only=weights_only)
    except pickle.UnpicklingError as error:
        # torch names the callable the file asks for ("Unsupported global: GLOBAL posix.system ..."): show it.
        # Without one, the file is no pickle torch can read at all.
        if not (found := re.search(r"GLOBAL (\S+)", str(error))):
            raise unreadable(path, error, others) from None
        trusted = f"; with one you do, pass {unsafe_option}" if unsafe_option else ""
        raise CheckpointError(
            f"refusing to load {path}: it would call {found.group(1)} when loaded. "
            f"Only load checkpoints from sources you trust{trusted}"
        ) from None
    except Exception as error:  # torch's and the unpickler's many ways of meeting something else than a checkpoint
        raise unreadable(path, error, others) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path} is not a Lightning checkpoint (it holds no state_dict)")
    if "pytorch-lightning_version" not in checkpoint:
        raise CheckpointError(
            f"{path} holds weights but not Lightning's record of the run (no 'pytorch-lightning_version'): "
            "it was not written by Trainer.save_checkpoint or a checkpoint callback"
        )
    return checkpoint


def unreadable(path: Path, error: Exception, others: list[Path]) -> CheckpointError:
    # The first sentence of what torch says; a KeyError (the unpickler meeting text) says only a byte's number.
    said = "" if isinstance(error, KeyError) else str(error).strip()
    reason = re.split(r"\.\s", (said or "not a file torch can read").splitlines()[0])[0]
    usable = [str(other) for other in others if other.resolve() != path.resolve()][:3]
    instead = f"; other checkpoints: {', '.join(usable)}" if usable else ""
    return CheckpointError(f"cannot read {path} ({reason}): it is truncated or not a checkpoint{instead}")


def check_fits(what: str, weights: dict[str, Tensor], expected: dict[str, Tensor]) -> None:
    """Refuse weights of other shapes than the model's (`what` names where they come from), naming up to four."""
    if differences := shape_differences(weights, expected):
        raise CheckpointError(f"{what} does not fit this model: " + "; ".join(differences[:4]))


def shape_differences(found: dict[str, Tensor], expected: dict[str, Tensor]) -> list[str]:
    """How a checkpoint's weights differ from a model's, one phrase per tensor: empty when they fit."""
    phrases = []
    for name in sorted(found.keys() | expected.keys()):
        if name not in expected:
            phrases.append(f"{name} is in the checkpoint but not in the model")
        elif name not in found:
            phrases.append(f"{name} {tuple(expected[name].shape)} is missing from the checkpoint")
        elif found[name].shape != expected[name].shape:
            phrases.append(f"{name} is {tuple(found[name].shape)}, the model expects {tuple(expected[name].shape)}")
    return phrases


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint whole or not at all, never over the old one while writing.

    Lightning writes to a temporary file in the system's temp folder and then moves it; when the
    checkpoint folder is on another filesystem, that move is a copy over the old file, and a disk
    that fills during it leaves a broken checkpoint where a good one was. Here the new checkpoint
    goes to a temporary file in its own folder, is flushed to the disk, and replaces the old one in
    one rename: at every moment one of the two is whole.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if "://" in str(path) and not str(path).startswith("file://"):  # s3://, gs://, ...: Lightning's fsspec IO
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        with replaced_whole(Path(path)) as file:
            torch.save(checkpoint, file)


def log_into_checkpoint_run(trainer: Namespace, checkpoint: Path, logger_class: type) -> None:
    """Point the TensorBoard logger (`logger_class`, the default one) at the run folder a checkpoint was saved in
    (`<run>/checkpoints/x.ckpt`)."""
    logger = trainer.get("logger")
    if logger in (None, True):  # Lightning's default logger, spelt out so that its version can be set
        logger = trainer.logger = Namespace(class_path=f"{logger_class.__module__}.{logger_class.__name__}")
        # No placeholder hp_metric: an experiment summary of Lightning's raw keys would stand in for the whole
        # folder's HParams tab.
        logger.init_args = Namespace(save_dir=trainer.get("default_root_dir") or ".", default_hp_metric=False)
    if not (isinstance(logger, Namespace) and str(logger.get("class_path")).endswith("TensorBoardLogger")):
        return
    run, root = checkpoint.parent.parent, logger_root(logger, Path(trainer.get("default_root_dir") or "."))
    inside_a_run = checkpoint.parent.name == "checkpoints" and run.parent.resolve() == root.resolve()
    if inside_a_run and logger.init_args.get("version") is None:
        logger.init_args.version = run.name
