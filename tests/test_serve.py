"""`mnist-ann serve`: the real server process on a free port of 127.0.0.1, real HTTP requests, a real browser.

Every server is started as a user starts it and stopped whatever happens (its whole process group).
Servers are several processes each: their tests are `slow`.
"""

import base64
import contextlib
import itertools
import json
import math
import os
import re
import signal
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from io import BytesIO
from pathlib import Path

import lightning as L
import numpy as np
import pytest
from PIL import Image

from mnist_ann.data import MNISTDataModule
from mnist_ann.idx import load_split
from mnist_ann.model import MNISTClassifier
from tests.helpers.browser import SCREENSHOT_DIR, STROKES, Page
from tests.helpers.commands import finish, run_main, start_cli
from tests.helpers.service import get, post, start_server, stop_server, wait_until_group_gone
from tests.helpers.wait import wait_for


@pytest.fixture(scope="module")
def served(trained_checkpoint):
    """The service of the module's tests: (process, base URL)."""
    process, base = start_server(trained_checkpoint, "--max_batch_size", "8", "--batch_timeout", "0.01")
    yield process, base
    stop_server(process)


@pytest.fixture(scope="module")
def server(served) -> str:
    return served[1]


def as_json(picture: bytes, explain: bool = False) -> bytes:
    return json.dumps({"image": base64.b64encode(picture).decode(), "explain": explain}).encode()


def as_upload(picture: bytes, field: str = "file") -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="digit.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + picture
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def png(pixels: np.ndarray) -> bytes:
    buffer = BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def digits(synthetic_data_dir) -> list[bytes]:
    """The first synthetic test images as PNG files."""
    images, _ = load_split(synthetic_data_dir, train=False)
    return [png(image.numpy()) for image in images[:20]]


@pytest.mark.slow
def test_a_real_mnist_digit_gets_the_answer_predict_gives_its_file(
    server, trained_checkpoint, real_data_dir, tmp_path, monkeypatch
):
    images, labels = load_split(real_data_dir, train=False)
    picture = tmp_path / f"label{labels[0].item()}.png"
    picture.write_bytes(png(images[0].numpy()))
    status, served = post(f"{server}/predict", as_json(picture.read_bytes()))
    assert status == 200

    monkeypatch.chdir(tmp_path)
    rows = tmp_path / "rows.jsonl"
    run_main(
        monkeypatch,
        "predict",
        "--ckpt_path",
        str(trained_checkpoint),
        "--data.predict_files",
        str(picture),
        "--trainer.callbacks+=mnist_ann.predictions.PredictionWriter",
        f"--trainer.callbacks.output={rows}",
        "--trainer.callbacks.console=false",
    )
    [row] = [json.loads(line) for line in rows.read_text().splitlines()]
    assert served["class"] == row["class"] and served["name"] == row["name"]
    np.testing.assert_allclose(served["probabilities"], [row[f"p{k}"] for k in range(10)], atol=1e-5, rtol=0)


@pytest.mark.slow
def test_a_file_upload_and_json_get_the_same_answer_and_explain_shows_the_layers(server, digits):
    status, by_json = post(f"{server}/predict", as_json(digits[0], explain=True))
    upload_status, by_upload = post(f"{server}/predict", *as_upload(digits[0]))
    assert status == upload_status == 200
    assert by_upload["probabilities"] == by_json["probabilities"] and "input" not in by_upload
    assert len(by_json["input"]) == 28 and all(len(row) == 28 for row in by_json["input"])
    assert [len(layer) for layer in by_json["layers"]] == [128, 64, 10]  # hidden 1, hidden 2, the output logits
    assert len(by_json["attribution"]) == 28 and any(value != 0 for row in by_json["attribution"] for value in row)
    assert math.isclose(sum(by_json["probabilities"]), 1, abs_tol=1e-5) and by_json["classes"][by_json["class"]]


def truncated(picture: bytes) -> bytes:
    big = BytesIO()
    Image.open(BytesIO(picture)).resize((300, 300)).save(big, format="PNG")
    return big.getvalue()[:2000]


BAD_REQUESTS = [
    ("an empty body", lambda d: (b"", "application/json"), 400, "empty request"),
    ("malformed JSON", lambda d: (b'{"image": ', "application/json"), 400, "malformed JSON"),
    ("a missing field", lambda d: (b'{"picture": "abc"}', "application/json"), 422, 'object with "image"'),
    ("a field of the wrong type", lambda d: (b'{"image": 5}', "application/json"), 422, 'object with "image"'),
    ("not base64", lambda d: (b'{"image": "@@@"}', "application/json"), 400, "image: not valid base64"),
    ("not an image", lambda d: (as_json(b"hello, I am text"), "application/json"), 415, "not an image Pillow can read"),
    ("a truncated image", lambda d: (as_json(truncated(d[0])), "application/json"), 422, "corrupt or truncated"),
    (
        "a blank drawing",
        lambda d: (as_json(png(np.full((80, 80), 255, np.uint8))), "application/json"),
        422,
        "no digit found",
    ),
    ("an empty upload", lambda d: as_upload(b""), 400, "empty file (0 bytes)"),
    ("a form without its file", lambda d: as_upload(d[0], field="picture"), 422, 'no file field "file"'),
    (
        "too many pixels",
        lambda d: (as_json(png(np.zeros((8000, 8000), np.uint8))), "application/json"),
        413,
        "8000x8000 pixels, more than the 16,777,216 accepted",
    ),
    (
        "JSON nested 100,000 deep",
        lambda d: (b"[" * 100_000 + b"]" * 100_000, "application/json"),
        400,
        "malformed JSON",
    ),
    (
        "an integer of 5,000 digits",
        lambda d: (b'{"image": "", "n": ' + b"9" * 5000 + b"}", "application/json"),
        400,
        "malformed JSON",
    ),
    ("NaN", lambda d: (b'{"image": "", "explain": NaN}', "application/json"), 422, "explain: Input should be a valid"),
    (
        '"explain" as a string',
        lambda d: (json.dumps({"image": "", "explain": "false"}).encode(), "application/json"),
        422,
        "explain: Input should be a valid boolean",
    ),
    (
        "a body over 10 MB",
        lambda d: (b"x" * (11 * 1024 * 1024), "application/json"),
        413,
        "over the 10,485,760 accepted",
    ),
]


@pytest.mark.parametrize(("what", "request_for", "status", "error"), BAD_REQUESTS, ids=[r[0] for r in BAD_REQUESTS])
@pytest.mark.slow
def test_a_bad_request_gets_its_4xx_and_the_next_good_one_its_answer(server, digits, what, request_for, status, error):
    answer_status, answer = post(f"{server}/predict", *request_for(digits))
    assert (answer_status, list(answer)) == (status, ["error"]) and error in answer["error"], answer
    assert post(f"{server}/predict", as_json(digits[1]))[0] == 200


@pytest.mark.slow
def test_a_bad_request_in_a_batch_does_not_spoil_the_others(server, digits):
    # Good and bad requests at once: batched together in the worker, each still gets its own answer.
    requests = [as_json(digits[i]) if i % 2 else b'{"image": "@@@"}' for i in range(16)]
    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda body: post(f"{server}/predict", body)[0], requests))
    assert statuses == [400, 200] * 8


@pytest.mark.slow
def test_300_requests_from_8_clients_are_all_answered_correctly(server, digits):
    expected = [post(f"{server}/predict", as_json(digit))[1]["class"] for digit in digits]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: (i % 20, post(f"{server}/predict", as_json(digits[i % 20]))), range(300)))
    assert all(status == 200 and answer["class"] == expected[index] for index, (status, answer) in answers)


@pytest.mark.slow
def test_the_page_loads_nothing_from_elsewhere_and_the_folder_gains_no_file(server, trained_checkpoint):
    page = get(f"{server}/").decode()
    assert '<canvas id="pad"' in page
    linked = re.findall(r'(?:src|href)="([^"]+)"', page)
    scripts = ["web/backward.js", "web/handwriting.js", "web/lab.js", "web/page.css", "web/page.js"]
    assert sorted(linked) == ["data:,", *scripts]  # (no icon)
    modules, files = ["page.js", "lab.js", "handwriting.js", "backward.js"], {}
    while modules:  # every module and what it imports: all plain files of this service
        name = modules.pop()
        files[name] = get(f"{server}/web/{name}").decode()
        modules += [found for found in re.findall(r'from "\./([^"]+)"', files[name]) if found not in files]
    assert sorted(files) == [
        "answer.js",
        "backward.js",
        "chart.js",
        "handwriting.js",
        "lab.js",
        "page.js",
        "request.js",
        "words.js",
    ]
    assert all(re.findall(r'from "([^"]+)"', text) == re.findall(r'from "(\./[^"]+)"', text) for text in files.values())
    for text in [page, get(f"{server}/web/page.css").decode(), *files.values()]:
        assert "http:" not in text and "https:" not in text and "//" + "cdn" not in text
    assert sorted(path.name for path in Path(trained_checkpoint).parent.iterdir()) == ["model.ckpt"]  # no client.py


def test_bad_options_are_refused_by_the_parser(trained_checkpoint, monkeypatch, capsys):
    for option, value in (("--host", "example.com"), ("--port", "80"), ("--workers", "0")):
        with pytest.raises(SystemExit):
            run_main(monkeypatch, "serve", "--ckpt_path", str(trained_checkpoint), option, value)
        assert f'Parser key "{option[2:]}"' in capsys.readouterr().err


# The page in a real browser: Debian's Chromium driven by Selenium.


@pytest.mark.slow
def test_drawing_digits_on_the_page_in_a_real_browser(recipe_checkpoint, browser, tmp_path):
    process, base = start_server(recipe_checkpoint)
    try:
        page = Page(browser, f"{base}/")
        assert page.shown()["answer"] == "?" and page.shown()["bars"] == []
        recognised, views = [], []
        for answers, (digit, strokes) in enumerate(STROKES.items(), start=1):
            page.find("clear").click()
            page.draw(strokes)
            page.settled(answers)
            views.append(page.shown())
            recognised.append(views[-1]["answer"] == digit)
            if digit == "3":
                browser.save_screenshot(str(SCREENSHOT_DIR / "mnist-ann-serve.png"))
        print(f"recognised {sum(recognised)} of {len(STROKES)} drawn digits: {recognised}")
        assert sum(recognised) >= 8
        assert all(a["bars"] != b["bars"] and a["network"] != b["network"] for a, b in itertools.pairwise(views))

        page.find("clear").click()  # Clear empties the answer
        assert page.shown()["answer"] == "?" and page.shown()["bars"] == []

        from selenium.webdriver.common.keys import Keys

        text_file = tmp_path / "notes.png"  # an upload that is no picture: one message, on the page
        text_file.write_text("not a picture")
        page.find("file").send_keys(str(text_file))
        page.wait_for(lambda: page.shown()["message"] == "notes.png: not a picture this browser can show")
        page.draw(STROKES["7"])  # and the page goes on working
        page.settled(len(STROKES) + 1)
        assert page.shown()["answer"] == "7" and page.shown()["message"] == ""
        page.find_body().send_keys(Keys.ESCAPE)  # Escape clears the pad as Clear does
        assert page.shown()["answer"] == "?" and page.shown()["bars"] == []
    finally:
        stop_server(process)


@pytest.mark.slow
def test_at_phone_width_the_pad_keeps_its_size_and_the_answers_are_the_desktops(server, browser):
    base, answers = server, {}
    try:
        for width, height in [(1280, 1000), (390, 844)]:
            browser.set_window_size(width, height)
            page = Page(browser, f"{base}/")
            size = page.pad.size
            shown = []
            for count, digit in enumerate("0147", start=1):
                page.find("clear").click()
                page.draw(STROKES[digit])
                page.settled(count)
                shown.append(page.shown()["answer"])
                assert page.pad.size == size, (width, digit)
            answers[width] = shown
            if width == 390:
                script = "return [document.getElementById('pad-answer').getBoundingClientRect(), window.innerHeight]"
                answer_box, visible_height = browser.execute_script(script)
                page_width = browser.execute_script("return document.documentElement.scrollWidth")
                assert 0 < answer_box["bottom"] <= visible_height and page_width <= width
                assert page.find("pad-answer").text.split(" ")[0] == shown[-1]
                browser.save_screenshot(str(SCREENSHOT_DIR / "mnist-ann-phone.png"))
        assert answers[390] == answers[1280]
    finally:
        browser.set_window_size(1280, 1000)


HOSTILE_NAMES = [f"<img src=x onerror=\"document.title='X{digit}'\"><b>{digit}</b>" for digit in range(10)]


@pytest.fixture(scope="module")
def hostile_checkpoint(synthetic_data_dir, tmp_path_factory) -> Path:
    """A checkpoint from someone else: its class names are HTML with script in it."""
    L.seed_everything(0)
    trainer = L.Trainer(max_epochs=1, logger=False, enable_progress_bar=False, enable_checkpointing=False)
    trainer.fit(MNISTClassifier(class_names=HOSTILE_NAMES), MNISTDataModule(synthetic_data_dir, val_size=200))
    path = tmp_path_factory.mktemp("hostile") / "hostile.ckpt"
    trainer.save_checkpoint(path)
    return path


@pytest.mark.slow
def test_class_names_from_a_checkpoint_are_shown_as_text_and_never_run(hostile_checkpoint, browser):
    process, base = start_server(hostile_checkpoint)
    try:
        with urllib.request.urlopen(f"{base}/", timeout=30) as response:
            policy = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "default-src 'none'" in policy and "unsafe-inline" not in policy
        browser.get_log("browser")  # (what pages before this test logged: the browser is the worker's)
        page = Page(browser, f"{base}/")
        title = browser.title
        page.draw(STROKES["7"])
        page.settled(1)
        names = [
            name.text for name in browser.find_elements(page.by.CSS_SELECTOR, "#main-answer .bar:not(.head) .name")
        ]
        assert names == HOSTILE_NAMES  # the names themselves, as text
        assert page.find("answer").text.split("\n")[0] in HOSTILE_NAMES
        assert HOSTILE_NAMES[0] in page.find("layers").text
        explained = [option.text for option in browser.find_elements(page.by.CSS_SELECTOR, "#target option")]
        assert explained[1:] == HOSTILE_NAMES  # the classes to explain: text too
        assert browser.find_elements(page.by.CSS_SELECTOR, "main img:not(#tiles), main b") == []  # none made of them
        assert browser.title == title  # (the answer came after the names were shown: a handler would have run)
        assert not [entry for entry in browser.get_log("browser") if "Content Security Policy" in entry["message"]]
    finally:
        stop_server(process)


def request(url: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None):
    """(status, headers, body) of any request, 4xx and 5xx included."""
    call = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(call, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


@pytest.mark.slow
@pytest.mark.parametrize("content_type", [None, "application/x-www-form-urlencoded", "text/plain"])
def test_a_json_body_is_answered_whatever_its_content_type_says(server, digits, content_type):
    """What curl -d sends without -H: 30 at once, batched with good ones, are all answered."""
    headers = {"Content-Type": content_type} if content_type else {}
    bodies = [(as_json(digits[i % 20]), headers if i % 2 else {"Content-Type": "application/json"}) for i in range(30)]
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda b: request(f"{server}/predict", "POST", *b), bodies))
    assert [status for status, _, _ in answers] == [200] * 30


@pytest.mark.slow
def test_base64_as_people_send_it_is_taken(server, digits):
    expected = post(f"{server}/predict", as_json(digits[3]))[1]
    encoded = base64.b64encode(digits[3]).decode()
    for image in (
        f"data:image/png;base64,{encoded}",
        "\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76)),
    ):
        status, answer = post(f"{server}/predict", json.dumps({"image": image}).encode())
        assert (status, answer) == (200, expected)


@pytest.mark.slow
def test_the_frameworks_own_refusals_have_the_services_error_shape(server):
    for method, path, status in (
        ("GET", "/predict", 405),
        ("PUT", "/", 405),
        ("GET", "/nothing", 404),
        ("GET", "/docs", 404),
    ):
        answer_status, _, body = request(f"{server}{path}", method)
        assert answer_status == status and list(json.loads(body)) == ["error"], (method, path, body)
    status, headers, body = request(f"{server}/", "HEAD")  # what uptime checkers send
    assert status == 200 and body == b"" and headers["Content-Type"].startswith("text/html")


@pytest.mark.slow
def test_the_api_schema_describes_predict_and_info_describes_the_model(server, trained_checkpoint):
    schema = json.loads(get(f"{server}/openapi.json"))
    assert "/" not in schema["paths"] and "/docs" not in schema["paths"]
    predict = schema["paths"]["/predict"]["post"]
    assert set(predict["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
    assert predict["responses"]["4XX"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Refusal"
    }
    assert schema["components"]["schemas"]["Refusal"]["required"] == ["error"]
    model = json.loads(get(f"{server}/info"))["model"]
    assert model["checkpoint"] == str(trained_checkpoint) and model["task"] == "multiclass"
    assert model["class_names"] == [str(digit) for digit in range(10)] and model["hidden_sizes"] == [128, 64]
    assert model["batch_norm"] is False


@pytest.mark.slow
def test_a_port_in_use_is_one_error_line_and_nothing_claims_to_serve(trained_checkpoint, server):
    port = server.rsplit(":", 1)[1]
    result = finish(
        start_cli("serve", "--ckpt_path", str(trained_checkpoint), "--port", port, cwd=Path(trained_checkpoint).parent)
    )
    assert result.returncode == 1 and "serving" not in result.stdout
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: --port {port}: cannot listen on 127.0.0.1 (")
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_random_requests_are_never_answered_5xx(server, digits):
    """A small fuzz: bodies, content types and methods drawn at random, each followed by a good request."""
    chance = np.random.default_rng(0)
    good = as_json(digits[5])
    pieces = [
        b"{",
        b"}",
        b"[",
        b"]",
        b'"image"',
        b":",
        b",",
        b'"',
        b"null",
        b"true",
        b"1e999",
        b"\x00",
        b"\xff",
        good[:40],
    ]
    types = [
        "application/json",
        "multipart/form-data; boundary=x",
        "text/plain",
        "",
        "image/png",
        "application/x-www-form-urlencoded",
    ]
    for attempt in range(300):
        body = b"".join(chance.choice(pieces) for _ in range(chance.integers(0, 12)))
        if attempt % 3 == 0:
            body = bytes(chance.integers(0, 256, chance.integers(1, 300), dtype=np.uint8))
        method = str(chance.choice(["POST", "POST", "POST", "GET", "PUT", "DELETE", "PATCH"]))
        headers = {"Content-Type": str(chance.choice(types))}
        status, _, answer = request(f"{server}/predict", method, body if method != "GET" else None, headers)
        assert status < 500, (method, headers, body, answer)
        assert request(f"{server}/predict", "POST", good, {"Content-Type": "application/json"})[0] == 200


@pytest.mark.slow
def test_thirty_enormous_pictures_at_once_are_refused_and_small_requests_among_them_answered(server, digits):
    """How long the small ones wait meanwhile is measured by benchmarks/service.py."""
    pixels = np.zeros((7000, 7000), np.uint8)
    pixels[1000:6000, 3000:3600] = 255  # a 1, of a size no drawing has
    big = as_json(png(pixels))
    assert 30_000 < len(big) < 300_000  # a PNG of tens of kilobytes, as the pictures that stalled the service
    bodies = [big if i % 2 else as_json(digits[2]) for i in range(60)]
    with ThreadPoolExecutor(31) as pool:
        answers = list(pool.map(lambda body: post(f"{server}/predict", body), bodies))
    assert all(status == 413 and "7000x7000 pixels, more than" in answer["error"] for status, answer in answers[1::2])
    assert all(status == 200 for status, _ in answers[::2])


def load(base: str, body: bytes, answered: list, until: list) -> None:
    """Requests over one kept-alive connection, as a browser or `ab -k` sends them, until told to stop."""
    import http.client

    connection = http.client.HTTPConnection(base.removeprefix("http://"), timeout=10)
    with contextlib.suppress(OSError, http.client.HTTPException):
        while not until:
            connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
            connection.getresponse().read()
            answered.append(1)


@pytest.mark.slow
def test_a_server_under_load_stops_on_sigterm_to_its_group(trained_checkpoint, digits):
    """What systemd's default stop does: SIGTERM to every process (Ctrl-C, SIGINT to every process, is
    test_smoke.py's stop); how long the stop takes is measured by benchmarks/service.py. A page's open event
    stream (the lab's) is ended by the service, not cut off when its graceful timeout runs out."""
    process, base = start_server(trained_checkpoint)
    group, answered, until = os.getpgid(process.pid), [], []
    with ThreadPoolExecutor(16) as pool, urllib.request.urlopen(f"{base}/lab/events", timeout=60) as events:
        assert events.readline() == b"event: job\n"
        clients = [pool.submit(load, base, as_json(digits[i]), answered, until) for i in range(16)]
        wait_for(lambda: len(answered) > 50)
        os.killpg(group, signal.SIGTERM)
        events.read()  # to the stream's end: an http.client.IncompleteRead had it been cut off
        wait_until_group_gone(group, process)
        until.append(True)
        for client in clients:
            client.result()
    result = finish(process)
    assert "Traceback" not in result.stderr and "Error" not in result.stderr, result.stderr[-3000:]


def inference_workers(group: int) -> list[int]:
    """The processes of a server's group that LitServe spawned as inference workers."""
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError):
            ours = entry.name.isdigit() and os.getpgid(int(entry.name)) == group
            if ours and b"spawn_main" in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return found


@pytest.mark.slow
def test_a_killed_worker_is_reported_unhealthy_then_restarted(served, digits):
    process, base = served
    [worker] = inference_workers(os.getpgid(process.pid))
    os.kill(worker, signal.SIGKILL)
    wait_for(lambda: request(f"{base}/health")[2] != b"ok")  # noticed,
    wait_for(lambda: request(f"{base}/health")[:3:2] == (200, b"ok"))  # and ready again with a new worker
    assert post(f"{base}/predict", as_json(digits[0]))[0] == 200
    assert inference_workers(os.getpgid(process.pid)) not in ([], [worker])  # a new worker answers
