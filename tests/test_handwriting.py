"""Your own handwriting, on the page in headless Chromium: 30 digits drawn in a style unlike the training data,
kept with their labels, a model measured on them, then taught them; and the command line's `test` of the
held-out drawings agreeing with the page."""

import json
import random

import pytest

from tests.helpers.browser import SCREENSHOT_DIR, STROKES, Page
from tests.helpers.commands import run_cli, table_values
from tests.helpers.service import start_server, stop_server


def my_style(strokes: list[list[tuple[float, float]]], rng: random.Random) -> list[list[tuple[float, float]]]:
    """A hand unlike the training data's: wide, slanted to the right, never quite the same twice."""
    dx, dy = rng.uniform(-0.03, 0.03), rng.uniform(-0.03, 0.03)

    def moved(x: float, y: float) -> tuple[float, float]:
        x = 0.5 + (x - 0.5) * 1.35 + 0.35 * (0.5 - y) + dx
        return min(0.97, max(0.03, x)), min(0.97, max(0.03, y + dy))

    return [[moved(x, y) for x, y in stroke] for stroke in strokes]


@pytest.mark.slow
def test_collect_30_drawings_measure_and_teach_them_on_the_page(synthetic_data_dir, browser, tmp_path):
    env = {"MNIST_ANN_DATA_DIR": str(synthetic_data_dir)}
    run_cli(
        "fit",
        "--trainer.max_epochs=2",
        "--data.val_size=200",
        "--trainer.enable_progress_bar=false",
        cwd=tmp_path,
        env=env,
    )
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
        assert (
            "30 drawings in my_digits/ (10 held out), by digit 3 3 3 3 3 3 3 3 3 3."
            in page.find("collection-about").text
        )

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
    tested = run_cli(
        "test", "--config", str(config), "--ckpt_path", str(best), "--data.dataset=my_digits", cwd=tmp_path, env=env
    )
    printed = table_values(tested.stdout + tested.stderr, "test/acc")[0]
    assert printed == pytest.approx(after["held_out"]["accuracy"], abs=1e-6)
