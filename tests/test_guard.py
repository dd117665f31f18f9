"""Whom the service answers and what a request may cost it: every HTTP contract, in this process.

The service's app is the one `serve` runs (`mnist_ann.serve.server.service`), its inference worker started by
LitServe's own test helper, driven by Starlette's TestClient. Each refusal is followed by a good request.
"""

import base64
import json
import os
import re
import shutil
from io import BytesIO

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from mnist_ann.serve.guard import MAX_BODY_BYTES
from tests.helpers.service import OWN, in_process_client, service_in_process
from tests.helpers.synthetic import bar_picture, png_base64

DIGIT = png_base64(bar_picture())


@pytest.fixture(scope="module")
def client(trained_checkpoint, tmp_path_factory):
    with in_process_client(trained_checkpoint, tmp_path_factory.mktemp("service"), access_log=True) as client:
        yield client


def good_predict(client) -> None:
    answer = client.post("/predict", json={"image": DIGIT})
    assert answer.status_code == 200 and len(answer.json()["probabilities"]) == 10


# DNS rebinding: the Host names this service, or nothing is read or run.


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8123", "127.0.0.1.evil.example:8123", "127.0.0.1:9999", "localhost:80"]
)
def test_a_host_that_is_not_the_services_is_refused_on_every_route(client, host):
    routes = [("GET", "/info"), ("GET", "/lab/runs"), ("GET", "/collect"), ("POST", "/lab/stop"), ("POST", "/backward")]
    for method, path in routes:
        answer = client.request(method, path, headers={"Host": host}, json={})
        assert answer.status_code == 400
        assert answer.json() == {"error": f"refused: this service does not answer for the host {host!r}"}
    for host in ("127.0.0.1:8123", "localhost:8123", "[::1]:8123", "127.0.0.1"):
        assert client.get("/info", headers={"Host": host}).status_code == 200


# Another page in the learner's browser: changes only from the service's own page, as JSON.

CHANGES = [("/lab/fit", {"epochs": 1}), ("/lab/stop", {}), ("/lab/test", {"run": "version_0"})]
CHANGES += [("/lab/resume", {"run": "version_0"}), ("/lab/teach", {"run": "version_0"}), ("/collect", {"label": 3})]
CHANGES += [("/backward", {"image": DIGIT, "steps": 1})]


@pytest.mark.parametrize(("path", "body"), CHANGES, ids=[path for path, _ in CHANGES])
def test_a_change_from_another_page_is_refused_and_the_own_pages_reaches_the_route(client, path, body):
    body = {**body, "image": DIGIT} if path == "/collect" else body
    other_pages = [
        {"Origin": "http://127.0.0.1:9000"},  # another server on this machine
        {"Origin": "null"},  # a file:// page, a sandboxed frame
        {"Origin": "http://evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},  # another port of 127.0.0.1
    ]
    for headers in other_pages:
        answer = client.post(path, json=body, headers=headers)
        assert answer.status_code == 403 and answer.json()["error"].startswith("refused: this service takes changes")
    # What an HTML form or a fetch without a preflight can send: any type but JSON.
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
        headers = {"Origin": OWN} | ({"Content-Type": content_type} if content_type else {})
        answer = client.post(path, content=json.dumps(body), headers=headers)
        assert answer.status_code == 415 and "send JSON with Content-Type: application/json" in answer.json()["error"]
    own = client.post(path, json=body, headers={"Origin": OWN, "Sec-Fetch-Site": "same-origin"})
    assert own.status_code not in (403, 415), own.json()  # the route's own answer (404 for no such run, ...)
    assert client.post(path, json=body).status_code not in (403, 415)  # curl, a script on this machine


def test_the_page_is_served_with_its_policy_and_no_framework_page(client):
    page = client.get("/")
    assert page.status_code == 200 and "frame-ancestors 'none'" in page.headers["content-security-policy"]
    for path in ("/docs", "/redoc"):
        assert client.get(path).status_code == 404


# What a request may cost: one body limit for every route, refused before it is read.


@pytest.mark.parametrize("path", ["/predict", "/collect", "/lab/fit", "/lab/stop", "/info", "/backward"])
def test_a_body_over_the_limit_is_refused_from_its_length_or_as_it_arrives(client, path):
    declared = client.post(path, content=b"{" * (MAX_BODY_BYTES + 1), headers={"Content-Type": "application/json"})
    assert declared.status_code == 413
    assert declared.json() == {"error": f"request body of {MAX_BODY_BYTES + 1:,} bytes, over the 10,485,760 accepted"}

    def chunks():  # no Content-Length: the body is counted as it streams
        for _ in range(11):
            yield b"{" * 2**20

    streamed = client.post(path, content=chunks(), headers={"Content-Type": "application/json"})
    if path in ("/predict", "/collect", "/lab/fit", "/backward"):  # (the others answer without reading a body)
        assert streamed.status_code == 413 and "over the 10,485,760 accepted" in streamed.json()["error"]
    good_predict(client)


def test_a_drawing_is_kept_at_most_the_size_a_digit_needs(client):
    huge = Image.new("L", (4096, 4096), 255)
    huge.paste(0, (1500, 500, 2500, 3500))  # a digit "1" drawn across a 4096x4096 picture
    answer = client.post("/collect", json={"image": png_base64(huge), "label": 1})
    assert answer.status_code == 200
    kept = client.folder / "my_digits" / "drawings" / f"{answer.json()['kept']['number']:06d}-1.png"
    with Image.open(kept) as picture:
        assert max(picture.size) == 1024
    noise = Image.frombytes("L", (3000, 3000), os.urandom(3000 * 3000))
    answer = client.post("/collect", json={"image": png_base64(noise), "label": 1})
    assert answer.status_code == 413  # 9 MB of pixels: over what a drawing may be
    too_big = client.post("/collect", json={"image": "A" * (6 * 2**20), "label": 1})
    assert too_big.status_code == 422 and "a drawing is at most 4 MB" in too_big.json()["error"]
    assert client.post("/collect", json={"image": DIGIT, "label": 2}).status_code == 200


def test_the_collection_shows_each_drawing_and_removes_one_only_for_its_own_page(client):
    from mnist_ann.collect import Collection

    number = client.post("/collect", json={"image": DIGIT, "label": 5}).json()["kept"]["number"]
    listed = client.get("/collect").json()
    assert listed["drawings"][0] == {
        "number": number,
        "label": 5,
        "held_out": number % 3 == 0,
        "file": f"{number:06d}-5.png",
    }
    picture = client.get(f"/collect/digits/{number:06d}-5.png")
    assert picture.status_code == 200 and Image.open(BytesIO(picture.content)).size == (28, 28)
    for name in ("../../etc/passwd", "000001-5.png.bak", "999999-1.png"):
        assert client.get(f"/collect/digits/{name}").status_code == 404
    measured = client.get("/collect/measure", params={"model": "../version_0"})
    assert measured.status_code == 422 and measured.json()["error"].startswith("model: String should match pattern")
    assert client.get("/collect/measure").json()["all"]["count"] >= 1
    refused = client.request("DELETE", f"/collect/{number}", json={}, headers={"Origin": "http://127.0.0.1:9000"})
    assert refused.status_code == 403
    removed = client.request("DELETE", f"/collect/{number}", json={})
    assert removed.status_code == 200 and removed.json()["count"] == listed["count"] - 1
    assert not Collection(client.folder / "my_digits").stale_idx_files()  # the IDX files follow
    assert client.request("DELETE", f"/collect/{number}", json={}).status_code == 404


# Nothing a request holds is answered 5xx: hostile bodies to every route.

HOSTILE = [
    b"",
    b"{",
    b"[]",
    b"null",
    b'"image"',
    b"[" * 50_000 + b"]" * 50_000,
    b'{"a":' * 5000 + b"1" + b"}" * 5000,
    b'{"image": "' + DIGIT.encode() + b'", "label": ' + b"9" * 5000 + b"}",
    b'{"image": NaN, "label": Infinity, "lr": NaN, "epochs": 1e400}',
    b'{"image": {"x": 1}, "label": [3], "run": {"$ne": 1}, "optimizer": {"a": 1}, "schedule": [1], '
    b'"augmentation": {"b": 2}, "hidden_sizes": {"0": 1}, "model": ["x"], "target": "\xc2\xb2", "explain": "yes"}',
    b'{"image": "' + DIGIT.encode() + b'", "label": "\xc2\xb3", "target": "\xc2\xb2", "run": "version_\xc2\xb2"}',
    b'{"image": "' + DIGIT.encode() + b'", "label": 3.0, "target": true, "model": "../../etc/passwd"}',
    b'{"run": "version_1/../../x", "epochs": -1, "repeats": 1e9, "hidden_sizes": [1e9]}',
    b'{"hidden_sizes": [1, 2, 3, 4, 5, 6], "lr": -1, "batch_size": 0, "dataset": "../../x"}',
    b"\xff\xfe\x00\x00",
]
ROUTES = ["/predict", "/collect", "/lab/fit", "/lab/resume", "/lab/test", "/lab/teach", "/lab/stop"]


@pytest.mark.parametrize("path", ROUTES)
def test_hostile_bodies_are_never_answered_5xx(client, path):
    for body in HOSTILE:
        for content_type in ("application/json", "text/plain"):
            answer = client.post(path, content=body, headers={"Content-Type": content_type})
            assert answer.status_code < 500, (body[:80], answer.text)
            assert set(answer.json()) == {"error"} or answer.status_code == 200
    for field, value, message in [
        ("target", "²", "target: Input should be a valid integer"),
        ("explain", "maybe", "explain: Input should be a valid boolean"),
        ("model", "version_²", "model: String should match pattern"),
    ]:
        answer = client.post("/predict", files={"file": ("d.png", base64.b64decode(DIGIT))}, data={field: value})
        assert answer.status_code == 422 and answer.json()["error"].startswith(message)
    good_predict(client)


def test_the_predict_form_fields_are_checked_like_json_fields(client):
    upload = {"file": ("d.png", base64.b64decode(DIGIT))}
    answer = client.post("/predict", files=upload, data={"target": "3", "explain": "true"})
    assert answer.status_code == 200 and answer.json()["target"] == 3
    answer = client.post("/predict", files=upload, data={"target": "12"})
    assert answer.json() == {"error": "target: Input should be less than or equal to 9"}


def test_a_collection_that_cannot_be_written_is_one_message(client):
    """A folder the service cannot write (read-only, a full disk): here its drawings' folder is a file."""
    blocked = client.folder / "my_digits" / "digits"
    shutil.rmtree(blocked, ignore_errors=True)
    blocked.write_text("not a folder")
    try:
        answer = client.post("/collect", json={"image": DIGIT, "label": 4})
        assert answer.status_code == 503
        assert answer.json() == {"error": "cannot keep the drawing in my_digits/: File exists"}
    finally:
        blocked.unlink()
    assert client.post("/collect", json={"image": DIGIT, "label": 4}).status_code == 200


# The API describes itself from the request models.


def test_the_schema_describes_every_public_route_from_its_models(client):
    document = client.get("/openapi.json").json()
    public = {"/predict", "/health", "/info", "/metrics", "/collect", "/collect/measure", "/backward"}
    public |= {f"/lab{path}" for path in ("", "/fit", "/resume", "/test", "/stop", "/runs", "/events", "/teach")}
    assert public <= set(document["paths"])
    schemas = document["components"]["schemas"]
    assert set(schemas["FitSettings"]["properties"]) == {
        "hidden_sizes",
        "optimizer",
        "lr",
        "nesterov",
        "batch_size",
        "epochs",
        "val_size",
        "schedule",
        "input_dropout",
        "dropout",
        "label_smoothing",
        "augmentation",
        "batch_norm",
        "adversarial",
        "adversarial_epsilon",
        "weight_averaging",
        "averaging_decay",
        "dataset",
    }
    assert schemas["Drawing"]["properties"]["label"] == {
        "maximum": 9,
        "minimum": 0,
        "title": "Label",
        "type": "integer",
    } | {"description": "the digit drawn"}
    predict = document["paths"]["/predict"]["post"]
    assert predict["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PredictRequest"
    }
    assert set(schemas["PredictRequest"]["properties"]) == {"image", "explain", "target", "model"}
    assert client.get("/metrics").status_code == 200  # a route of its own, no redirect


def test_beyond_this_machine_nothing_trains_unless_allowed_and_then_only_with_the_key(
    trained_checkpoint, tmp_path, monkeypatch
):
    server = service_in_process(trained_checkpoint, tmp_path, monkeypatch, host="0.0.0.0", training_allowed=False)
    app = TestClient(server.app, base_url=OWN)
    for path, body in CHANGES:
        answer = app.post(path, json=body)
        assert answer.status_code == 403 and "--allow_remote_training true" in answer.json()["error"], path
    assert app.get("/lab").json()["allowed"] is False and app.get("/lab/runs").json() == []  # reading still answers

    server = service_in_process(trained_checkpoint, tmp_path, monkeypatch, host="0.0.0.0", training_key="k3y")
    app = TestClient(server.app, base_url=OWN)  # (no worker: the lab's and the collection's routes alone)
    for given in ({}, {"Authorization": "Bearer k3"}, {"Authorization": "Bearer k3yy"}, {"Authorization": "k3y"}):
        answer = app.post("/lab/stop", json={}, headers=given)
        assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer"
    assert app.post("/lab/stop", json={}, headers={"Authorization": "Bearer k3y"}).status_code == 409  # nothing runs


def requests_counted(client, status: int) -> float:
    metrics = client.get("/metrics").text
    found = re.search(rf'mnist_ann_requests_total{{method="POST",path="/predict",status="{status}"}} ([\d.]+)', metrics)
    return float(found.group(1)) if found else 0.0


def test_each_request_is_logged_counted_and_names_its_model(client, trained_checkpoint, tmp_path, monkeypatch, capsys):
    before = [requests_counted(client, status) for status in (200, 400)]
    capsys.readouterr()
    answer = client.post("/predict", json={"image": DIGIT})
    assert answer.status_code == 200 and answer.headers["X-Model"] == str(trained_checkpoint)
    assert client.post("/predict", content=b"{", headers={"Content-Type": "application/json"}).status_code == 400
    lines = [line for line in capsys.readouterr().err.splitlines() if '"POST /predict"' in line]
    assert [line.split('"')[2].split()[0] for line in lines] == ["200", "400"]  # status; then the milliseconds
    assert re.fullmatch(r'testclient "POST /predict" 200 \d+\.\d ms', lines[0])  # (TestClient's address)
    assert [requests_counted(client, status) for status in (200, 400)] == [before[0] + 1, before[1] + 1]
    assert "mnist_ann_request_seconds_bucket" in client.get("/metrics").text

    quiet = TestClient(service_in_process(trained_checkpoint, tmp_path, monkeypatch).app, base_url=OWN)
    assert quiet.get("/info").status_code == 200 and "/info" not in capsys.readouterr().err  # --access_log false
