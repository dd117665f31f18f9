"""The command line: LightningCLI with fit, validate, test and predict, configured from YAML files."""

import pickle
from contextlib import nullcontext
from pathlib import Path

import torch
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.profilers import PassThroughProfiler
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from mnist_ann.data import MNISTDataModule
from mnist_ann.errors import CheckpointError, ConfigError, DataError
from mnist_ann.model import MNISTClassifier
from mnist_ann.predictions import PredictionWriter

CHECKPOINT_ALIASES = ("best", "last")


class MNISTCLI(LightningCLI):
    """LightningCLI that checks what the user hands it before any training starts.

    - `--ckpt_path best` / `last` work in a fresh process: the newest `best.ckpt` / `last.ckpt`
      written by an earlier run under the same logger folder (plain Lightning only knows the
      checkpoints of the run it is in).
    - Checkpoints are loaded with `weights_only=True`: a file that would run code when unpickled is
      refused, not executed. A missing or unreadable checkpoint is one clear message.
    - The optimizer is built once up front, so a bad learning rate is refused before the data loads.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(
            MNISTClassifier,
            MNISTDataModule,
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,  # the model takes its optimizer as --model.optimizer
            trainer_defaults={"profiler": {"class_path": f"{__name__}.NoProfiler"}},
            **kwargs,
        )

    def _parse_ckpt_path(self) -> None:
        # Lightning reads the model's hyperparameters from --ckpt_path here, before building anything:
        # resolve best/last and check the file first, so that this works for them too.
        if subcommand := self.config.get("subcommand"):
            self._resolve_ckpt_path(self.config[subcommand])
        super()._parse_ckpt_path()

    def _resolve_ckpt_path(self, config) -> None:
        if config.get("weights_only") is None:  # unset: safe loading (Lightning would default to unsafe)
            config["weights_only"] = True
        if config.get("ckpt_path") is None:
            return
        path = resolve_checkpoint(config["ckpt_path"], config.trainer)
        config["ckpt_path"] = str(path)
        self._checkpoint_weights = check_checkpoint(path, weights_only=config["weights_only"])

    def _check_before_running(self) -> None:
        """What can only be checked once the model is built: its optimizer, and that the checkpoint fits it."""
        try:
            optimizer = self.model.configure_optimizers()
        except ValueError as error:  # torch's own message, e.g. "Invalid learning rate: -0.1"
            raise ConfigError(f"model.optimizer: {error}") from None
        if rates := [group["lr"] for group in optimizer.param_groups if not group["lr"] > 0]:
            raise ConfigError(f"model.optimizer: the learning rate must be positive, got {rates[0]}")
        if weights := getattr(self, "_checkpoint_weights", None):
            expected = {name: tuple(tensor.shape) for name, tensor in self.model.state_dict().items()}
            found = {name: tuple(tensor.shape) for name, tensor in weights.items()}
            if found != expected:
                differences = sorted(set(found.items()) ^ set(expected.items()))[:4]
                raise CheckpointError(
                    f"{self.config_init[self.subcommand]['ckpt_path']} does not fit this model "
                    f"(differs in {', '.join(f'{name} {shape}' for name, shape in differences)})"
                )

    before_fit = before_validate = before_test = _check_before_running

    def before_predict(self) -> None:
        self._check_before_running()
        if not any(isinstance(callback, PredictionWriter) for callback in self.trainer.callbacks):
            self.trainer.callbacks.append(PredictionWriter())  # without a config: the rows on the console

    def after_predict(self) -> None:
        if failures := self.datamodule.predict_failures:
            raise DataError(f"{len(failures)} of the files given could not be predicted (see the messages above)")


class NoProfiler(PassThroughProfiler):
    """The CLI's default profiler: like Lightning's default, it records nothing, but cheaper.

    Lightning wraps every hook call, about 60 per training step, in `profiler.profile(...)`; its
    default's generator-based context manager (0.76 us a call here, against 0.22 us for this one)
    made those ~5% of this small model's step.
    `--trainer.profiler simple` (or `advanced`, `pytorch`) still profiles a run.
    """

    def profile(self, action_name: str) -> nullcontext:
        return nullcontext(action_name)


def resolve_checkpoint(requested: str, trainer) -> Path:
    """`best` / `last`: the newest such file of the runs under `trainer`'s logger folders; else the path itself."""
    if requested not in CHECKPOINT_ALIASES:
        return Path(requested)
    roots = checkpoint_roots(trainer)
    found = [path for root in roots if root.is_dir() for path in root.glob(f"**/{requested}.ckpt")]
    if not found:
        where = " or ".join(str(root) for root in roots)
        raise CheckpointError(f"--ckpt_path {requested}: no {requested}.ckpt under {where}; run `fit` first")
    path = max(found, key=lambda path: path.stat().st_mtime)
    rank_zero_info(f"--ckpt_path {requested} -> {path}")
    return path


def checkpoint_roots(trainer) -> list[Path]:
    """Where earlier runs of this trainer config wrote checkpoints: the loggers' run folders, explicit dirpaths."""
    root = Path(trainer.get("default_root_dir") or ".")
    loggers = trainer.get("logger")
    if loggers in (None, True):
        roots = [root / "lightning_logs"]
    elif loggers is False:
        roots = [root]
    else:
        roots = []
        for logger in loggers if isinstance(loggers, list) else [loggers]:
            init = logger.get("init_args") or {}
            roots.append(Path(init.get("save_dir") or root) / (init.get("name") or "lightning_logs"))
    for callback in trainer.get("callbacks") or []:
        if "ModelCheckpoint" in str(callback.get("class_path")) and (callback.get("init_args") or {}).get("dirpath"):
            roots.append(Path(callback["init_args"]["dirpath"]))
    return list(dict.fromkeys(roots))


def check_checkpoint(path: Path, weights_only: bool = True) -> dict:
    """Load a checkpoint once, as Lightning will, to turn any failure into one clear message; its weights."""
    if not path.is_file():
        raise CheckpointError(f"--ckpt_path {path}: no such checkpoint file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=weights_only)
    except pickle.UnpicklingError as error:
        reason = str(error).strip().splitlines()[-1].strip()
        raise CheckpointError(
            f"refusing to load {path}: it holds objects that would run code when loaded ({reason}). "
            "Only load checkpoints from sources you trust; with one you do, pass --weights_only false"
        ) from None
    except (RuntimeError, OSError, EOFError) as error:
        raise CheckpointError(f"cannot read checkpoint {path}: {error}; it is truncated or not a checkpoint") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path} is not a Lightning checkpoint of this model (it has no state_dict)")
    return checkpoint["state_dict"]
