"""Your own handwriting, on the page in headless Chromium: 30 digits drawn in a style unlike the training data,
kept with their labels, a model measured on them, then taught them; and the command line's `test` of the
held-out drawings agreeing with the page."""

import base64
import json
import random
from io import BytesIO

import numpy as np
import pytest
from PIL import Image

from mnist_ann.serve.runs import drawings_tag, list_runs
from tests.helpers.browser import SCREENSHOT_DIR, STROKES, Page
from tests.helpers.commands import run_main, table_values
from tests.helpers.service import start_server, stop_server

# Digits whose strokes come in parts, or whose partial states look like another digit: a 4 of two strokes, a 9
# whose loop alone is a 0, a 7 whose bar alone is a 1, a 2 whose first arc is a 7's.
QUICK = ["4", "9", "1", "0", "7", "2", "4", "9"]
KEEP_AT_ONCE = """const pad = document.getElementById("pad"), shown = pad.toDataURL();
[...document.querySelectorAll("#true-digit button")].find((button) => button.textContent === arguments[0]).click();
return shown;"""


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(BytesIO(png)).convert("RGBA"))


@pytest.mark.slow
def test_drawings_kept_quickly_while_the_service_is_slow_are_exactly_what_was_drawn(
    trained_checkpoint, browser, tmp_path
):
    """Each digit is kept the moment its last stroke ends, while the answers take half a second to come back."""
    process, base = start_server(trained_checkpoint, cwd=tmp_path)
    try:
        browser.set_window_size(1280, 1000)
        page = Page(browser, f"{base}/")
        browser.set_network_conditions(latency=500, download_throughput=10**6, upload_throughput=10**6)
        shown = []
        for digit in QUICK:
            page.draw(STROKES[digit])
            shown.append(page.driver.execute_script(KEEP_AT_ONCE, digit))
        page.wait_for(lambda: page.find_body().get_attribute("data-saved") == str(len(QUICK)), timeout=60)

        # An answer that arrives after Clear changes nothing: the pad stays empty, no answer is shown.
        page.draw(STROKES["8"])
        page.find("clear").click()
        page.wait_for(lambda: page.find_body().get_attribute("data-busy") == "no", timeout=30)
        assert page.find("answer").text == "?" and page.find("label-it").get_attribute("hidden")
        blank = "return document.getElementById('pad').getContext('2d').getImageData(0, 0, 280, 280).data"
        assert page.driver.execute_script(f"{blank}.every((value) => value === 255)")
        browser.delete_network_conditions()
    finally:
        stop_server(process)
    kept = sorted((tmp_path / "my_digits" / "drawings").iterdir())
    assert [path.name.split("-")[1][0] for path in kept] == QUICK  # each with the digit drawn
    for path, at_click in zip(kept, shown, strict=True):  # and exactly the pad at the click
        assert np.array_equal(pixels(path.read_bytes()), pixels(base64.b64decode(at_click.split(",")[1]))), path.name


def my_style(strokes: list[list[tuple[float, float]]], rng: random.Random) -> list[list[tuple[float, float]]]:
    """A hand unlike the training data's: wide, slanted to the right, never quite the same twice."""
    dx, dy = rng.uniform(-0.03, 0.03), rng.uniform(-0.03, 0.03)

    def moved(x: float, y: float) -> tuple[float, float]:
        x = 0.5 + (x - 0.5) * 1.35 + 0.35 * (0.5 - y) + dx
        return min(0.97, max(0.03, x)), min(0.97, max(0.03, y + dy))

    return [[moved(x, y) for x, y in stroke] for stroke in strokes]


@pytest.mark.slow
def test_collect_30_drawings_measure_and_teach_them_on_the_page(
    synthetic_data_dir, browser, tmp_path, monkeypatch, capsys
):
    env = {"MNIST_ANN_DATA_DIR": str(synthetic_data_dir)}
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MNIST_ANN_DATA_DIR", str(synthetic_data_dir))
    run_main(monkeypatch, "fit", "--trainer.max_epochs=2", "--data.val_size=200", "--trainer.enable_progress_bar=false")
    process, base = start_server("best", cwd=tmp_path, env=env)
    try:
        browser.set_window_size(1280, 1000)
        page = Page(browser, f"{base}/")
        rng = random.Random(0)
        for number in range(1, 31):
            digit = (number - 1) % 10
            page.find("clear").click()
            page.draw(my_style(STROKES[str(digit)], rng))
            page.settled(number)
            page.driver.find_element(page.by.XPATH, f"//div[@id='true-digit']/button[text()='{digit}']").click()
            page.wait_for(lambda number=number: page.find_body().get_attribute("data-saved") == str(number))
        assert page.find("collection-about").text == (
            "30 drawings kept in my_digits/: 20 to teach with, 10 held out to measure on (every third). "
            "By digit: 0 (3), 1 (3), 2 (3), 3 (3), 4 (3), 5 (3), 6 (3), 7 (3), 8 (3), 9 (3)."
        )
        thumbnails = page.driver.find_elements(page.by.CSS_SELECTOR, "#kept figure")
        assert [figure.text.split("\n")[0] for figure in thumbnails[:3]] == ["9 held out", "8", "7"]  # newest first

        page.find("teach-epochs").clear()
        page.find("teach-epochs").send_keys("3")
        page.find("teach").click()
        page.wait_for(lambda: page.find_body().get_attribute("data-taught"), timeout=300)
        taught = json.loads(page.find_body().get_attribute("data-taught"))
        before, after = taught["before"], taught["after"]
        print("held out", before["held_out"], after["held_out"], "test", before["mnist_test"], after["mnist_test"])
        assert after["held_out"]["count"] == 10
        assert after["held_out"]["accuracy"] > before["held_out"]["accuracy"]
        assert before["mnist_test"] - after["mnist_test"] < 0.005
        page.driver.execute_script("document.getElementById('handwriting').scrollIntoView()")
        browser.save_screenshot(str(SCREENSHOT_DIR / "mnist-ann-handwriting.png"))

        # Each digit in turn: the page asks for one, "Save as" keeps it with that label, and asks for the next.
        page.find("series").click()
        assert page.find("series-prompt").text == "Draw a 0 (1 of 50), then save it."
        answers = int(page.find_body().get_attribute("data-answers"))
        page.draw(my_style(STROKES["0"], rng))
        page.settled(answers + 1)
        assert page.find("right").text == "Save as 0"
        page.find("right").click()
        page.wait_for(lambda: page.find_body().get_attribute("data-saved") == "31")
        assert page.find("series-prompt").text == "Draw a 1 (2 of 50), then save it."
    finally:
        stop_server(process)

    # The command line measures the same held-out drawings the same way.
    taught_run = tmp_path / "lightning_logs" / "version_1"
    best = taught_run / "checkpoints" / "best.ckpt"
    config = taught_run / "config.yaml"
    run_main(monkeypatch, "test", "--config", str(config), "--ckpt_path", str(best), "--data.dataset=my_digits")
    printed = table_values(capsys.readouterr().out, "test_my_digits/acc")[0]
    assert printed == pytest.approx(after["held_out"]["accuracy"], abs=1e-6)
    # Recorded as the drawings' score, beside the run's score on the MNIST test images, never in its place.
    run_main(monkeypatch, "test", "--config", str(config), "--ckpt_path", str(best))
    mnist = list_runs(tmp_path / "lightning_logs", drawings_tag(tmp_path / "my_digits"))[0]
    run_main(monkeypatch, "test", "--config", str(config), "--ckpt_path", str(best), "--data.dataset=my_digits")
    both = list_runs(tmp_path / "lightning_logs", drawings_tag(tmp_path / "my_digits"))[0]
    assert both["test_acc"] == mnist["test_acc"] and both["drawings_acc"] == pytest.approx(printed)
    assert both["settings"]["taught_from"] == "version_0 + my_digits"
