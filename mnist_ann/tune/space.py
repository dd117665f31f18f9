"""The search space of `mnist-ann tune`, as the configs' `tune:` section states it, and the fit config of a trial.

tune:
  n_trials: 40          # trials finished (complete or pruned) that the study stops at
  epochs: 5             # each trial's fit
  pruner: median        # median, hyperband or none
  startup_trials: 5     # the median pruner judges once this many trials have finished
  seed: null            # the sampler's; unset: a different search each time
  space:                # keys: options of `mnist-ann fit`
    model.optimizer.init_args.lr: {low: 0.0001, high: 0.3, log: true}
    model.hidden_sizes: {choices: [[128, 64], [800]]}
    model.optimizer.init_args.momentum: {low: 0.8, high: 0.99, when: {model.optimizer.class_path: torch.optim.SGD}}

Each entry is one of Optuna's own distributions (categorical, int, float), so that a study can tell
whether the space it was run with is still the configs'.
"""

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from jsonargparse import ArgumentError
from jsonargparse.typing import NonNegativeInt, PositiveInt
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from mnist_ann.errors import ConfigError

METRIC = "val/acc"  # what a trial is scored by: its best, on the validation split, never the test images


class Entry:
    """One searched option: `choices: [...]`, or `low`/`high` (`log: true` for a log scale, `step`); with
    `when: {key: value}`, only in trials where another searched option has that value. Integer bounds make
    an integer range, on a log scale too."""

    def __init__(self, key: str, spec: Any) -> None:
        where = f"tune.space.{key}"
        if not isinstance(spec, dict) or not ({"choices"} <= spec.keys() or {"low", "high"} <= spec.keys()):
            raise ConfigError(f"{where}: give `choices: [...]` or `low:` and `high:`, not {spec!r}")
        self.key, self.when = key, spec.get("when") or {}
        if "choices" in spec:
            choices = spec["choices"]
            if not isinstance(choices, list) or not choices:
                raise ConfigError(f"{where}: choices must be a non-empty list, not {choices!r}")
            # Optuna takes numbers and strings as choices: a list goes as JSON text
            self.distribution: BaseDistribution = CategoricalDistribution([encode(choice) for choice in choices])
            return
        low, high, log, step = spec["low"], spec["high"], bool(spec.get("log")), spec.get("step")
        for bound, value in (("low", low), ("high", high)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{where}: {bound} must be a number, not {value!r}")
        if not low < high:
            raise ConfigError(f"{where}: an empty range: low {low} is not below high {high}")
        if log and low <= 0:
            raise ConfigError(f"{where}: a log scale needs low above 0, not {low}")
        if log and step is not None:
            raise ConfigError(f"{where}: a log scale takes no step")
        if isinstance(low, int) and isinstance(high, int) and (step is None or isinstance(step, int)):
            self.distribution = IntDistribution(low, high, log=log, step=step or 1)
        else:
            self.distribution = FloatDistribution(low, high, log=log, step=step)

    def applies(self, chosen: dict[str, Any]) -> bool:
        """Whether this entry is searched, given the values already chosen (as the trial's params hold them)."""
        return all(key in chosen and decode(chosen[key]) == value for key, value in self.when.items())

    def suggest(self, trial) -> Any:
        """This entry's value for an Optuna trial."""
        if isinstance(self.distribution, CategoricalDistribution):
            return decode(trial.suggest_categorical(self.key, self.distribution.choices))
        number = self.distribution
        if isinstance(number, IntDistribution):
            return trial.suggest_int(self.key, number.low, number.high, step=number.step, log=number.log)
        return trial.suggest_float(self.key, number.low, number.high, step=number.step, log=number.log)

    def candidates(self) -> list[Any]:
        """The values to check before any trial: every choice, or both ends of the range."""
        if isinstance(self.distribution, CategoricalDistribution):
            return [decode(choice) for choice in self.distribution.choices]
        return [self.distribution.low, self.distribution.high]

    def with_others(self, value: Any, space: dict[str, "Entry"]) -> dict[str, Any]:
        """This entry's value, with its conditions and a value of every other entry that applies with them:
        a trial's values in which to check it."""
        values = {**self.when, self.key: value}
        for key, entry in space.items():
            if key not in values and entry.applies(values):
                values[key] = entry.candidates()[0]
        return values


def encode(choice: Any) -> Any:
    return choice if choice is None or isinstance(choice, (bool, int, float, str)) else json.dumps(choice)


def decode(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) and value[:1] in "[{" else value


@dataclass
class Search:
    """mnist-ann tune's search (configs/tune.yaml); the other commands ignore it.

    Args:
        space: each searched option of `mnist-ann fit` by its key, with `choices: [...]` or `low:`/`high:`
        n_trials: trials finished (complete or pruned) that the study stops at
        epochs: each trial's fit
        pruner: median, hyperband or none
        startup_trials: the median pruner judges once this many trials have finished
        seed: the sampler's; unset: a different search each time
    """

    space: dict[str, dict] = field(default_factory=dict)
    n_trials: PositiveInt = 20
    epochs: PositiveInt = 5
    pruner: Literal["median", "hyperband", "none"] = "median"
    startup_trials: NonNegativeInt = 5
    seed: int | None = None

    def __post_init__(self) -> None:
        # Class paths first: choosing a class resets its arguments, which later entries then set.
        keys = sorted(self.space, key=lambda key: not key.endswith("class_path"))
        self.entries = {key: Entry(key, self.space[key]) for key in keys}

    def values(self, trial) -> dict[str, Any]:
        """A trial's values: each entry that applies, given those chosen before it."""
        return {key: entry.suggest(trial) for key, entry in self.entries.items() if entry.applies(trial.params)}


@dataclass
class Plan:
    """What a study runs: the base fit config, the search, and where the trials' runs go."""

    config: dict
    search: Search
    runs: Path
    configs: list[str]  # the --config files given, for the "train it with" hint


def trial_config(config: dict, search: Search, values: dict[str, Any], folder: Path, number: int) -> dict:
    """The fit config of one trial: the base config with the trial's values, trained for the study's epochs
    on one device in its own run folder, without checkpoints, progress bar or pictures beyond its scalars
    (weight averaging, which changes what is validated, stays)."""
    trial = copy.deepcopy(config)
    trainer = trial["trainer"]
    if not isinstance(trainer.get("logger"), dict) or "TensorBoardLogger" not in trainer["logger"]["class_path"]:
        raise ConfigError(
            "tune: each trial is a TensorBoard run: configure trainer.logger as configs/default.yaml does"
        )
    trainer.update(
        max_epochs=int(search.epochs),
        devices=1,
        num_nodes=1,
        strategy="auto",
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer["logger"]["init_args"].update(save_dir=str(folder.parent), name=folder.name, version=f"trial_{number:04d}")
    callbacks = trainer.get("callbacks") or []
    monitors = [c for c in callbacks if c["class_path"].endswith("TensorBoardMonitor")]
    for monitor in monitors:
        monitor["init_args"].update(weights=False, projector=False, attributions=False, hparams_row=False)
    trainer["callbacks"] = monitors + [c for c in callbacks if c["class_path"].endswith("WeightAveraging")]
    for key, value in values.items():
        node = set_dotted(trial, key, copy.deepcopy(value))  # (the parser converts what it is given in place)
        if key.endswith("class_path"):
            node["init_args"] = {}
    return trial


def short_name(key: str) -> str:
    """A searched key as the HParams tab names it: `optimizer.lr` for `model.optimizer.init_args.lr`."""
    parts = [part for part in key.split(".") if part not in ("init_args", "class_path")]
    return ".".join(parts[1:] if parts[0] in ("model", "data", "trainer") and len(parts) > 1 else parts)


def set_dotted(tree: dict, key: str, value: Any) -> dict:
    """tree["model"]["optimizer"]["class_path"] = value for key `model.optimizer.class_path`; the innermost dict."""
    *parents, name = key.split(".")
    for parent in parents:
        tree = tree.setdefault(parent, {})
    tree[name] = value
    return tree


def check_space(parser, config: dict, search: Search) -> None:
    """Every choice and both ends of every range, as the command line's own parser takes them: before any trial."""
    parser.exit_on_error = False  # its error as an exception, to name the entry
    try:
        for key, entry in search.entries.items():
            for value in entry.candidates():
                values = entry.with_others(value, search.entries)
                try:
                    parser.parse_object(trial_config(config, search, values, Path("tune/check"), 0))
                except ArgumentError as error:
                    reason = " ".join(str(error).split())
                    raise ConfigError(f"tune.space.{key}: {reason} (checking the value {value!r})") from None
    finally:
        parser.exit_on_error = True
