"""The page in the learner's language: one message table per language (mnist_ann/serve/web/messages/), the
language the browser asks for, a switch that says every text again without losing the drawing."""

import json
import re
from importlib.resources import files

import pytest

from tests.helpers.browser import SCREENSHOT_DIR, STROKES, Page, asking_in
from tests.helpers.service import start_server, stop_server

MESSAGES = files("mnist_ann.serve") / "web" / "messages"
# Every visible text of the page: a message of the tables ([data-t]), data said as it is in every language
# ([data-raw]: class names, runs, numbers, the service's own messages), a language's own name, or figures.
OUTSIDE_THE_TABLES = """
const outside = [], walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
while (walker.nextNode()) {
  const text = walker.currentNode.textContent.trim(), parent = walker.currentNode.parentElement;
  if (!text || !parent.checkVisibility() || parent.closest("[data-t], [data-raw], option[lang]")) continue;
  if (!/^[\\d\\s.,%?→\u00d7()\\-]*$/.test(text)) outside.push(text);
}
return outside;"""
LAYERS = "return [...document.querySelectorAll('#layers .title')].map((title) => title.textContent)"


def table(language: str) -> dict[str, str]:
    return json.loads((MESSAGES / f"{language}.json").read_text())


def test_every_message_is_in_both_tables_with_the_same_values():
    english, korean = table("en"), table("ko")
    assert english.keys() == korean.keys()
    for key, text in english.items():
        assert sorted(re.findall(r"\{(\w+)\}", text)) == sorted(re.findall(r"\{(\w+)\}", korean[key])), key
        assert korean[key] != text or "{" in text, f"{key} is not said in Korean"


def test_the_pages_english_before_its_scripts_run_is_the_english_table():
    """index.html holds the English of each text (what shows until the tables load): the same as messages/en.json."""
    html, english = (MESSAGES.parent / "index.html").read_text(), table("en")
    texts = re.findall(r'data-t="([\w.]+)"[^>]*>([^<]*)<', html)
    labels = re.findall(r'aria-label="([^"]*)" data-t-aria-label="([\w.]+)"', html)
    assert len(texts) > 40 and labels
    for key, text in texts + [(key, text) for text, key in labels]:
        assert " ".join(text.split()) == english[key], key


@pytest.mark.slow
def test_a_korean_browser_gets_the_page_in_korean_and_the_switch_keeps_the_drawing(
    trained_checkpoint, browser, tmp_path
):
    process, base = start_server(trained_checkpoint, cwd=tmp_path)
    try:
        english = Page(browser, f"{base}/")
        english.wait_for(lambda: english.driver.find_element(english.by.TAG_NAME, "h1").text == "Draw a digit")

        with asking_in(browser, "ko"):  # as a Korean learner's browser asks
            page = Page(browser, f"{base}/")
            page.wait_for(lambda: page.driver.find_element(page.by.TAG_NAME, "h1").text == "숫자를 그려 보세요")
            page.draw(STROKES["3"])
            page.settled(1)
            assert page.driver.execute_script(LAYERS) == ["입력층", "은닉층 1", "은닉층 2", "출력층"]
            assert page.driver.execute_script(OUTSIDE_THE_TABLES) == []
            for width, height, name in ((1400, 1000, "ko"), (390, 844, "ko-phone")):
                page.driver.set_window_size(width, height)
                assert page.driver.execute_script("return document.documentElement.scrollWidth <= innerWidth"), width
                page.driver.save_screenshot(str(SCREENSHOT_DIR / f"mnist-ann-page-{name}.png"))
            page.driver.set_window_size(1400, 1000)

            drawn = page.driver.execute_script("return document.getElementById('pad').toDataURL()")
            answers = page.find_body().get_attribute("data-answers")
            page.driver.find_element(page.by.CSS_SELECTOR, "#language option[value='en']").click()
            assert page.driver.find_element(page.by.TAG_NAME, "h1").text == "Draw a digit"
            assert page.driver.execute_script(LAYERS) == [
                "input layer",
                "hidden layer 1",
                "hidden layer 2",
                "output layer",
            ]
            assert page.driver.execute_script(OUTSIDE_THE_TABLES) == []
            assert page.driver.execute_script("return document.getElementById('pad').toDataURL()") == drawn
            assert page.find_body().get_attribute("data-answers") == answers  # the answer stays, said again
            english_text = page.driver.find_element(page.by.TAG_NAME, "body").text
            assert not re.search("[가-힣]", english_text.replace("한국어", ""))

            again = Page(browser, f"{base}/")  # the choice is remembered
            again.wait_for(lambda: again.driver.find_element(again.by.TAG_NAME, "h1").text == "Draw a digit")
    finally:
        stop_server(process)
