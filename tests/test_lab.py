"""The page's lab: runs started, watched, stopped and tested from `mnist-ann serve`, and the runs it lists.

The callback and the settings are tested in this process; the service as a user starts it, on the synthetic
data, with real runs (`slow`); the page in headless Chromium.
"""

import json
import re
import shutil
import signal
import urllib.request
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image
from pydantic import ValidationError

from mnist_ann.data import MNISTDataModule
from mnist_ann.idx import load_split
from mnist_ann.live import EVENTS, WEIGHTS, LiveReport
from mnist_ann.model import MNISTClassifier
from mnist_ann.serve.jobs import Lab
from mnist_ann.serve.middleware import one_message
from mnist_ann.serve.runs import CACHED_MODELS, RunModels, list_runs
from mnist_ann.serve.settings import LIMITS, PRESETS, FitSettings, preset
from tests.helpers.browser import SCREENSHOT_DIR, STROKES, Page
from tests.helpers.commands import CONFIG, REPO, run_main
from tests.helpers.service import get, lab_job, lab_server, post, stop_server, wait_until_group_gone
from tests.helpers.synthetic import png_base64
from tests.helpers.wait import wait_for


def live_events(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / EVENTS).read_text().splitlines()]


def test_live_report_writes_the_curves_the_weights_and_a_model_that_answers(synthetic_data_dir, tmp_path):
    L.seed_everything(0)
    trainer = L.Trainer(
        max_epochs=2,
        logger=TensorBoardLogger(tmp_path, name="lightning_logs"),
        callbacks=[LiveReport(5, loss_every_seconds=0, weights_every_n_steps=10, weights_every_seconds=0)],
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(MNISTClassifier(hidden_sizes=[32]), MNISTDataModule(synthetic_data_dir, val_size=200))
    run = tmp_path / "lightning_logs" / "version_0"
    events = live_events(run)
    kinds = [event["event"] for event in events]
    assert kinds[:2] == ["start", "weights"] and kinds[-1] == "end" and events[-1]["reason"] == "finished"
    steps = trainer.global_step  # 16 a epoch
    assert [event["step"] for event in events if event["event"] == "train"] == list(range(5, steps + 1, 5))
    weights = [event["step"] for event in events if event["event"] == "weights"]
    assert weights == [0, *range(10, steps + 1, 10), steps]
    validations = [event for event in events if event["event"] == "val"]
    assert [event["epoch"] for event in validations] == [0, 1] and 0 <= validations[-1]["acc"] <= 1
    assert all(event["image"].startswith("data:image/png;base64,") for event in events if event["event"] == "weights")

    model, about = RunModels(tmp_path / "lightning_logs", "cpu").named("version_0/live")
    assert about["global_step"] == steps and about["hidden_sizes"] == [32]
    for name, tensor in trainer.lightning_module.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name
    assert (run / WEIGHTS).is_file() and not list(run.glob(".*.tmp"))


def test_the_runs_list_reads_settings_and_scores_of_every_run(trained_run):
    run = trained_run
    [listed] = list_runs(run.parent)
    assert listed["run"] == run.name and listed["models"] == ["best", "last"]
    assert listed["settings"]["hidden_sizes"] == [24] and listed["settings"]["optimizer"] == "SGD"
    assert 0 < listed["val_acc"] <= 1 and listed["test_acc"] is None


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("../version_0", "names no run's model"),
        ("version_0/../../secret", "names no run's model"),
        ("version_0/config", "names no run's model"),
        ("version_7", "has no best.ckpt"),
        ("version_0/live", "has no live.pt"),
    ],
)
def test_a_model_name_never_reaches_outside_the_runs(trained_run, name, error):
    with pytest.raises(LookupError, match=error.replace("(", r"\(")):
        RunModels(trained_run.parent, "cpu").named(name)


def test_the_runs_models_are_kept_a_few_at_a_time_and_the_first_loaded_stays_usable(trained_run, tmp_path):
    for number in range(1, CACHED_MODELS + 2):  # more runs than the cache keeps
        shutil.copytree(trained_run, tmp_path / f"version_{number}")
    models = RunModels(tmp_path, "cpu")
    served, about = models.load(tmp_path / "version_1" / "checkpoints" / "last.ckpt")
    for number in range(1, CACHED_MODELS + 2):
        assert models.named(f"version_{number}")[1]["run"] == f"version_{number}"
    assert len(models.loaded) == CACHED_MODELS and about["run"] == "version_1" and not served.training
    assert models.named("version_1")[1]["name"] == "version_1"  # let go, then loaded again


@pytest.fixture(scope="module")
def trained_run(synthetic_data_dir, tmp_path_factory) -> Path:
    """A 784-24-10 run of 2 epochs made by the command line, as the lab lists it."""
    folder = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(folder)
        monkeypatch.setenv("MNIST_ANN_DATA_DIR", str(synthetic_data_dir))
        fit = ["fit", "--model.hidden_sizes=[24]", "--trainer.max_epochs=2", "--data.val_size=200"]
        run_main(monkeypatch, *fit, "--trainer.enable_progress_bar=false")
    return folder / "lightning_logs" / "version_0"


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"hidden": [10]}, "hidden: Extra inputs are not permitted"),
        (
            {"hidden_sizes": [64] * (LIMITS["layers"] + 1)},
            f"hidden_sizes: List should have at most {LIMITS['layers']} items after validation, not 5",
        ),
        (
            {"hidden_sizes": [LIMITS["width"] + 1]},
            f"hidden_sizes.0: Input should be less than or equal to {LIMITS['width']}",
        ),
        ({"hidden_sizes": [0]}, "hidden_sizes.0: Input should be greater than or equal to 1"),
        ({"hidden_sizes": "128"}, "hidden_sizes: Input should be a valid list"),
        ({"hidden_sizes": [2048, 2048]}, "hidden_sizes: 5,824,522 parameters, over the 3,000,000 allowed here"),
        ({"epochs": LIMITS["epochs"] + 1}, "epochs: Input should be less than or equal to 100"),
        ({"epochs": 2.5}, "epochs: Input should be a valid integer"),
        ({"lr": 0}, "lr: Input should be greater than 0"),
        ({"lr": "0.1"}, "lr: Input should be a valid number"),
        ({"lr": float("nan")}, "lr: Input should be a finite number"),
        ({"batch_size": 0}, "batch_size: Input should be greater than or equal to 1"),
        ({"optimizer": "LBFGS"}, "optimizer: Input should be 'SGD', 'Adam' or 'AdamW'"),
        ({"optimizer": {"class_path": "x"}}, "optimizer: Input should be 'SGD', 'Adam' or 'AdamW'"),
        ({"schedule": ["one-cycle"]}, "schedule: Input should be 'constant', 'one-cycle' or 'cosine'"),
        ({"dataset": "cifar"}, "dataset: Input should be 'mnist' or 'fashion-mnist'"),
        ({"dropout": 1}, "dropout: Input should be less than or equal to 0.9"),
        ({"weight_averaging": "yes"}, "weight_averaging: Input should be a valid boolean"),
    ],
)
def test_settings_over_a_limit_or_unknown_are_refused_with_one_message(settings, error):
    with pytest.raises(ValidationError) as refused:
        FitSettings.model_validate(settings)
    assert one_message(refused.value.errors()) == (422, error)


def test_the_page_settings_become_the_command_line_a_user_would_type():
    arguments = FitSettings(
        hidden_sizes=[256, 128, 64],
        optimizer="Adam",
        lr=0.001,
        schedule="one-cycle",
        augmentation="affine",
        weight_averaging=True,
        batch_norm=True,
        adversarial="vat",
        adversarial_epsilon=3.0,
    ).command_line()
    assert "--model.hidden_sizes=[256,128,64]" in arguments and "--model.optimizer=torch.optim.Adam" in arguments
    assert "--model.scheduler=mnist_ann.schedules.OneCycle" in arguments
    assert "--data.augmentation.rotation=10" in arguments and "--trainer.callbacks+=EMAWeightAveraging" in arguments
    assert "--model.batch_norm=true" in arguments and "--trainer.callbacks.use_buffers=true" in arguments  # fit's rule
    assert "--model.adversarial.kind=vat" in arguments and "--model.adversarial.epsilon=3.0" in arguments
    assert not any("momentum" in argument or "nesterov" in argument for argument in arguments)  # SGD's alone
    assert not any("threads" in argument for argument in arguments)  # chosen as every fit chooses them
    assert arguments[-1] == "--trainer.callbacks+=mnist_ann.live.LiveReport"
    with pytest.raises(ValidationError, match="nesterov: SGD's momentum only, not Adam's"):
        FitSettings(optimizer="Adam", nesterov=True)


def printed_config(monkeypatch, capsys, *options: str) -> dict:
    """The whole config `fit` would run with these options, as `--print_config` prints it."""
    with pytest.raises(SystemExit):
        run_main(monkeypatch, "fit", *options, "--print_config")
    return yaml.safe_load(capsys.readouterr().out)


@pytest.mark.parametrize("name", list(PRESETS))
def test_each_preset_trains_what_its_shipped_config_trains(name, monkeypatch, capsys):
    shipped = printed_config(
        monkeypatch, capsys, "--config", CONFIG, "--config", str(REPO / "configs" / f"{PRESETS[name]}.yaml")
    )
    page = printed_config(monkeypatch, capsys, *preset(name).command_line())
    assert page["model"] == shipped["model"] and page["data"] == shipped["data"]
    assert page["trainer"]["max_epochs"] == shipped["trainer"]["max_epochs"]
    watched = [
        callback for callback in page["trainer"]["callbacks"] if not callback["class_path"].endswith("LiveReport")
    ]
    assert watched == shipped["trainer"]["callbacks"]


@pytest.mark.slow
def test_a_job_killed_or_stopped_at_once_says_what_happened_and_lists_nothing(
    synthetic_data_dir, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MNIST_ANN_DATA_DIR", str(synthetic_data_dir))
    lab = Lab(Path("lightning_logs"))
    lab.start("fit", ["--trainer.max_epochs=1", "--data.val_size=200"])
    lab.job.process.send_signal(signal.SIGKILL)
    ended = wait_for(lambda: (job := lab.state())["state"] != "running" and job)
    assert (ended["state"], ended["message"]) == ("failed", "killed by SIGKILL")
    lab.start("fit", ["--trainer.max_epochs=1", "--data.val_size=200"])
    lab.stop()  # at once: before its first step
    ended = wait_for(lambda: (job := lab.state())["state"] not in ("running", "stopping") and job)
    assert ended["state"] == "stopped" and ended["run"] is None
    assert ended["message"] == "stopped before its first step: nothing was trained or kept"
    assert list_runs(Path("lightning_logs")) == []


# The service, as a user runs it: in a folder of its own, on the synthetic data.


def drawing(data_dir: Path, **fields) -> bytes:
    """A request to POST /predict: a synthetic test digit as a PNG file, with `fields`."""
    picture = Image.fromarray(load_split(data_dir, train=False)[0][0].numpy())
    return json.dumps({"image": png_base64(picture), **fields}).encode()


def as_body(settings: dict) -> bytes:
    return json.dumps(settings).encode()


LONG_RUN = {"hidden_sizes": [48, 24], "epochs": 100, "batch_size": 16, "val_size": 200}  # 6300 steps


def weight_events(run: Path) -> int:
    return sum(1 for event in live_events(run) if event["event"] == "weights") if (run / EVENTS).is_file() else 0


@pytest.mark.slow
def test_one_run_at_a_time_limits_stop_and_sigterm_each_refusal_followed_by_a_good_request(
    trained_checkpoint, synthetic_data_dir, tmp_path
):
    process, base = lab_server(tmp_path, trained_checkpoint, synthetic_data_dir)
    try:
        for settings, status in [({"hidden_sizes": [4096]}, 422), ({"epochs": 1000}, 422), ({"wat": 1}, 422)]:
            assert post(f"{base}/lab/fit", as_body(settings))[0] == status
        status, refused = post(f"{base}/lab/fit", as_body({"epochs": 100, "batch_size": 1, "val_size": 0}))
        assert (status, refused["error"]) == (
            422,
            "epochs: 120,000 steps of batch 1, over the 100,000 allowed here: fewer epochs or a larger batch",
        )
        assert post(f"{base}/lab/fit", b"{")[0] == 400
        assert post(f"{base}/lab/stop", b"{}") == (409, {"error": "nothing is training: there is nothing to stop"})

        status, job = post(f"{base}/lab/fit", as_body(LONG_RUN))
        assert status == 200 and job["state"] == "running"
        status, refused = post(f"{base}/lab/fit", as_body(LONG_RUN))
        assert status == 409 and "in progress" in refused["error"]
        run = tmp_path / "lightning_logs" / wait_for(lambda: lab_job(base)["run"])

        # A page that reads the events and goes away leaves the run going.
        with urllib.request.urlopen(f"{base}/lab/events", timeout=30) as events:
            assert events.readline().startswith(b"event: job")
        wait_for(lambda: weight_events(run) >= 2)
        assert lab_job(base)["state"] == "running"

        assert post(f"{base}/lab/stop", b"{}")[0] == 200
        stopped = wait_for(lambda: (job := lab_job(base))["state"] == "stopped" and job)
        assert (run / "checkpoints" / "last.ckpt").is_file()
        assert "Resume with: mnist-ann fit" in stopped["message"] and live_events(run)[-1]["reason"] == "stopped"

        status, job = post(f"{base}/lab/test", as_body({"run": run.name}))  # and the next job starts
        assert status == 200 and job["kind"] == "test"
        wait_for(lambda: lab_job(base)["state"] == "finished")
        [listed] = json.loads(get(f"{base}/lab/runs"))
        assert listed["run"] == run.name and 0 <= listed["test_acc"] <= 1
        assert post(f"{base}/lab/test", as_body({"run": "../x"}))[0] == 422
        assert post(f"{base}/lab/test", as_body({"run": "version_99"}))[0] == 404

        # Its models answer a drawing; the explanation is toward the class asked; the logits come with it.
        for model in (run.name, f"{run.name}/live", f"{run.name}/last"):
            status, answer = post(f"{base}/predict", drawing(synthetic_data_dir, model=model, explain=True, target=3))
            assert status == 200 and answer["model"]["run"] == run.name and answer["target"] == 3
            assert [len(layer) for layer in answer["layers"]] == [48, 24, 10]  # the hidden layers, then the logits
        # Drawings to keep: a label that is no digit, a picture that is not base64, teaching with none kept yet.
        assert post(f"{base}/collect", as_body({"image": "QUJD", "label": 12}))[0] == 422
        assert post(f"{base}/collect", as_body({"image": "not base64!", "label": 1}))[0] == 400
        status, refused = post(f"{base}/lab/teach", as_body({"run": run.name}))
        assert status == 409 and "no drawings to teach with" in refused["error"]
        status, saved = post(f"{base}/collect", drawing(synthetic_data_dir, label=7))
        assert status == 200 and saved["collection"]["count"] == 1 and saved["kept"]["number"] == 1
        assert (tmp_path / "my_digits" / "digits" / "000001-7.png").is_file()
        assert post(f"{base}/lab/teach", as_body({"run": run.name, "epochs": 0}))[0] == 422
        for model, status in [("version_9", 404), ("../../etc/passwd", 422), (7, 422)]:
            assert post(f"{base}/predict", drawing(synthetic_data_dir, model=model))[0] == status
            assert post(f"{base}/predict", drawing(synthetic_data_dir))[0] == 200
        for copy in ("version_7", "version_8"):  # more models than the service keeps loaded at once
            shutil.copytree(run, tmp_path / "lightning_logs" / copy)
            assert post(f"{base}/predict", drawing(synthetic_data_dir, model=copy))[0] == 200
        status, answer = post(f"{base}/predict", drawing(synthetic_data_dir))  # and the served one still answers
        assert status == 200 and answer["model"]["checkpoint"] == str(trained_checkpoint)
        assert json.loads(get(f"{base}/collect/measure"))["model"]["checkpoint"] == str(trained_checkpoint)

        # SIGTERM to the service, as a service manager stops it, while a run trains: the run stops with its
        # step saved, and no process is left.
        stopped_run = run.name
        assert post(f"{base}/lab/fit", as_body(LONG_RUN))[0] == 200
        run = tmp_path / "lightning_logs" / wait_for(lambda: (name := lab_job(base)["run"]) != stopped_run and name)
        wait_for(lambda: weight_events(run) >= 1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        wait_until_group_gone(process.pid)  # the server's whole group, the run's process with it
        last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        assert last["global_step"] > 0 and live_events(run)[-1] == {
            "event": "end",
            "step": last["global_step"],
            "reason": "stopped",
        }
    finally:
        stop_server(process)


# The page, in headless Chromium.


SHOWN = """const settings = document.getElementById("settings").elements;
return [[...document.querySelectorAll("#widths input")].map((width) => Number(width.value)), settings.lr.value,
  settings.nesterov.checked, settings.augmentation.value, settings.weight_averaging.checked,
  settings.averaging_decay.value, settings.epochs.value, settings.adversarial.value,
  settings.adversarial_epsilon.value];"""


class LabPage(Page):
    def lab_state(self) -> str:
        return self.find_body().get_attribute("data-lab") or ""

    def count(self, name: str) -> int:
        return int(self.find_body().get_attribute(f"data-{name}") or 0)

    def set_layers(self, widths: list[int]) -> None:
        from selenium.webdriver.common.by import By

        for remove in self.driver.find_elements(By.CSS_SELECTOR, "#widths button"):
            remove.click()
        for width in widths:
            self.find("add-layer").click()
            field = self.driver.find_elements(By.CSS_SELECTOR, "#widths input")[-1]
            field.clear()
            field.send_keys(str(width))

    def set(self, name: str, value) -> None:
        field = self.driver.find_element(self.by.NAME, name)
        field.clear()
        field.send_keys(str(value))


@pytest.mark.slow
def test_train_watch_stop_pick_and_compare_runs_on_the_page(
    trained_checkpoint, synthetic_data_dir, browser, tmp_path, monkeypatch
):
    process, base = lab_server(tmp_path, trained_checkpoint, synthetic_data_dir)
    try:
        browser.set_window_size(1280, 1000)
        page = LabPage(browser, f"{base}/")
        page.wait_for(lambda: page.driver.find_elements(page.by.CSS_SELECTOR, "#widths input"))
        page.draw(STROKES["3"])
        page.settled(1)
        # A preset shows a shipped recipe's settings (configs/fast.yaml's, best.yaml's), "the recipe" the recipe's.
        for name, shown in [
            ("fast", [[1024, 1024], "0.2", True, "light", True, "0.998", "11", "none", "2"]),
            ("best", [[1024, 1024], "0.2", True, "none", True, "0.999", "50", "vat", "5"]),
            ("the recipe", [[128, 64], "0.01", False, "none", False, "0.999", "10", "none", "2"]),
        ]:
            page.press(".presets", name)
            assert page.driver.execute_script(SHOWN) == shown, name
        page.set_layers([40, 20])
        page.set("epochs", 100)
        page.set("batch_size", 16)
        page.set("val_size", 200)
        page.find("start").click()
        page.wait_for(lambda: page.lab_state() == "running" and page.count("weight-updates") >= 3)
        page.wait_for(lambda: page.count("loss-points") >= 10)
        assert page.find("answer-with").get_attribute("value").endswith("/live")  # the drawing follows the run
        page.wait_for(lambda: "step" in page.find("model-about").text)
        browser.save_screenshot(str(SCREENSHOT_DIR / "mnist-ann-lab-training.png"))
        page.find("stop").click()
        page.wait_for(lambda: page.lab_state() == "stopped")
        assert "Resume with: mnist-ann fit" in page.find("lab-message").text

        page.wait_for(lambda: page.driver.find_elements(page.by.CSS_SELECTOR, '#runs tr[data-run="version_0"]'))
        first = '#runs tr[data-run="version_0"]'  # found afresh each time: the table redraws as runs change
        shown = lambda: page.driver.find_element(page.by.CSS_SELECTOR, first).text  # noqa: E731
        page.wait_for(lambda: re.search(r"784-40-20-10.*SGD.*100", shown(), re.S))
        page.press('#runs tr[data-run="version_0"]', "Answer with")
        page.find("clear").click()
        answers = page.count("answers")
        page.draw(STROKES["7"])
        page.settled(answers + 1)
        assert page.find("model-about").text.startswith("version_0, best.ckpt")
        assert page.find("answer").text.split("\n")[0] in list("0123456789")

        # A second run, batch-normalized and finished, compared with the first on the same drawing.
        page.set_layers([16])
        page.set("epochs", 3)
        page.driver.find_element(page.by.NAME, "batch_norm").click()
        page.find("start").click()
        page.wait_for(lambda: page.lab_state() == "finished")
        page.wait_for(lambda: "version_1 no longer trains: its best.ckpt answers now." in page.find("lab-message").text)
        assert page.find("answer-with").get_attribute("value") == "version_1"  # not its live.pt any more
        page.wait_for(lambda: page.driver.find_elements(page.by.CSS_SELECTOR, '#runs tr[data-run="version_1"]'))
        page.press('#runs tr[data-run="version_0"]', "Answer with")  # (the new run answered live)
        page.press('#runs tr[data-run="version_1"]', "Compare")
        page.wait_for(lambda: len(page.driver.find_elements(page.by.CSS_SELECTOR, "#compare-answer .fill")) == 10)
        compared = page.driver.find_elements(page.by.CSS_SELECTOR, "#compare-answer .layer .title")
        assert [title.text for title in compared] == ["input layer", "hidden layer 1", "output layer"]
        beside = page.driver.find_elements(page.by.CSS_SELECTOR, "#compare-main .layer .title")
        two_hidden = ["input layer", "hidden layer 1", "hidden layer 2", "output layer"]
        assert [title.text for title in beside] == two_hidden  # version_0, 40-20
        sizes = page.driver.find_elements(page.by.CSS_SELECTOR, "#compare-answer .layer .size")
        assert sizes[1].text == "16 units, batch norm, ReLU"  # the forward pass as the network computes it
        assert page.driver.find_elements(page.by.CSS_SELECTOR, "#compare-main .layer .size")[1].text == "40 units, ReLU"
        assert page.find("compare-name").text.startswith("version_1, best.ckpt")
        browser.execute_script("document.getElementById('compare').scrollIntoView()")
        browser.save_screenshot(str(SCREENSHOT_DIR / "mnist-ann-lab-compare.png"))

        # Each bar is as long as its probability, measured in the browser.
        widths = page.driver.execute_script(
            """return [...document.querySelectorAll('#main-answer .bar:not(.head)')].map((bar) =>
              [bar.querySelector('.fill').getBoundingClientRect().width / bar.querySelector('.track').clientWidth,
               parseFloat(bar.querySelector('.value').textContent) / 100])"""
        )
        assert len(widths) == 10 and all(abs(width - share) < 0.01 for width, share in widths), widths
        assert max(width for width, _ in widths) > 0.3

        # A reload keeps the model the learner chose, not the run that trained last.
        browser.refresh()
        page = LabPage(browser, f"{base}/")
        page.wait_for(lambda: page.find("answer-with").get_attribute("value") == "version_0")
        page.draw(STROKES["7"])
        page.settled(1)
        assert page.find("model-about").text.startswith("version_0, best.ckpt")

        # Resume goes on from a run's last.ckpt, in a new run that the drawing follows as it trains.
        page.press('#runs tr[data-run="version_0"]', "Resume")
        page.wait_for(lambda: page.lab_state() == "running")
        page.wait_for(lambda: page.find("answer-with").get_attribute("value") == "version_2/live")
        page.find("stop").click()
        page.wait_for(lambda: page.lab_state() == "stopped")
    finally:
        stop_server(process)

    # The run started from the page replays from its folder, as any run does.
    config = tmp_path / "lightning_logs" / "version_1" / "config.yaml"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MNIST_ANN_DATA_DIR", str(synthetic_data_dir))
    run_main(monkeypatch, "fit", "--config", str(config))
    assert (tmp_path / "lightning_logs" / "version_3" / "checkpoints" / "best.ckpt").is_file()
