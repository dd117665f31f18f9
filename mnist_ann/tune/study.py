"""`mnist-ann tune`: a hyperparameter search with Optuna over the same configs as `fit`.

    mnist-ann tune --config configs/default.yaml --config configs/tune.yaml [--n_trials N]
                   [--storage URL] [--study_name NAME] [any fit option, e.g. --data.data_dir DIR]

The configs' `tune:` section names the search space by the command line's own keys, so any option can
be searched. Each trial is an ordinary `fit` of that config with the trial's values, run in this
process through `MNISTCLI` as the command line runs it, in its own TensorBoard run
(`<save_dir>/tune/<study>/trial_NNNN`); it is scored on the validation split, never on the test
images. Optuna's pruner stops unpromising trials after any epoch.

The study is kept in a journal file beside the runs (`<save_dir>/tune/<study>.journal`), which several
`tune` processes on one machine share, or at `--storage` (an RDB URL: SQLite, PostgreSQL) for several
machines. Started again, a study goes on: finished trials are kept; a trial whose process died is
marked failed and its values run again (known from the process id each trial records, on the same
machine; from Optuna's heartbeat, on a database, for other machines). A trial whose training diverges
is recorded as pruned, a trial whose config fails anyway as failed, each with why, and the study goes on.
"""

import argparse
import contextlib
import logging
import os
import shlex
import signal
import socket
import warnings
from pathlib import Path
from typing import Any

import optuna
import torch
import yaml
from jsonargparse import ArgumentError
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException
from optuna.trial import TrialState
from optuna_integration import PyTorchLightningPruningCallback

from mnist_ann.cli import MNISTCLI
from mnist_ann.command_lines import config_files
from mnist_ann.errors import ConfigError, Interrupted, TrainingDivergedError
from mnist_ann.idx import ChecksumWarning
from mnist_ann.monitoring import log_hparams_row, run_hparams, tensorboard_writer
from mnist_ann.tune.report import report
from mnist_ann.tune.space import METRIC, Plan, Search, check_space, short_name, trial_config
from mnist_ann.tune.storage import open_study, retry

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def tune(argv: list[str]) -> None:
    """The command. What it changes for its length is put back afterwards (torch's threads, Lightning's log
    level, signal handlers), for a program that calls it and goes on, as the tests do."""
    options, fit_args = parse_options(argv)
    with contextlib.ExitStack() as restore:
        restore.callback(torch.set_num_threads, torch.get_num_threads())
        for logger in map(logging.getLogger, ("lightning.pytorch", "lightning.fabric")):
            restore.callback(logger.setLevel, logger.level)
        for signum in (signal.SIGTERM, signal.SIGINT):
            restore.callback(signal.signal, signum, signal.getsignal(signum))
        restore.enter_context(warnings.catch_warnings())
        run_study(options, fit_args, argv)


def parse_options(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """tune's own options; the rest are fit's."""
    parser = argparse.ArgumentParser(
        prog="mnist-ann tune",
        description=__doc__.split("\n\n")[0],
        epilog="Every option of `mnist-ann fit` applies too (mnist-ann fit --help), to every trial; the study's "
        "settings are the configs' tune: section, or --tune.epochs N, --tune.pruner hyperband, ...",
        allow_abbrev=False,
    )
    parser.add_argument("--n_trials", type=int, help="trials the study should have finished (default: the config's)")
    parser.add_argument("--storage", help="an RDB URL, e.g. sqlite:///study.db (default: a journal file)")
    parser.add_argument("--study_name", default="tune", help="the study to start or go on with (default: tune)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of this process (default: 1)")
    options, fit_args = parser.parse_known_args(argv)
    if options.threads < 1:
        raise ConfigError(f"--threads: at least 1, not {options.threads}")
    if options.n_trials is not None:
        fit_args += ["--tune.n_trials", str(options.n_trials)]
    return options, fit_args


class SearchCLI(MNISTCLI):
    """`fit`'s command line, whose `tune:` section is the search (`mnist_ann.tune.space.Search`)."""

    def add_search_argument(self, parser) -> None:
        parser.add_argument("--tune", type=Search, help="the search (configs/tune.yaml's `tune:` section)")


def plan(fit_args: list[str]) -> Plan:
    """The configs and options as fit reads them, the `tune:` section apart; every entry checked."""
    base = SearchCLI(args=fit_args, run=False)
    search: Search = base.config_init["tune"]
    if not search.space:
        raise ConfigError("tune: the configs name no search space (`tune: space:`); add configs/tune.yaml (--config)")
    config = yaml.safe_load(base.parser.dump(base.config, skip_none=False))
    del config["tune"]
    runs = Path(config["trainer"]["logger"]["init_args"].get("save_dir") or ".") / "tune"
    check_space(base.parser, config, search)
    return Plan(config, search, runs, config_files(fit_args))


def run_study(options: argparse.Namespace, fit_args: list[str], argv: list[str]) -> None:
    # Several tune processes on one machine, each with torch's usual thread per core, slow a study down
    # (spinning threads on too few cores): one thread each (benchmarks/README.md, "Tune studies").
    torch.set_num_threads(options.threads)
    study_plan = plan(fit_args)
    study_plan.config["threads"] = options.threads  # each trial's fit, as `threads` in its config
    study = open_study(options.storage, study_plan, options.study_name)
    search = study_plan.search
    print(
        f"study {options.study_name}: {len(study.get_trials(states=FINISHED))} of {search.n_trials} trials "
        f"finished; runs in {study_plan.runs / options.study_name}"
    )
    for name in ("lightning.pytorch", "lightning.fabric"):  # one line a trial: Optuna's
        logging.getLogger(name).setLevel(logging.WARNING)
    received: list[int] = []  # signals, acted on where it is safe: before a trial, before and in its training
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda signum, frame: received.append(signum))
    trials = Trials(study_plan, study.study_name, received)
    try:
        remaining = search.n_trials - len(study.get_trials(states=(*FINISHED, TrialState.RUNNING)))
        if remaining > 0:
            # Trials running in other processes count: together they stop at n_trials.
            stop = optuna.study.MaxTrialsCallback(search.n_trials, states=(*FINISHED, TrialState.RUNNING))
            study.optimize(
                trials.run, n_trials=remaining, callbacks=[stop], catch=(TrialConfigError,), show_progress_bar=True
            )
        if received:
            raise StopRequested
    except (Interrupted, StopRequested) as interruption:
        raise stopped(study, trials, interruption, argv) from None
    report(study, study_plan, study_plan.runs / options.study_name / "best.yaml")


class Trials:
    """The objective: each trial a fit of the study's config with the trial's values."""

    def __init__(self, study_plan: Plan, study_name: str, received: list[int]) -> None:
        self.plan, self.folder, self.received = study_plan, study_plan.runs / study_name, received
        self.current: optuna.Trial | None = None

    def run(self, trial: optuna.Trial) -> float:
        if self.current:  # every trial reads the same files: their checksum warning once, with the first
            warnings.filterwarnings("ignore", category=ChecksumWarning)
        self.current = trial
        trial.set_user_attr("process", f"{socket.gethostname()}:{os.getpid()}")
        values = self.plan.search.values(trial)
        if self.received:
            raise StopRequested
        config = trial_config(self.plan.config, self.plan.search, values, self.folder, trial.number)
        logger = config["trainer"]["logger"]["init_args"]
        trial.set_user_attr(
            "run", str(Path(logger["save_dir"], logger["name"], logger["version"]))
        )  # its TensorBoard run
        callbacks = [PyTorchLightningPruningCallback(trial, monitor=METRIC), PassOn(self.received), TrialRow(values)]
        try:
            cli = MNISTCLI(args={"fit": config}, callbacks=callbacks, exit_on_error=False)
        except (ArgumentError, ConfigError) as error:  # checked up front, so rare: recorded, and the study goes on
            trial.set_user_attr("error", " ".join(str(error).split()))
            raise TrialConfigError(f"trial {trial.number}: {' '.join(str(error).split())}") from None
        except TrainingDivergedError as error:  # a hopeless trial, like one the pruner stops: the study goes on
            trial.set_user_attr("diverged", str(error))
            raise optuna.TrialPruned(str(error).split(":")[0]) from None
        return float(cli.trainer.callback_metrics[f"{METRIC}_best"])


class TrialConfigError(Exception):
    """A trial's values that the command line refuses: the trial fails with the message, the study goes on."""


class StopRequested(Exception):
    """A signal came while a trial was being set up or between trials."""


class TrialRow(Callback):
    """The trial's row in TensorBoard's HParams tab, written as the trial ends so that it holds how it ended
    (`state`: complete, pruned or failed) beside its searched values, by their short names, and what
    distinguishes every run. A trial stopped by a signal runs again as another trial: it leaves no row."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = {short_name(key): row_value(key, value) for key, value in values.items()}

    def _write(self, trainer, pl_module, state: str) -> None:
        if writer := tensorboard_writer(trainer):
            log_hparams_row(writer, {**run_hparams(trainer, pl_module), **self.values, "state": state})

    def on_fit_end(self, trainer, pl_module) -> None:
        self._write(trainer, pl_module, "complete")

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if isinstance(exception, (optuna.TrialPruned, TrainingDivergedError)):
            self._write(trainer, pl_module, "pruned")
        elif not isinstance(exception, (SIGTERMException, KeyboardInterrupt)):
            self._write(trainer, pl_module, "failed")


def row_value(key: str, value: Any) -> int | float | str | bool:
    """A searched value as an HParams cell: a class by its name, a list as text."""
    if key.endswith("class_path") and isinstance(value, str):
        return value.rsplit(".", 1)[-1]
    return value if isinstance(value, (bool, int, float, str)) else str(value)


class PassOn(Callback):
    """A signal that came while a trial was being set up reaches training once Lightning handles signals,
    which it does from just before training: the trial then stops after its first step."""

    def __init__(self, received: list[int]) -> None:
        self.received = received

    def on_train_start(self, trainer, pl_module) -> None:
        if self.received:
            os.kill(os.getpid(), signal.SIGTERM)


def stopped(study: optuna.Study, trials: Trials, interruption: Exception, argv: list[str]) -> Interrupted:
    """The study stopped by a signal: the trial it stopped queued again, and the command that goes on."""
    # fit knows which signal stopped it (it routes Ctrl-C through SIGTERM); else the first one received
    status = interruption.exit_status if isinstance(interruption, Interrupted) else 128 + trials.received[0]
    current = trials.current.number if trials.current else None
    stopped_trials = [trial for trial in study.get_trials(states=(TrialState.FAIL,)) if trial.number == current]
    for trial in stopped_trials:  # Optuna marked it failed: its values run again
        retry(study, trial)
    done = len(study.get_trials(states=FINISHED))
    where = f"in trial {current}, which will run again" if stopped_trials else "between trials"
    return Interrupted(
        f"stopped by {signal.Signals(status - 128).name} {where}; the {done} finished trials are kept. "
        f"Go on with: {shlex.join(['mnist-ann', 'tune', *argv])}",
        status,
    )
