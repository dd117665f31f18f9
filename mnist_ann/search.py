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
"""

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from jsonargparse import ArgumentError
from jsonargparse.typing import NonNegativeInt, PositiveInt

from mnist_ann.errors import ConfigError

if TYPE_CHECKING:  # optuna is imported by `mnist-ann tune` alone: the other commands start without it
    import optuna


class Entry:
    """One searched option: `choices: [...]`, or `low`/`high` (`log: true` for a log scale, `step`); with
    `when: {key: value}`, only in trials where another searched option has that value."""

    def __init__(self, key: str, spec: Any) -> None:
        where = f"tune.space.{key}"
        if not isinstance(spec, dict) or not ({"choices"} <= spec.keys() or {"low", "high"} <= spec.keys()):
            raise ConfigError(f"{where}: give `choices: [...]` or `low:` and `high:`, not {spec!r}")
        self.key, self.when = key, spec.get("when") or {}
        self.choices = spec.get("choices")
        if self.choices is not None:
            if not isinstance(self.choices, list) or not self.choices:
                raise ConfigError(f"{where}: choices must be a non-empty list, not {self.choices!r}")
            return
        self.low, self.high, self.log, self.step = spec["low"], spec["high"], bool(spec.get("log")), spec.get("step")
        for bound in ("low", "high"):
            value = spec[bound]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{where}: {bound} must be a number, not {value!r}")
        if not self.low < self.high:
            raise ConfigError(f"{where}: an empty range: low {self.low} is not below high {self.high}")
        if self.log and self.low <= 0:
            raise ConfigError(f"{where}: a log scale needs low above 0, not {self.low}")
        self.integer = isinstance(self.low, int) and isinstance(self.high, int) and not self.log

    def applies(self, chosen: dict[str, Any]) -> bool:
        """Whether this entry is searched, given the values already chosen (as the trial's params hold them)."""
        return all(key in chosen and decode(chosen[key]) == value for key, value in self.when.items())

    def suggest(self, trial: "optuna.Trial", key: str) -> Any:
        if self.choices is not None:  # Optuna takes numbers and strings as choices: a list goes as JSON text
            return decode(trial.suggest_categorical(key, [encode(choice) for choice in self.choices]))
        if self.integer:
            return trial.suggest_int(key, self.low, self.high, step=self.step or 1)
        return trial.suggest_float(key, self.low, self.high, log=self.log, step=self.step)

    def sample(self, space: dict[str, "Entry"]) -> dict[str, Any]:
        """Values of the space under which this entry applies (its conditions, then the first choice or the
        low bound of every entry that applies with them): a trial's config in which to check its key."""
        values = dict(self.when)
        for key, entry in space.items():
            if key not in values and entry.applies(values):
                values[key] = entry.choices[0] if entry.choices else entry.low
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


def trial_config(config: dict, search: Search, values: dict[str, Any], folder: Path, number: int) -> dict:
    """The fit config of one trial: the base config with the trial's values, trained for the study's epochs
    on one device in its own run folder, without checkpoints, progress bar or pictures beyond its scalars."""
    trial = copy.deepcopy(config)
    trainer = trial["trainer"]
    if not isinstance(trainer.get("logger"), dict) or "TensorBoardLogger" not in trainer["logger"]["class_path"]:
        raise ConfigError(
            "tune: each trial is a TensorBoard run: configure trainer.logger as configs/default.yaml does"
        )
    trainer.update(max_epochs=int(search.epochs), devices=1, num_nodes=1, strategy="auto", enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer["logger"]["init_args"].update(save_dir=str(folder.parent), name=folder.name, version=f"trial_{number:04d}")
    monitors = [c for c in trainer.get("callbacks") or [] if c["class_path"].endswith("TensorBoardMonitor")]
    for monitor in monitors:
        monitor["init_args"].update(weights=False, projector=False, attributions=False)
    trainer["callbacks"] = monitors
    for key, value in values.items():
        node = set_dotted(trial, key, copy.deepcopy(value))  # (the parser converts what it is given in place)
        if key.endswith("class_path"):
            node["init_args"] = {}
    return trial


def set_dotted(tree: dict, key: str, value: Any) -> dict:
    """tree["model"]["optimizer"]["class_path"] = value for key `model.optimizer.class_path`; the innermost dict."""
    *parents, name = key.split(".")
    for parent in parents:
        tree = tree.setdefault(parent, {})
    tree[name] = value
    return tree


def check_keys(parser, config: dict, search: "Search") -> None:
    """Every entry's key, with a value of its range, as the command line's own parser takes it: before any trial."""
    parser.exit_on_error = False  # its error as an exception, to name the entry
    try:
        for key, entry in search.entries.items():
            try:
                parser.parse_object(trial_config(config, search, entry.sample(search.entries), Path("tune/check"), 0))
            except ArgumentError as error:
                raise ConfigError(f"tune.space.{key}: {' '.join(str(error).split())}") from None
    finally:
        parser.exit_on_error = True
