"""The page in a real browser: headless Chromium driven by Selenium, and digits drawn as a person draws them."""

import contextlib
import itertools
import math
import os
from pathlib import Path

import pytest

from tests.helpers.commands import missing


def arc(cx, cy, rx, ry, start, end) -> list[tuple[float, float]]:
    """An arc of an ellipse as a pen draws it, a point every 30 degrees: each pointer move costs the browser a
    frame (about 17 ms), and a finer arc would draw the same digit at 28x28."""
    steps = math.ceil(abs(end - start) / 30)
    angles = [math.radians(start + (end - start) * i / steps) for i in range(steps + 1)]
    return [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in angles]


# Each digit as a person might draw it: pen strokes in a unit box (x right, y down).
STROKES = {
    "0": [arc(0.5, 0.5, 0.22, 0.33, -90, 270)],
    "1": [[(0.42, 0.25), (0.52, 0.17), (0.52, 0.83)]],
    "2": [[*arc(0.5, 0.35, 0.2, 0.18, 190, 390), (0.3, 0.82), (0.74, 0.82)]],
    "3": [arc(0.48, 0.32, 0.2, 0.15, 210, 450) + arc(0.48, 0.64, 0.22, 0.18, -90, 150)],
    "4": [[(0.58, 0.17), (0.28, 0.6), (0.75, 0.6)], [(0.6, 0.38), (0.6, 0.84)]],
    "5": [[(0.7, 0.18), (0.38, 0.18), (0.34, 0.47), *arc(0.5, 0.62, 0.2, 0.2, -140, 160)]],
    "6": [[(0.62, 0.16), (0.45, 0.3), (0.34, 0.52), *arc(0.5, 0.64, 0.17, 0.18, 180, 540)]],
    "7": [[(0.28, 0.2), (0.72, 0.2), (0.45, 0.84)]],
    "8": [arc(0.5, 0.32, 0.16, 0.15, 90, 450) + arc(0.5, 0.65, 0.19, 0.18, -90, 270)],
    "9": [[*arc(0.5, 0.35, 0.17, 0.17, 0, 360), (0.67, 0.35), (0.64, 0.84)]],
}
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SCREENSHOT_DIR = Path(os.environ.get("MNIST_ANN_SCREENSHOTS", "/tmp"))


@contextlib.contextmanager
def chromium():
    """Headless Chromium driven by Selenium, quit whatever happens."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        missing(f"{CHROMIUM} and {CHROMEDRIVER} are needed (apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@contextlib.contextmanager
def asking_in(driver, language: str):
    """Until the block ends, the pages `driver` opens are asked in `language` (`navigator.languages` and
    Accept-Language), as by a browser set to it: DevTools' own emulation, on the browser the tests share."""
    agent, before = driver.execute_script("return [navigator.userAgent, navigator.languages.join(',')]")
    driver.execute_cdp_cmd("Emulation.setUserAgentOverride", {"userAgent": agent, "acceptLanguage": language})
    try:
        yield driver
    finally:
        driver.execute_cdp_cmd("Emulation.setUserAgentOverride", {"userAgent": agent, "acceptLanguage": before})


class Page:
    """The draw-a-digit page, as a person uses it."""

    def __init__(self, driver, url: str) -> None:
        from selenium.webdriver.common.by import By

        self.driver, self.by = driver, By
        driver.get(url)
        self.pad = self.find("pad")

    def find(self, id_: str):
        return self.driver.find_element(self.by.ID, id_)

    def settled(self, answers: int, timeout: float = 20) -> None:
        """Wait until the page has shown `answers` answers and has no request out."""
        from selenium.common.exceptions import TimeoutException

        body = self.find_body()
        try:
            self.wait_for(
                lambda: int(body.get_attribute("data-answers")) >= answers and body.get_attribute("data-busy") == "no",
                timeout,
            )
        except TimeoutException:
            state = {name: body.get_attribute(f"data-{name}") for name in ("answers", "busy")}
            pytest.fail(f"the page did not show answer {answers} in {timeout} s: {state}, {self.shown()['message']!r}")

    def wait_for(self, condition, timeout: float = 120):
        """Wait until `condition()` is true (polled ten times a second); what it returned. An element the page
        redrew meanwhile (stale) counts as not yet."""
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.support.ui import WebDriverWait

        wait = WebDriverWait(
            self.driver, timeout, poll_frequency=0.1, ignored_exceptions=[StaleElementReferenceException]
        )
        return wait.until(lambda _: condition())

    def press(self, within: str, button: str) -> None:
        """Click the button labelled `button` inside the element `within` (a CSS selector), found afresh until the
        click lands: the page redraws its tables when what they show changes."""

        def pressed() -> bool:
            found = self.driver.find_element(self.by.CSS_SELECTOR, within)
            found.find_element(self.by.XPATH, f".//button[text()='{button}']").click()
            return True

        self.wait_for(pressed, timeout=30)

    def find_body(self):
        return self.driver.find_element(self.by.TAG_NAME, "body")

    def draw(self, strokes: list[list[tuple[float, float]]]) -> None:
        from selenium.webdriver.common.action_chains import ActionChains

        side = self.pad.rect["width"]
        for stroke in strokes:
            points = [(round(x * side - side / 2), round(y * side - side / 2)) for x, y in stroke]
            actions = ActionChains(self.driver, duration=10).move_to_element_with_offset(self.pad, *points[0])
            actions.click_and_hold()
            for (x0, y0), (x1, y1) in itertools.pairwise(points):
                actions.move_by_offset(x1 - x0, y1 - y0)
            actions.release().perform()

    def shown(self) -> dict:
        """What the page shows now: the answer, the bars' widths and the network's pictures."""
        script = "return [...document.querySelectorAll('#layers canvas')].map(c => c.toDataURL())"
        return {
            "answer": self.find("answer").text.split("\n")[0],
            "bars": [
                bar.get_attribute("style")
                for bar in self.driver.find_elements(self.by.CSS_SELECTOR, "#main-answer .fill")
            ],
            "network": self.driver.execute_script(script),
            "message": self.find("message").text,
        }
