"""`mnist-ann tune`: a hyperparameter search with Optuna over the same configs as `fit`.

    mnist-ann tune --config configs/default.yaml --config configs/tune.yaml [--n_trials N]
                   [--storage URL] [--study_name NAME] [any fit option, e.g. --data.data_dir DIR]

The configs' `tune:` section names the search space by the command line's own keys, so any option can
be searched. Each trial is an ordinary `fit` of that config with the trial's values, run in this
process through `MNISTCLI`, in its own TensorBoard run (`<save_dir>/tune/<study>/trial_NNNN`, whose
HParams row holds the trial's values and its `val/acc`); it is scored on the validation split, never
on the test images. Optuna's pruner stops unpromising trials after any epoch.

The study is kept in a journal file beside the runs (`<save_dir>/tune/<study>.journal`), which several
`tune` processes on one machine share, or at `--storage` (an RDB URL, e.g. PostgreSQL) for several
machines. Started again, a study goes on: finished trials are kept; a trial whose process died is
marked failed and its values run again (an RDB storage knows this from Optuna's heartbeat, the journal
from the process id each trial records, since Optuna's journal storage has no heartbeat: optuna#6615).
A trial whose training diverges is recorded as pruned, with why, and the study goes on.
"""

import argparse
import contextlib
import logging
import os
import shlex
import signal
import socket
import sys
import warnings
from pathlib import Path
from typing import Any

import optuna
import torch
import yaml
from lightning.pytorch.callbacks import Callback
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock
from optuna.trial import TrialState
from optuna_integration import PyTorchLightningPruningCallback

from mnist_ann.cli import MNISTCLI
from mnist_ann.errors import ConfigError, Interrupted, TrainingDivergedError
from mnist_ann.idx import ChecksumWarning
from mnist_ann.search import Search, check_keys, decode, set_dotted, trial_config

METRIC = "val/acc"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def tune(argv: list[str]) -> None:
    """The study, with what it changes for its length put back afterwards (torch's threads, Lightning's log
    level, warning filters, signal handlers), for a program that calls it and goes on, as the tests do."""
    with contextlib.ExitStack() as restore, warnings.catch_warnings():
        restore.callback(torch.set_num_threads, torch.get_num_threads())
        for logger in map(logging.getLogger, ("lightning.pytorch", "lightning.fabric")):
            restore.callback(logger.setLevel, logger.level)
        for signum in (signal.SIGTERM, signal.SIGINT):
            restore.callback(signal.signal, signum, signal.getsignal(signum))
        run_study(argv)


def run_study(argv: list[str]) -> None:
    own = argparse.ArgumentParser(prog="mnist-ann tune", description=__doc__.split("\n\n")[0])
    own.add_argument("--n_trials", help="trials the study should have finished (default: the config's)")
    own.add_argument("--storage", help="an RDB URL, e.g. postgresql://host/db (default: a journal file)")
    own.add_argument("--study_name", default="tune", help="the study to start or go on with (default: tune)")
    own.add_argument("--threads", type=int, default=1, help="torch threads of this process (default: 1)")
    options, fit_args = own.parse_known_args(argv)
    if options.threads < 1:
        raise ConfigError(f"--threads: at least 1, not {options.threads}")
    # Several tune processes on one machine, each with torch's usual thread per core, slowed a study 7-14x
    # (spinning threads on too few cores); one thread each makes two processes 1.9x faster than one.
    torch.set_num_threads(options.threads)

    if options.n_trials is not None:
        fit_args += ["--tune.n_trials", str(options.n_trials)]
    sys.argv = [sys.argv[0], *fit_args]  # the fit options, as MNISTCLI reads them
    base = MNISTCLI(run=False)
    search: Search = base.config_init["tune"]
    if not search.space:
        raise ConfigError("tune: the configs name no search space (`tune: space:`); add configs/tune.yaml (--config)")
    config = yaml.safe_load(base.parser.dump(base.config, skip_none=False))
    del config["tune"]
    runs = Path(config["trainer"]["logger"]["init_args"].get("save_dir") or ".") / "tune"
    check_keys(base.parser, config, search)

    study = open_study(options.storage, runs, options.study_name, search)
    finished = len(study.get_trials(states=FINISHED))
    print(
        f"study {options.study_name}: {finished} of {search.n_trials} trials finished; runs in "
        f"{runs / options.study_name}"
    )
    for name in ("lightning.pytorch", "lightning.fabric"):  # one line a trial: Optuna's
        logging.getLogger(name).setLevel(logging.WARNING)

    running: list[optuna.Trial] = []
    received: list[int] = []  # signals, acted on where it is safe: before a trial, before and in its training
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda signum, frame: received.append(signum))

    def objective(trial: optuna.Trial) -> float:
        if running:  # every trial reads the same files: their checksum warning once, with the first
            warnings.filterwarnings("ignore", category=ChecksumWarning)
        running[:] = [trial]
        trial.set_user_attr("process", f"{socket.gethostname()}:{os.getpid()}")
        values = {
            key: entry.suggest(trial, key) for key, entry in search.entries.items() if entry.applies(trial.params)
        }
        if received:
            raise StopRequested
        cli = MNISTCLI(args=trial_config(config, search, values, runs / options.study_name, trial.number), run=False)
        cli.trainer.callbacks += [PyTorchLightningPruningCallback(trial, monitor=METRIC), PassOn(received)]
        cli.before_fit()
        if received:
            raise StopRequested
        try:
            cli.fit(cli.model, datamodule=cli.datamodule)
        except TrainingDivergedError as error:  # a hopeless trial, like one the pruner stops: the study goes on
            trial.set_user_attr("diverged", str(error))
            raise optuna.TrialPruned(str(error).split(":")[0]) from None
        return float(cli.trainer.callback_metrics[f"{METRIC}_best"])

    remaining = search.n_trials - len(study.get_trials(states=(*FINISHED, TrialState.RUNNING)))
    try:
        if remaining > 0:
            # Trials running in other processes count: together they stop at n_trials.
            stop = optuna.study.MaxTrialsCallback(search.n_trials, states=(*FINISHED, TrialState.RUNNING))
            study.optimize(objective, n_trials=remaining, callbacks=[stop])
        if received:
            raise StopRequested
    except (Interrupted, StopRequested) as interruption:
        # fit knows which signal stopped it (it routes Ctrl-C through SIGTERM); else the first one received
        status = interruption.exit_status if isinstance(interruption, Interrupted) else 128 + received[0]
        signal_name = signal.Signals(status - 128).name
        stopped = [t for t in study.get_trials(states=(TrialState.FAIL,)) if running and t.number == running[0].number]
        for trial in stopped:  # the trial it stopped (Optuna marked it failed): its values run again
            retry(study, trial)
        done = len(study.get_trials(states=FINISHED))
        where = f"in trial {stopped[0].number}, which will run again" if stopped else "between trials"
        raise Interrupted(
            f"stopped by {signal_name} {where}; the {done} finished trials are kept. "
            f"Go on with: {shlex.join(['mnist-ann', 'tune', *argv])}",
            status,
        ) from None
    report(study, search, runs / options.study_name / "best.yaml")


def open_study(storage: str | None, runs: Path, name: str, search: Search) -> optuna.Study:
    try:
        if storage:
            with warnings.catch_warnings():  # the heartbeat, years old, is still marked experimental
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                retry_stale = RetryHeartbeatStaleTrialCallback(max_retry=2)
                backend = RDBStorage(
                    storage, heartbeat_interval=10, grace_period=30, heartbeat_stale_trial_callback=retry_stale
                )
        else:
            runs.mkdir(parents=True, exist_ok=True)
            # By its absolute path: Optuna's lock is a symbolic link to the journal, and one made from a relative
            # path dangles, so a lock left by a killed process was never recognised as stale. Locks are held
            # for milliseconds: after 10 s without a write, one is a killed process's.
            journal = str((runs / f"{name}.journal").resolve())
            backend = JournalStorage(JournalFileBackend(journal, JournalFileSymlinkLock(journal, grace_period=10)))
        pruner = {  # the median pruner judges from the second epoch on, once startup_trials have finished
            "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=search.startup_trials, n_warmup_steps=1),
            "hyperband": optuna.pruners.HyperbandPruner,
            "none": optuna.pruners.NopPruner,
        }[search.pruner]()
        sampler = optuna.samplers.TPESampler(seed=search.seed)
        study = optuna.create_study(study_name=name, storage=backend, direction="maximize", load_if_exists=True,
                                    pruner=pruner, sampler=sampler)  # fmt: skip
    except Exception as error:  # SQLAlchemy's, the file system's, Optuna's own
        where = storage or runs / f"{name}.journal"
        raise ConfigError(f"--storage {where}: cannot open it ({str(error).splitlines()[0]})") from None
    if not storage:
        retry_dead_trials(study)
    return study


def retry_dead_trials(study: optuna.Study) -> None:
    """Journal storage: a RUNNING trial whose process, on this machine, is gone is failed and queued again."""
    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        machine, _, pid = trial.user_attrs.get("process", "").partition(":")
        if machine == host and pid.isdigit() and not process_exists(int(pid)):
            study.tell(trial.number, state=TrialState.FAIL)
            retry(study, trial)


class StopRequested(Exception):
    """A signal came while a trial was being set up or between trials."""


class PassOn(Callback):
    """A signal that came while a trial was being set up reaches training once Lightning handles signals,
    which it does from just before training: the trial then stops after its first step."""

    def __init__(self, received: list[int]) -> None:
        self.received = received

    def on_train_start(self, trainer, pl_module) -> None:
        if self.received:
            os.kill(os.getpid(), signal.SIGTERM)


def retry(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Queue a failed trial's values to run again (one stopped before it chose them has none: nothing to do)."""
    if trial.params:
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})


def described(params: dict[str, Any]) -> str:
    """A trial's values, short: `hidden_sizes=[1024, 512] optimizer=Adam lr=0.00123 batch_size=64`."""
    parts = []
    for key, value in params.items():
        *parents, name = key.split(".")
        if name == "class_path":
            parts.append(f"{parents[-1]}={value.rsplit('.', 1)[-1]}")
        else:
            parts.append(f"{name}={value:.3g}" if isinstance(value, float) else f"{name}={decode(value)}")
    return " ".join(parts)


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def report(study: optuna.Study, search: Search, best_file: Path) -> None:
    """The best trials as a table, and the best one's values as a config that `fit` layers over the others."""
    complete = sorted(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.value, reverse=True)
    pruned = study.get_trials(states=(TrialState.PRUNED,))
    diverged = sum("diverged" in trial.user_attrs for trial in pruned)
    if not complete:
        raise ConfigError(f"study {study.study_name}: no trial completed ({len(pruned)} pruned)")
    print(f"\n{len(complete)} trials completed, {len(pruned)} pruned ({diverged} of them diverged).")
    print(f"The best, by {METRIC} after {search.epochs} epoch{'s' if search.epochs > 1 else ''}:")
    print(f"{'trial':>6} {METRIC:>8}  values")
    for trial in complete[:5]:
        print(f"{trial.number:>6} {trial.value:>8.4f}  {described(trial.params)}")
    best: dict[str, Any] = {}
    for key, value in complete[0].params.items():
        set_dotted(best, key, decode(value))
    best_file.parent.mkdir(parents=True, exist_ok=True)
    header = f"# The best of study {study.study_name}: trial {complete[0].number}, {METRIC} {complete[0].value:.4f}.\n"
    header += f"#   mnist-ann fit --config configs/default.yaml --config {best_file}\n"
    best_file.write_text(header + yaml.safe_dump(best, sort_keys=False))
    print(f"\nwrote {best_file}; train it with: mnist-ann fit --config configs/default.yaml --config {best_file}")
