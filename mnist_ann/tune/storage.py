"""The study in its storage: opened (a journal file, or a database at --storage), checked to be the same
study as the configs describe, and rid of the trials of processes that died."""

import os
import socket
import time
import warnings
from pathlib import Path

import optuna
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock
from optuna.trial import TrialState

from mnist_ann.errors import ConfigError
from mnist_ann.tune.space import METRIC, Plan, Search

# What a study keeps of the settings it was started with: going on under others would rank unlike trials.
KEPT_SETTINGS = ("epochs", "pruner")
CLAIM_SECONDS = 3
LOCK_GRACE_SECONDS = 10  # Optuna's journal lock: how long one may go without a write before it counts as left


def open_study(storage: str | None, study_plan: Plan, name: str) -> optuna.Study:
    search = study_plan.search
    try:
        study = optuna.create_study(
            study_name=name,
            storage=open_storage(storage, study_plan.runs, name),
            direction="maximize",
            load_if_exists=True,
            pruner=pruner(search),
            sampler=optuna.samplers.TPESampler(seed=search.seed),
        )
    except Exception as error:  # SQLAlchemy's, the file system's, Optuna's own
        where = storage or study_plan.runs / f"{name}.journal"
        raise ConfigError(f"--storage {where}: cannot open it ({str(error).splitlines()[0]})") from None
    check_same_study(study, study_plan)
    with warnings.catch_warnings():  # (experimental since Optuna 3.2)
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([f"{METRIC}_best"])  # what a trial's value is, in optuna-dashboard and its exports
    retry_dead_trials(study)
    if storage:  # trials of processes on other machines whose heartbeat stopped
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            fail_stale_trials(study)
    return study


def open_storage(storage: str | None, runs: Path, name: str) -> optuna.storages.BaseStorage:
    if storage:
        with warnings.catch_warnings():  # the heartbeat, years old, is still marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(
                storage,
                heartbeat_interval=10,
                grace_period=30,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=2),
            )
    runs.mkdir(parents=True, exist_ok=True)
    # By its absolute path: Optuna's lock is a symbolic link to the journal, and one made from a relative
    # path dangles, so a lock left by a killed process was never recognised as stale. Locks are held
    # for milliseconds: after LOCK_GRACE_SECONDS without a write, one is a killed process's.
    journal = str((runs / f"{name}.journal").resolve())
    lock = JournalFileSymlinkLock(journal, grace_period=LOCK_GRACE_SECONDS)
    return JournalStorage(JournalFileBackend(journal, lock))


def pruner(search: Search) -> optuna.pruners.BasePruner:
    if search.pruner == "median":  # it judges from the second epoch on, once startup_trials have finished
        return optuna.pruners.MedianPruner(n_startup_trials=search.startup_trials, n_warmup_steps=1)
    return optuna.pruners.HyperbandPruner() if search.pruner == "hyperband" else optuna.pruners.NopPruner()


def check_same_study(study: optuna.Study, study_plan: Plan) -> None:
    """A study goes on only with the space and the settings it was started with; a new one records them."""
    search = study_plan.search
    settings = {key: getattr(search, key) for key in KEPT_SETTINGS}
    kept = study.user_attrs.get("settings")
    new = f"start a new study with --study_name NAME, or delete {study.study_name}'s storage"
    if kept is None:
        study.set_user_attr("settings", settings)
        study.set_user_attr("configs", study_plan.configs)
    elif changed := [f"tune.{key} {kept[key]} (now {settings[key]})" for key in kept if kept[key] != settings[key]]:
        raise ConfigError(f"study {study.study_name} was run with {', '.join(changed)}: {new}")
    for trial in study.get_trials(deepcopy=False):
        for key, distribution in trial.distributions.items():
            entry = search.entries.get(key)
            if entry is None or entry.distribution != distribution:
                now = "is no longer searched" if entry is None else f"is now {entry.distribution}"
                raise ConfigError(
                    f"study {study.study_name} was run with another search space: tune.space.{key} was "
                    f"{distribution} in trial {trial.number} and {now}: {new}"
                )


def retry_dead_trials(study: optuna.Study) -> None:
    """A RUNNING trial whose process, on this machine, is gone is failed and queued again. One that names no
    process at all was killed between its creation and its first line (a live process names itself within
    milliseconds): once it is older than CLAIM_SECONDS it is failed too (it had chosen no values to retry)."""
    host = socket.gethostname()
    unclaimed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        machine, _, pid = trial.user_attrs.get("process", "").partition(":")
        if not machine:
            unclaimed.append(trial.number)
        elif machine == host and pid.isdigit() and not process_exists(int(pid)):
            study.tell(trial.number, state=TrialState.FAIL)
            retry(study, trial)
    if unclaimed:
        time.sleep(CLAIM_SECONDS)
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if trial.number in unclaimed and "process" not in trial.user_attrs:
                study.tell(trial.number, state=TrialState.FAIL)


def retry(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Queue a failed trial's values to run again: those it had chosen (one stopped while choosing has the rest
    drawn anew; one stopped before it chose any has none: nothing to do)."""
    if trial.params:
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists all the same
        pass
    return True
