"""Finding and opening checkpoints safely, for every command that takes `--ckpt_path`.

- `best` / `last` work in a fresh process: the newest `best.ckpt` / `last.ckpt` written by an
  earlier run under the same logger folder (plain Lightning only knows the checkpoints of the run it
  is in).
- Checkpoints are loaded with `weights_only=True`: a file that would run code when unpickled is
  refused, not executed. A missing or unreadable checkpoint is one clear message.
"""

import pickle
import re
from pathlib import Path

import torch
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from mnist_ann.errors import CheckpointError

ALIASES = ("best", "last")


def resolve_checkpoint(requested: str, trainer: dict) -> Path:
    """`best` / `last`: the newest such file of the runs under `trainer`'s logger folders; else the path itself."""
    if requested not in ALIASES:
        return Path(requested)
    roots = checkpoint_roots(trainer)
    found = [path for root in roots if root.is_dir() for path in root.glob(f"**/{requested}.ckpt")]
    if not found:
        where = " or ".join(str(root) for root in roots)
        raise CheckpointError(f"--ckpt_path {requested}: no {requested}.ckpt under {where}; run `fit` first")
    path = max(found, key=lambda path: path.stat().st_mtime)
    rank_zero_info(f"--ckpt_path {requested} -> {path}")
    return path


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


def check_checkpoint(path: Path, weights_only: bool = True) -> dict:
    """Load a checkpoint once, as Lightning will, to turn any failure into one clear message; its weights."""
    if not path.is_file():
        raise CheckpointError(f"--ckpt_path {path}: no such checkpoint file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=weights_only)
    except pickle.UnpicklingError as error:
        # torch names the callable the file asks for ("Unsupported global: GLOBAL posix.system ..."): show it.
        found = re.search(r"GLOBAL (\S+)", str(error))
        runs = f"it would call {found.group(1)} when loaded" if found else "it holds objects that would run code"
        raise CheckpointError(
            f"refusing to load {path}: {runs}. "
            "Only load checkpoints from sources you trust; with one you do, pass --weights_only false"
        ) from None
    except (RuntimeError, OSError, EOFError) as error:
        raise CheckpointError(f"cannot read checkpoint {path}: {error}; it is truncated or not a checkpoint") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path} is not a Lightning checkpoint of this model (it has no state_dict)")
    return checkpoint["state_dict"]
