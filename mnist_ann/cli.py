"""The command line: LightningCLI with fit, validate, test and predict, configured from YAML files.

Beyond plain LightningCLI:
- `--ckpt_path best` / `last` and safe loading of every checkpoint (`mnist_ann.checkpoints`), checked
  before anything is built, so that a bad file is one message.
- `test`, `validate` and `predict` of a checkpoint log into the TensorBoard run the checkpoint came
  from, so that a run's test figures sit beside its training curves and hyperparameters.
- The data module tells the model its class names (`link_arguments`), and checkpoints keep them.
- The optimizer is built once up front, so a bad learning rate is refused before the data loads.
- A config error is the parser's `error:` line with a pointer to `--help`, not the full usage first.
"""

import warnings
from pathlib import Path

from jsonargparse import Namespace
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger

from mnist_ann.checkpoints import check_checkpoint, logger_root, resolve_checkpoint
from mnist_ann.data import MNISTDataModule
from mnist_ann.errors import CheckpointError, ConfigError, DataError
from mnist_ann.model import MNISTClassifier
from mnist_ann.predictions import PredictionWriter

# Lightning's notes on restoring the training callbacks' state from a checkpoint: they matter when
# `fit` resumes, and say nothing to a command that only evaluates or predicts.
RESTORE_NOTES = ("The dirpath has changed from", "Be aware that when using `ckpt_path`, callbacks used to create")


class ArgumentParser(LightningArgumentParser):
    def print_usage(self, file=None) -> None:
        """Nothing: on an error, the line after it points at --help; the ~60-line usage hid the error itself."""


class MNISTCLI(LightningCLI):
    def __init__(self, **kwargs) -> None:
        super().__init__(
            MNISTClassifier,
            MNISTDataModule,
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,  # the model takes its optimizer as --model.optimizer
            trainer_defaults={"profiler": {"class_path": "mnist_ann.lean.NoProfiler"}},
            parser_class=ArgumentParser,
            parser_kwargs={"prog": "mnist-ann"},
            seed_everything_default=42,  # the recipe's, also without a config: runs repeat exactly
            **kwargs,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.classes", "model.class_names", apply_on="instantiate")

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        super().parse_arguments(parser, args)
        # Lightning reads the model's hyperparameters from --ckpt_path right after parsing: resolve
        # best/last and check the file first, so that this works for them too and fails clearly.
        if subcommand := self.config.get("subcommand"):
            self._resolve_ckpt_path(subcommand, self.config[subcommand])
            if subcommand != "fit":
                self.save_config_kwargs["config_filename"] = f"{subcommand}-config.yaml"  # beside fit's config.yaml
                for note in RESTORE_NOTES:
                    warnings.filterwarnings("ignore", message=note)

    def _resolve_ckpt_path(self, subcommand: str, config: Namespace) -> None:
        if config.get("weights_only") is None:  # unset: safe loading (Lightning would default to unsafe)
            config["weights_only"] = True
        if config.get("ckpt_path") is None:
            return
        path = resolve_checkpoint(config["ckpt_path"], config.trainer)
        config["ckpt_path"] = str(path)
        self._checkpoint_weights = check_checkpoint(path, weights_only=config["weights_only"])
        if subcommand != "fit":  # (a resumed fit starts a new run: its steps may overlap the first's)
            log_into_checkpoint_run(config.trainer, path)

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


def log_into_checkpoint_run(trainer: Namespace, checkpoint: Path) -> None:
    """Point the TensorBoard logger at the run folder a checkpoint was saved in (`<run>/checkpoints/x.ckpt`)."""
    logger = trainer.get("logger")
    if logger in (None, True):  # Lightning's default logger, spelt out so that its version can be set
        logger = trainer.logger = Namespace(class_path=TensorBoardLogger.__module__ + ".TensorBoardLogger")
        logger.init_args = Namespace(save_dir=trainer.get("default_root_dir") or ".")
    if not (isinstance(logger, Namespace) and str(logger.get("class_path")).endswith("TensorBoardLogger")):
        return
    run, root = checkpoint.parent.parent, logger_root(logger, Path(trainer.get("default_root_dir") or "."))
    inside_a_run = checkpoint.parent.name == "checkpoints" and run.parent.resolve() == root.resolve()
    if inside_a_run and logger.init_args.get("version") is None:
        logger.init_args.version = run.name
