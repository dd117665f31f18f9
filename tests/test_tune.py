"""`mnist-ann tune`: studies on the synthetic data, as users run them: in one process, in two at once, killed
and started again; bad search spaces refused before any trial."""

import contextlib
import os
import signal
import sqlite3
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from tests.helpers.commands import CONFIG, REPO, finish, main_error, run_main, start_cli
from tests.helpers.tensorboard import events
from tests.helpers.wait import wait_for

TUNE_CONFIG = str(REPO / "configs" / "tune.yaml")


def study_config(tmp_path, n_trials: int = 3, seed: int = 0, epochs: int = 2, **space) -> str:
    """A small study: 2 epochs a trial, a space of the given keys (default: learning rate and hidden sizes)."""
    space = space or {
        "model.optimizer.init_args.lr": {"low": 0.01, "high": 0.1, "log": True},
        "model.hidden_sizes": {"choices": [[32], [64, 32]]},
    }
    section = {"tune": {"n_trials": n_trials, "epochs": epochs, "startup_trials": 2, "seed": seed, "space": space}}
    (path := tmp_path / "search.yaml").write_text(yaml.safe_dump(section))
    return str(path)


def run_tune(monkeypatch, study: str, data_dir, *options: str) -> None:
    """`mnist-ann tune` over the recipe and `study`, on the small data, in this process."""
    run_main(monkeypatch, "tune", "--config", CONFIG, "--config", study, *data(data_dir), *options)


def data(data_dir) -> list[str]:
    return ["--data.data_dir", str(data_dir), "--data.val_size", "200", "--trainer.log_every_n_steps", "5"]


def load(tmp_path, name: str = "tune") -> optuna.Study:
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "tune" / f"{name}.journal")))
    return optuna.load_study(study_name=name, storage=storage)


def test_a_study_runs_its_trials_and_writes_a_best_config_that_fit_runs(synthetic_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_tune(monkeypatch, study_config(tmp_path), synthetic_data_dir)
    study = load(tmp_path)
    trials = study.get_trials()
    assert [trial.state for trial in trials] == [TrialState.COMPLETE] * 3
    assert study.metric_names == ["val/acc_best"]  # named, for optuna-dashboard
    assert [Path(trial.user_attrs["run"]).name for trial in trials] == ["trial_0000", "trial_0001", "trial_0002"]
    assert sorted(path.name for path in (tmp_path / "tune" / "tune").iterdir() if path.is_dir()) == [
        "trial_0000",
        "trial_0001",
        "trial_0002",
    ]
    best = yaml.safe_load((tmp_path / "tune" / "tune" / "best.yaml").read_text())
    assert set(best["model"]) == {"optimizer", "hidden_sizes"} and best["model"]["optimizer"]["init_args"]["lr"] >= 0.01

    run_main(
        monkeypatch,
        "fit",
        "--config",
        CONFIG,
        "--config",
        "tune/tune/best.yaml",
        *data(synthetic_data_dir),
        "--trainer.max_epochs",
        "1",
    )
    saved = yaml.safe_load((tmp_path / "lightning_logs" / "version_0" / "config.yaml").read_text())
    assert saved["model"]["hidden_sizes"] == best["model"]["hidden_sizes"]


def test_a_hopeless_trial_is_pruned_and_each_trials_hparams_row_holds_its_values_and_state(
    synthetic_data_dir, tmp_path, monkeypatch
):
    from tests.helpers.tensorboard import session_hparams

    monkeypatch.chdir(tmp_path)
    space = {
        "model.optimizer.init_args.lr": {"choices": [0.05, 1.0e-7]},  # 1e-7 learns nothing: pruned, with seed 2
        "model.hidden_sizes": {"choices": [[32], [64, 32]]},
        "trainer.gradient_clip_val": {"choices": [0.5, 1.0]},  # no column of every run's row
    }
    run_tune(monkeypatch, study_config(tmp_path, 8, seed=2, epochs=3, **space), synthetic_data_dir)
    trials = load(tmp_path).get_trials()
    pruned = [trial for trial in trials if trial.state == TrialState.PRUNED]
    assert pruned and all(trial.params["model.optimizer.init_args.lr"] == 1.0e-7 for trial in pruned)
    assert all(len(trial.intermediate_values) == 2 for trial in pruned)  # stopped after 2 of its 3 epochs
    for trial in trials:
        row = session_hparams(tmp_path / "tune" / "tune" / f"trial_{trial.number:04d}")
        assert row["optimizer.lr"] == pytest.approx(trial.params["model.optimizer.init_args.lr"])
        assert row["hidden_sizes"] == str(yaml.safe_load(trial.params["model.hidden_sizes"]))
        assert row["gradient_clip_val"] == trial.params["trainer.gradient_clip_val"]
        assert row["state"] == trial.state.name.lower()


def test_a_trial_that_diverges_is_recorded_as_pruned_and_the_study_goes_on(synthetic_data_dir, tmp_path, monkeypatch):
    space = {"model.optimizer.init_args.lr": {"choices": [0.05, 1000.0]}}
    monkeypatch.chdir(tmp_path)
    run_tune(monkeypatch, study_config(tmp_path, 4, seed=0, **space), synthetic_data_dir)
    trials = load(tmp_path).get_trials()
    assert len(trials) == 4 and {trial.state for trial in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    diverged = [trial for trial in trials if trial.params["model.optimizer.init_args.lr"] == 1000.0]
    assert diverged and all(trial.state == TrialState.PRUNED for trial in diverged)
    assert all(trial.user_attrs["diverged"].startswith("training diverged by step") for trial in diverged)


@pytest.mark.slow
def test_two_processes_share_one_study_and_finish_it_together(synthetic_data_dir, tmp_path):
    args = ["tune", "--config", CONFIG, "--config", study_config(tmp_path, n_trials=6), *data(synthetic_data_dir)]
    first = start_cli(*args, cwd=tmp_path)
    # The first is held in its first trial until the second has taken one of its own: on a busy machine the
    # first could otherwise finish the study while the second is still starting. Held once the trial names its
    # process: a running trial that names none is one whose process died at its start, and the second fails it.
    wait_for_trials(tmp_path, first, lambda trials: any(running_in(first, trial) for trial in trials))
    pause_between_journal_writes(first, tmp_path / "tune" / "tune.journal")
    try:
        second = start_cli(*args, cwd=tmp_path)
        wait_for_trials(tmp_path, second, lambda trials: any(ran_in(second, trial) for trial in trials))
    finally:
        os.killpg(first.pid, signal.SIGCONT)
    results = [finish(process, 600) for process in (first, second)]
    assert [result.returncode for result in results] == [0, 0], results[0].stderr[-2000:]
    trials = load(tmp_path).get_trials()
    assert len(trials) == 6 and {trial.state for trial in trials} == {TrialState.COMPLETE}
    assert sorted(trial.number for trial in trials) == list(range(6))  # no trial twice
    assert all(any(ran_in(process, trial) for trial in trials) for process in (first, second))
    runs = sorted(path.name for path in (tmp_path / "tune" / "tune").iterdir() if path.is_dir())
    assert runs == [f"trial_{number:04d}" for number in range(6)]


def ran_again(trials, failed) -> list:
    """The trial that ran a stopped trial's values again: those it had chosen (nearly always all; killed between
    two, the rest drawn anew); none when it was stopped while being set up, before it chose any."""
    retried = [trial for trial in trials if trial.user_attrs.get("retry_of") == failed.number]
    if failed.params:
        assert len(retried) == 1 and failed.params.items() <= retried[0].params.items()
    else:
        assert retried == []
    return retried


def ran_in(process, trial) -> bool:
    return trial.user_attrs.get("process", "").endswith(f":{process.pid}")


def running_in(process, trial) -> bool:
    return trial.state == TrialState.RUNNING and ran_in(process, trial)


def wait_for_trials(tmp_path, process, reached) -> None:
    """Until the study's trials satisfy `reached`; the test fails if `process` ends before."""

    if not wait_for(lambda: reached(trials_so_far(tmp_path)), timeout=300, every=0.1, while_running=process):
        pytest.fail(f"the study did not get there; {' '.join(process.args)} exited {process.returncode}")


def trials_so_far(tmp_path) -> list:
    """The study's trials; none before its journal holds the study (the file is created first, then written)."""
    if not (tmp_path / "tune" / "tune.journal").is_file():
        return []
    try:
        return load(tmp_path).get_trials()
    except KeyError:  # optuna's "Record does not exist": the study's first record is not written yet
        return []


def pause_between_journal_writes(process, journal: Path) -> None:
    """SIGSTOP `process`, never while it holds the journal's lock (the other would wait for it in vain)."""

    def paused_without_the_lock() -> bool:
        os.killpg(process.pid, signal.SIGSTOP)
        stat = Path(f"/proc/{process.pid}/stat")
        wait_for(lambda: stat.read_text().rsplit(")", 1)[1].split()[0] == "T", every=0.001)  # stopped for certain
        if not Path(f"{journal}.lock").exists():
            return True
        os.killpg(process.pid, signal.SIGCONT)
        return False

    wait_for(paused_without_the_lock, every=0.01)


@pytest.mark.slow
@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGTERM"])
def test_a_study_stopped_mid_trial_goes_on_keeping_every_finished_trial(
    synthetic_data_dir, tmp_path, monkeypatch, signal_name
):
    args = ["tune", "--config", CONFIG, "--config", study_config(tmp_path, n_trials=5), *data(synthetic_data_dir)]
    process = start_cli(*args, cwd=tmp_path)

    def third_running(trials) -> bool:
        states = [trial.state for trial in trials]
        return states.count(TrialState.COMPLETE) >= 2 and TrialState.RUNNING in states

    wait_for_trials(tmp_path, process, third_running)  # two trials finished and a third runs
    os.killpg(process.pid, signal.Signals[signal_name])
    stopped = finish(process)
    before = {trial.number: trial.value for trial in load(tmp_path).get_trials(states=(TrialState.COMPLETE,))}
    if signal_name == "SIGTERM":
        assert stopped.returncode == 143
        assert "which will run again; the 2 finished trials are kept. Go on with: mnist-ann tune" in stopped.stderr
    else:
        assert stopped.returncode == -signal.SIGKILL

    monkeypatch.chdir(tmp_path)
    run_main(monkeypatch, *args)  # started again, the same way
    trials = load(tmp_path).get_trials()
    after = {trial.number: trial.value for trial in trials if trial.state == TrialState.COMPLETE}
    finished = [trial for trial in trials if trial.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert before.items() <= after.items() and len(finished) == 5  # kept as they were, and the study finished
    [failed] = [trial for trial in trials if trial.state == TrialState.FAIL]  # the one running when it stopped
    if (partial := tmp_path / "tune" / "tune" / f"trial_{failed.number:04d}").is_dir():  # no row in HParams
        assert "_hparams_/session_start_info" not in events(partial).summary_metadata
    assert all(trial in finished for trial in ran_again(trials, failed))


@pytest.mark.slow
def test_a_journal_lock_left_by_a_killed_process_gives_way(synthetic_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("mnist_ann.tune.storage.LOCK_GRACE_SECONDS", 3)  # Optuna's shortest; the study waits it out
    args = ["tune", "--config", CONFIG, "--config", study_config(tmp_path, n_trials=1), *data(synthetic_data_dir)]
    run_main(monkeypatch, *args)
    journal = (tmp_path / "tune" / "tune.journal").resolve()
    os.symlink(journal, f"{journal}.lock")  # Optuna's lock, as a process killed while writing leaves it
    run_main(monkeypatch, *args, "--n_trials", "2")
    assert len(load(tmp_path).get_trials(states=(TrialState.COMPLETE,))) == 2


@pytest.mark.parametrize(
    ("space", "message"),
    [
        (
            {"model.optimizer.init_args.lr": {"low": 0.1, "high": 0.01}},
            "an empty range: low 0.1 is not below high 0.01",
        ),
        ({"model.optimizer.init_args.lr": {"low": "small", "high": 0.1}}, "low must be a number, not 'small'"),
        ({"model.hidden_sizes": {"choices": []}}, "choices must be a non-empty list"),
        ({"model.hiden_sizes": {"choices": [[32]]}}, "tune.space.model.hiden_sizes: Group 'model' does not accept"),
        ({"model.optimizer.init_args.betas": {"choices": [[0.9, 0.99]]}}, "tune.space.model.optimizer.init_args.betas"),
        # a bad value that is not the first choice, or at the far end of a range: found before any trial too
        ({"model.hidden_sizes": {"choices": [[128, 64], [-5]]}}, "tune.space.model.hidden_sizes: "),
        ({"data.batch_size": {"low": 0, "high": 64}}, "(checking the value 0)"),
    ],
)
def test_a_bad_search_space_entry_is_refused_by_name_before_any_trial(
    synthetic_data_dir, tmp_path, monkeypatch, capsys, space, message
):
    monkeypatch.chdir(tmp_path)
    args = ["tune", "--config", CONFIG, "--config", study_config(tmp_path, **space), *data(synthetic_data_dir)]
    with pytest.raises(SystemExit) as exit_:
        run_main(monkeypatch, *args)
    assert message in str(exit_.value.code) + capsys.readouterr().err
    assert not (tmp_path / "tune").exists()  # nothing ran, nothing was written


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--n_trials", "0"], 'Parser key "tune.n_trials":\n  Not of type PositiveInt'),
        (["--tune.epochs", "two"], 'Parser key "tune.epochs":\n  Not of type PositiveInt'),
        (["--tune.pruner", "best"], 'Parser key "tune.pruner":\n  Expected a typing.Literal'),
        (["--threads", "0"], "error: --threads: at least 1, not 0"),
    ],
)
def test_a_bad_study_setting_gets_the_parsers_error_naming_it(
    synthetic_data_dir, tmp_path, monkeypatch, capsys, option, message
):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        run_main(monkeypatch, "tune", "--config", CONFIG, "--config", study_config(tmp_path), *option)
    assert message in str(exit_.value.code) + capsys.readouterr().err
    assert not (tmp_path / "tune").exists()


def test_tune_without_a_search_space_says_which_config_to_add(synthetic_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    message = main_error(monkeypatch, "tune", "--config", CONFIG, *data(synthetic_data_dir))
    assert message == "error: tune: the configs name no search space (`tune: space:`); add configs/tune.yaml (--config)"


def test_a_storage_that_cannot_be_opened_is_refused_by_name(synthetic_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["tune", "--config", CONFIG, "--config", study_config(tmp_path), *data(synthetic_data_dir)]
    message = main_error(monkeypatch, *args, "--storage", "postgresql://127.0.0.1:9/nowhere")
    assert message.startswith("error: --storage postgresql://127.0.0.1:9/nowhere: cannot open it")


def test_the_shipped_search_space_is_valid(synthetic_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # One trial of one epoch draws and applies every entry of the space as a study of any length does.
    run_tune(monkeypatch, TUNE_CONFIG, synthetic_data_dir, "--n_trials", "1", "--tune.epochs", "1")
    assert len(load(tmp_path).get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) == 1


def test_trials_over_a_recipe_with_weight_averaging_validate_the_averaged_weights(
    synthetic_data_dir, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    space = {"model.dropout": {"choices": [0.1]}, "model.batch_norm": {"choices": [False]}}
    study = study_config(tmp_path, 1, epochs=1, **space)
    averaged = str(REPO / "configs" / "best-augmented.yaml")  # weight averaging and batch normalization
    run_main(
        monkeypatch, "tune", "--config", CONFIG, "--config", averaged, "--config", study, *data(synthetic_data_dir)
    )
    trial = yaml.safe_load((tmp_path / "tune" / "tune" / "trial_0000" / "config.yaml").read_text())
    kept = [callback["class_path"].rsplit(".", 1)[1] for callback in trial["trainer"]["callbacks"]]
    assert kept == ["TensorBoardMonitor", "EMAWeightAveraging"] and trial["model"]["dropout"] == 0.1
    assert trial["model"]["batch_norm"] is False
    assert trial["threads"] == 1  # tune's --threads, as each trial's fit setting


def test_an_integer_range_on_a_log_scale_draws_integers(synthetic_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    space = {"data.batch_size": {"low": 32, "high": 256, "log": True}}
    run_tune(monkeypatch, study_config(tmp_path, 2, epochs=1, **space), synthetic_data_dir)
    sizes = [trial.params["data.batch_size"] for trial in load(tmp_path).get_trials(states=(TrialState.COMPLETE,))]
    assert len(sizes) == 2 and all(isinstance(size, int) and 32 <= size <= 256 for size in sizes)


def test_a_study_goes_on_only_with_its_own_space_and_settings(synthetic_data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["tune", "--config", CONFIG, *data(synthetic_data_dir)]
    run_main(monkeypatch, *args, "--config", study_config(tmp_path, 1, epochs=1))
    hint = f"train it with: mnist-ann fit --config {CONFIG} --config tune/tune/best.yaml"
    assert hint in capsys.readouterr().out  # the study's own configs, less the search's

    other_space = {"model.hidden_sizes": {"choices": [[16], [32]]}}
    message = main_error(monkeypatch, *args, "--config", study_config(tmp_path, 2, epochs=1, **other_space))
    assert message.startswith("error: study tune was run with another search space: tune.space.model.hidden_sizes")
    assert message.endswith("start a new study with --study_name NAME, or delete tune's storage")

    message = main_error(monkeypatch, *args, "--config", study_config(tmp_path, 2, epochs=3))
    assert message.startswith("error: study tune was run with tune.epochs 1 (now 3): start a new study")
    run_main(monkeypatch, *args, "--config", study_config(tmp_path, 2, epochs=1))  # the same settings: it goes on
    assert len(load(tmp_path).get_trials(states=(TrialState.COMPLETE,))) == 2


@pytest.mark.slow
def test_a_database_study_killed_mid_trial_is_finished_by_the_same_command(synthetic_data_dir, tmp_path, monkeypatch):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    args = ["tune", "--config", CONFIG, "--config", study_config(tmp_path, n_trials=3), *data(synthetic_data_dir)]
    args += ["--storage", storage]
    process = start_cli(*args, cwd=tmp_path)

    def second_trial_running() -> bool:
        if not (tmp_path / "study.db").is_file():  # (connecting would create it)
            return False
        with contextlib.suppress(sqlite3.Error), contextlib.closing(sqlite3.connect(tmp_path / "study.db")) as db:
            states = [state for (state,) in db.execute("SELECT state FROM trials")]
            return states.count("COMPLETE") >= 1 and "RUNNING" in states and process.poll() is None
        return False

    wait_for(second_trial_running, timeout=300)  # one trial has finished and the second runs
    os.killpg(process.pid, signal.SIGKILL)
    finish(process)

    monkeypatch.chdir(tmp_path)
    run_main(monkeypatch, *args)  # at once: the dead trial's process is gone, and it runs again
    trials = optuna.load_study(study_name="tune", storage=storage).get_trials()
    states = [trial.state for trial in trials]
    assert states.count(TrialState.COMPLETE) == 3 and TrialState.RUNNING not in states
    [failed] = [trial for trial in trials if trial.state == TrialState.FAIL]
    ran_again(trials, failed)


def test_a_trial_whose_config_fails_anyway_is_recorded_failed_and_the_study_goes_on(
    synthetic_data_dir, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    space = {"data.val_size": {"choices": [200, 5000]}}  # the parser takes 5000; the data (1,200 images) cannot
    run_tune(monkeypatch, study_config(tmp_path, 4, epochs=1, **space), synthetic_data_dir)
    trials = load(tmp_path).get_trials()
    failed = [trial for trial in trials if trial.state == TrialState.FAIL]
    assert failed and all(trial.params == {"data.val_size": 5000} for trial in failed)
    assert [trial.user_attrs["error"] for trial in failed] == [
        "data.val_size=5000 leaves no training images out of 1200"
    ] * len(failed)
    assert any(trial.state == TrialState.COMPLETE for trial in trials)
    assert f"trial {failed[0].number} failed: data.val_size=5000 leaves no training images" in capsys.readouterr().out
