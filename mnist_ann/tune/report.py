"""The end of a study: the best trials as a table, and the best one's values as a config for `fit`."""

import shlex
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import TrialState

from mnist_ann.errors import ConfigError
from mnist_ann.tune.space import METRIC, Plan, decode, set_dotted


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


def report(study: optuna.Study, study_plan: Plan, best_file: Path) -> None:
    """The best trials as a table, and the best one's values as a config that `fit` layers over the others;
    written by the last process of the study to finish."""
    complete = sorted(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.value, reverse=True)
    pruned = study.get_trials(states=(TrialState.PRUNED,))
    failed = [trial for trial in study.get_trials(states=(TrialState.FAIL,)) if "error" in trial.user_attrs]
    diverged = sum("diverged" in trial.user_attrs for trial in pruned)
    if not complete:
        raise ConfigError(f"study {study.study_name}: no trial completed ({len(pruned)} pruned)")
    if running := study.get_trials(states=(TrialState.RUNNING,)):
        print(
            f"\n{len(complete)} trials completed; {len(running)} still running in other processes: the last of "
            f"them to finish writes {best_file}."
        )
        return
    print(f"\n{len(complete)} trials completed, {len(pruned)} pruned ({diverged} of them diverged).")
    for trial in failed:
        print(f"trial {trial.number} failed: {trial.user_attrs['error']}")
    epochs = study_plan.search.epochs
    print(f"The best, by {METRIC} after {epochs} epoch{'s' if epochs > 1 else ''}:")
    print(f"{'trial':>6} {METRIC:>8}  values")
    for trial in complete[:5]:
        print(f"{trial.number:>6} {trial.value:>8.4f}  {described(trial.params)}")
    best: dict[str, Any] = {}
    for key, value in complete[0].params.items():
        set_dotted(best, key, decode(value))
    command = ["mnist-ann", "fit"]
    for config in [*study.user_attrs.get("configs", study_plan.configs), str(best_file)]:
        if not holds_a_search(config):
            command += ["--config", config]
    command = shlex.join(command)
    best_file.parent.mkdir(parents=True, exist_ok=True)
    header = f"# The best of study {study.study_name}: trial {complete[0].number}, {METRIC} {complete[0].value:.4f}.\n"
    best_file.write_text(f"{header}#   {command}\n" + yaml.safe_dump(best, sort_keys=False))
    print(f"\nwrote {best_file} (the study's final best); train it with: {command}")


def holds_a_search(config: str) -> bool:
    """Whether a config file holds a `tune:` section (configs/tune.yaml): a search's config, whose other settings
    are the search's own (configs/tune.yaml's larger validation split), which the best trial's `fit` leaves out."""
    try:
        content = yaml.safe_load(Path(config).read_text())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(content, dict) and "tune" in content
