"""The command line: LightningCLI with fit, validate, test and predict, configured from YAML files.

Beyond plain LightningCLI:
- `--ckpt_path best` / `last` and safe loading of every checkpoint (`mnist_ann.checkpoints`), checked
  before anything is built, so that a bad file is one message.
- `test`, `validate` and `predict` of a checkpoint log into the TensorBoard run the checkpoint came
  from, so that a run's test figures sit beside its training curves and hyperparameters.
- The data module tells the model its class names (`link_arguments`), and checkpoints keep them.
- The optimizer is built once up front, so a bad learning rate is refused before the data loads.
- A config error is the parser's `error:` line with a pointer to `--help`, not the full usage first.
- `fit` stopped by SIGTERM or Ctrl-C saves its step and exits 143 or 130; a full disk is one message.
- `fit` ends with what it reached, where `best.ckpt` is, and the command that tests it.
"""

import argparse
import os
import shlex
import shutil
import signal
import sys
import warnings
from collections.abc import Sequence
from importlib.metadata import metadata
from pathlib import Path
from typing import Any

from jsonargparse import Namespace
from lightning.pytorch.callbacks import Callback, WeightAveraging
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from mnist_ann.checkpoints import (
    check_checkpoint,
    check_fits,
    checkpoint_roots,
    checkpoints_under,
    differ,
    log_into_checkpoint_run,
    newest_loadable,
    resolve_checkpoint,
)
from mnist_ann.collect import read_as_data
from mnist_ann.command_lines import check_config_files, fit_summary, without_option
from mnist_ann.data import MNISTDataModule
from mnist_ann.errors import (
    ConfigError,
    DataError,
    DiskFullError,
    Interrupted,
    TrainingDivergedError,
    full_disk_cause,
)
from mnist_ann.model import MNISTClassifier
from mnist_ann.monitoring import TensorBoardLogger
from mnist_ann.predictions import PredictionWriter
from mnist_ann.stopping import StopTogether
from mnist_ann.threads import AUTO, Threads, use_threads

RECIPE = Path(__file__).parent / "configs" / "default.yaml"
# Lightning's notes on restoring the training callbacks' state from a checkpoint: they matter when
# `fit` resumes, and say nothing to a command that only evaluates or predicts.
RESTORE_NOTES = ("The dirpath has changed from", "Be aware that when using `ckpt_path`, callbacks used to create")
# Model settings a checkpoint decides (Lightning takes them from it): said aloud when the config differs.
CHECKPOINT_SETTINGS = ("task", "positive", "hidden_sizes", "dropout", "input_dropout", "label_smoothing")


class ArgumentParser(LightningArgumentParser):
    def print_usage(self, file=None) -> None:
        """Nothing: on an error, the line after it points at --help; the ~60-line usage hid the error itself."""


class MNISTCLI(LightningCLI):
    def __init__(
        self,
        args: list[str] | dict | None = None,
        callbacks: Sequence[Callback] = (),
        exit_on_error: bool = True,
        run: bool = True,
        **kwargs,
    ) -> None:
        """`callbacks`: added to the configs' (tune's pruning); `exit_on_error` false: a config error is raised
        as jsonargparse's ArgumentError."""
        # The command as given (the resume hint repeats it); a whole config (a tune trial) has none.
        self.command_line = [] if isinstance(args, dict) else list(sys.argv[1:] if args is None else args)
        parser_settings = {
            "prog": "mnist-ann",
            "description": metadata("mnist-ann")["Summary"],  # the package's own, from pyproject.toml
            # No abbreviations: `--trainer.max_epoch 3` is a typo to refuse, not `max_epochs` to guess.
            "allow_abbrev": False,
            "exit_on_error": exit_on_error,
            # The recipe without --config, also for a user who installed the wheel and has no configs/ folder.
            "default_config_files": [str(RECIPE)],
        }
        super().__init__(
            MNISTClassifier,
            MNISTDataModule,
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,  # the model takes its optimizer as --model.optimizer
            trainer_defaults={
                "profiler": {"class_path": "mnist_ann.lean.NoProfiler"},
                "plugins": {"class_path": "mnist_ann.checkpoints.AtomicCheckpointIO"},
                "callbacks": list(callbacks),
            },
            parser_class=ArgumentParser,
            # The recipe is each subcommand's default (a CLI without subcommands, run=False, has one parser).
            parser_kwargs={
                **{
                    key: value
                    for key, value in parser_settings.items()
                    if run is False or key != "default_config_files"
                },
                **{command: parser_settings for command in self.subcommands()},
            },
            run=run,
            args=args,
            seed_everything_default=42,  # the recipe's, also without a config: runs repeat exactly
            **kwargs,
        )

    def subcommands(self) -> dict[str, set[str]]:
        """Lightning's subcommands, only the one asked for where it is one of them: each subcommand's parser costs
        as much to build as the command line costs to parse, and a command runs one."""
        every = LightningCLI.subcommands()
        asked = self.command_line[0] if self.command_line else None
        return {asked: every[asked]} if asked in every else every

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.classes", "model.class_names", apply_on="instantiate")
        parser.add_argument(
            "--threads",
            type=Threads,
            default=AUTO,
            help="torch's threads: auto (one for a network whose step is small, as the recipe's; one per core for "
            "a wide one) or a number (mnist_ann.threads)",
        )
        self.add_search_argument(parser)

    def add_search_argument(self, parser: LightningArgumentParser) -> None:
        """`--tune`: the same configs serve fit and tune, and run configs hold a `tune:` section; it is tune's
        alone (`mnist_ann.tune.study.SearchCLI` reads it), so the other commands take any and ignore it."""
        parser.add_argument("--tune", type=dict[str, Any] | None, default=None, help=argparse.SUPPRESS)

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        if isinstance(args, dict):  # a whole config (mnist-ann tune's trials), no command line to mix it up with
            self.config = parser.parse_object(args)
        else:
            check_config_files(parser, self.command_line)
            self.config = parser.parse_args(args)
        # Lightning reads the model's hyperparameters from --ckpt_path right after parsing: resolve
        # best/last and check the file first, so that this works for them too and fails clearly.
        if subcommand := self.config.get("subcommand"):
            trainer = self.config[subcommand].trainer
            logger = trainer.logger if isinstance(trainer.logger, Namespace | dict) else None
            if trainer.default_root_dir and logger and logger.get("init_args", {}).get("save_dir") == ".":
                # The recipe's logger writes under the folder the command runs in: under --trainer.default_root_dir
                # when one is given, as Lightning's own logger would.
                logger["init_args"]["save_dir"] = trainer.default_root_dir
            self._resolve_ckpt_path(subcommand, self.config[subcommand])
            # The configs' TQDMProgressBar and ModelSummary go when turned off (Lightning would refuse the pair).
            for switch, callback in [("enable_progress_bar", "ProgressBar"), ("enable_model_summary", "ModelSummary")]:
                if trainer[switch] is False and isinstance(trainer.callbacks, list):
                    trainer.callbacks = [c for c in trainer.callbacks if not c.class_path.endswith(callback)]
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
        others = checkpoints_under(checkpoint_roots(config.trainer))
        checkpoint = check_checkpoint(path, weights_only=config["weights_only"], others=others)
        self._checkpoint_weights, self._checkpoint_step = checkpoint["state_dict"], checkpoint.get("global_step")
        saved = checkpoint.get("hyper_parameters", {})
        if changed := [
            name for name in CHECKPOINT_SETTINGS if name in saved and differ(saved[name], config.model[name])
        ]:
            settings = ", ".join(
                f"model.{name}={saved[name]} (the config says {config.model[name]})" for name in changed
            )
            rank_zero_info(f"--ckpt_path {path}: the checkpoint's model is used: {settings}")
        if subcommand != "fit":  # (a resumed fit starts a new run: its steps may overlap the first's)
            log_into_checkpoint_run(config.trainer, path, TensorBoardLogger)

    def _check_before_running(self) -> None:
        """What can only be checked once the model is built: its optimizer, and that the checkpoint fits it; and
        the threads the work of a step pays for."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        read_as_data(self.datamodule)  # your own drawings, named as the data
        batch = self.datamodule.batch_size if self.subcommand == "fit" else self.datamodule.eval_batch_size
        use_threads(config.get("threads", AUTO), self.model, batch)
        try:
            optimizer = self.model.optimizer_factory(self.model.parameters())
        except ValueError as error:  # torch's own message, e.g. "Invalid learning rate: -0.1"
            raise ConfigError(f"model.optimizer: {error}") from None
        if rates := [group["lr"] for group in optimizer.param_groups if not group["lr"] > 0]:
            raise ConfigError(f"model.optimizer: the learning rate must be positive, got {rates[0]}")
        averaging = [c for c in self.trainer.callbacks if isinstance(c, WeightAveraging) and not c._use_buffers]
        if averaging and self.model.hparams.get("batch_norm"):  # else evaluated with the statistics it began with
            raise ConfigError("model.batch_norm: weight averaging must average the buffers too (use_buffers: true)")
        weights = getattr(self, "_checkpoint_weights", None)
        if weights:
            check_fits(self.config_init[self.subcommand]["ckpt_path"], weights, self.model.state_dict())
        if self.subcommand in ("validate", "test") and isinstance(self.trainer.logger, TensorBoardLogger):
            self.trainer.logger.evaluated_step = getattr(self, "_checkpoint_step", None)

    before_fit = before_validate = before_test = _check_before_running

    def fit(self, model, **kwargs) -> None:
        """`trainer.fit` that stops cleanly when told to.

        SIGTERM (a scheduler's preemption, `timeout`, `kill`) is handled by Lightning: the step in
        progress completes, the checkpoint callback with `save_on_exception` saves it, and the run
        stops. Ctrl-C (SIGINT) is routed the same way, so that it never stops a step halfway. Several
        processes stop at the same step (`mnist_ann.stopping`).
        """
        received = []

        def on_interrupt(signum, frame) -> None:
            received.append(signal.SIGINT)
            os.kill(os.getpid(), signal.SIGTERM)

        previous = signal.signal(signal.SIGINT, on_interrupt)
        if self.trainer.num_nodes * self.trainer.num_devices > 1:
            self.trainer.callbacks.append(StopTogether())
        try:
            self.trainer.fit(model, **kwargs)
        except SIGTERMException:
            raise self._interrupted(received[0] if received else signal.SIGTERM) from None
        except TrainingDivergedError as error:
            kept = self._kept_checkpoint()
            where = f"the last good checkpoint is {kept[0]}" if kept else "no checkpoint had been written yet"
            raise TrainingDivergedError(f"{error}; {where}") from None
        except Exception as error:
            if cause := full_disk_cause(error):
                raise self._disk_full(cause) from None
            self._forget_unstarted_run()
            raise
        finally:
            signal.signal(signal.SIGINT, previous)

    def after_fit(self) -> None:
        """A `fit` from the command line ends with its summary (a tune trial's is in the study's report)."""
        on_command_line = self.command_line and self.trainer.is_global_zero
        if on_command_line and (summary := fit_summary(self.trainer, self.command_line)):
            rank_zero_info(summary)

    def _forget_unstarted_run(self) -> None:
        """A run refused before its first step (a setting the data cannot take) leaves no run folder: Lightning
        made one, with an empty event file, that TensorBoard would list as a run."""
        logger = self.trainer.logger
        folder = Path(logger.log_dir) if logger is not None and logger.log_dir else None
        if self.trainer.global_step or not self.trainer.is_global_zero or folder is None or not folder.is_dir():
            return
        written_at_start = ("hparams.yaml", "config.yaml")
        if all(path.name.startswith("events.out.") or path.name in written_at_start for path in folder.iterdir()):
            shutil.rmtree(folder, ignore_errors=True)

    def _kept_checkpoint(self) -> tuple[Path, int] | None:
        """The newest checkpoint of this run that loads, with its step."""
        return newest_loadable(
            [Path(callback.dirpath) for callback in self.trainer.checkpoint_callbacks if callback.dirpath]
        )

    def _interrupted(self, signum: signal.Signals) -> Interrupted:
        kept = self._kept_checkpoint()
        stopped = f"stopped by {signum.name} at step {self.trainer.global_step}"
        if kept and kept[1] == self.trainer.global_step:
            command = shlex.join(
                ["mnist-ann", *without_option(self.command_line, "--ckpt_path"), "--ckpt_path", str(kept[0])]
            )
            message = f"{stopped}; saved it to {kept[0]}. Resume with: {command}"
        elif kept:
            message = f"{stopped}; the last checkpoint is {kept[0]} (step {kept[1]})"
        else:
            message = f"{stopped}; no checkpoint was written"
        return Interrupted(message if self.trainer.is_global_zero else "", 128 + signum)

    def _disk_full(self, cause: OSError) -> DiskFullError:
        kept = self._kept_checkpoint()
        where = f" writing {cause.filename}" if cause.filename else f" under {self.trainer.log_dir}"
        return DiskFullError(
            f"no space left{where} ({cause.strerror}): training stopped at step {self.trainer.global_step}. "
            + (f"Kept {kept[0]} (step {kept[1]}), whole" if kept else "No checkpoint had been written")
            + "; free some space, then resume with --ckpt_path last"
        )

    def before_predict(self) -> None:
        self._check_before_running()
        if not any(isinstance(callback, PredictionWriter) for callback in self.trainer.callbacks):
            self.trainer.callbacks.append(PredictionWriter())  # without a config: the rows on the console

    def after_predict(self) -> None:
        if failures := self.datamodule.predict_failures:
            raise DataError(f"{len(failures)} of the files given could not be predicted (see the messages above)")
