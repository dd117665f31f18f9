"""What stands in front of the prediction service, in LitServe's HTTP process, as ASGI middlewares.

- `RequestGate`, before POST /predict: malformed requests end here. It answers the mistakes of HTTP
  itself (an empty or oversized body, malformed JSON, a missing field, a broken form) with
  `{"error": ...}` and a 4xx status, and hands LitServe every other request as JSON, uploads included.
- `SecurityHeaders`, on every answer: the page may run only its own scripts and styles, and talk only
  to this service, so that nothing a checkpoint or a request holds can run as script in a browser.
- `ServiceLog`, on every request: one access-log line (method, path, status, milliseconds; never a
  body), Prometheus metrics for GET /metrics, and the answering model's name as the `X-Model` header.
"""

import base64
import json
import sys
import time

from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from mnist_ann.serve.runs import MODEL

MAX_BODY_BYTES = 10 * 1024 * 1024
NO_IMAGE_FIELD = 'the JSON must be an object with "image": a base64 string of a picture file'
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


class SecurityHeaders:
    """ASGI middleware: the Content-Security-Policy and its companions on every HTTP answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        await self.app(scope, receive, with_headers)


class RequestGate:
    """ASGI middleware in front of POST /predict: answers malformed requests itself, hands LitServe JSON.

    LitServe would answer a malformed JSON body with a 500, and cannot pass an uploaded file to its
    workers (LitServe#443). Here every request becomes JSON `{"image": <base64>, ...}` (an upload is converted), or
    gets its 4xx `{"error": ...}` before it reaches a worker.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/predict" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        try:
            request = await self._checked(scope, await self._body(scope, receive))
        except RequestError as error:
            await JSONResponse({"error": error.message}, status_code=error.status)(scope, receive, send)
            return
        # What LitServe gets is always this JSON, whatever the content type said (a form, or none at all).
        body = json.dumps(request).encode()
        headers = [(k, v) for k, v in scope["headers"] if k not in (b"content-type", b"content-length")]
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]

        async def replay() -> dict:
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app({**scope, "headers": headers}, replay, send)

    async def _body(self, scope: Scope, receive: Receive) -> bytes:
        """The whole body; over the limit, the rest is read and dropped first, so that the client, still
        sending, gets the 413 rather than a connection reset."""
        chunks, size = [], 0
        while True:
            message = await receive()
            size += len(message.get("body", b""))
            if size <= self.max_bytes:
                chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        if size > self.max_bytes:
            raise RequestError(413, f"request body of {size:,} bytes, over the {self.max_bytes:,} accepted")
        return b"".join(chunks)

    async def _checked(self, scope: Scope, body: bytes) -> dict:
        """Refuse what no worker could use; else the request as a worker takes it: `{"image": <base64>,
        "explain": <bool>}`, from JSON whatever the content type, or from a file upload."""
        content_type = dict(scope["headers"]).get(b"content-type", b"").decode("latin-1")
        if not body:
            raise RequestError(400, 'empty request: send JSON {"image": "<base64>"} or a file upload (field "file")')
        if content_type.startswith("multipart/form-data"):
            return await self._upload(scope, body)
        try:
            request = json.loads(body, parse_constant=not_json)
        except (ValueError, RecursionError, UnicodeDecodeError) as error:  # syntax, NaN, nesting, huge integers
            raise RequestError(400, f"malformed JSON: {' '.join(str(error).split())[:200]}") from None
        if not isinstance(request, dict) or not isinstance(request.get("image"), str):
            raise RequestError(422, NO_IMAGE_FIELD)
        explain = request.get("explain", False)
        if not isinstance(explain, bool):
            raise RequestError(422, f'"explain" must be true or false, not {json.dumps(explain)[:40]}')
        return {"image": bare_base64(request["image"]), "explain": explain, **choices(request)}

    async def _upload(self, scope: Scope, body: bytes) -> dict:
        async def replay() -> dict:
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            form = await Request(scope, replay).form()
        except Exception as error:  # the multipart parser's own complaint
            raise RequestError(400, f"malformed multipart form: {error}") from None
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise RequestError(422, 'the form has no file field "file"')
        data = await upload.read()
        explain = str(form.get("explain", "")).lower() in ("1", "true", "yes")
        target = form.get("target")
        fields = {"model": form.get("model"), "target": int(target) if str(target).isdigit() else target}
        return {"image": base64.b64encode(data).decode(), "explain": explain, **choices(fields)}


def choices(request: dict) -> dict:
    """The request's optional choices, checked: `model`, a run's model (`mnist_ann.serve.runs`), and `target`,
    the class an explanation is toward."""
    chosen = {"model": request.get("model"), "target": request.get("target")}
    if chosen["model"] is not None and not (isinstance(chosen["model"], str) and MODEL.fullmatch(chosen["model"])):
        raise RequestError(
            422,
            f'"model" must name a run\'s model (version_N, version_N/live, ...), not '
            f"{json.dumps(chosen['model'])[:40]}",
        )
    if chosen["target"] is not None and not (type(chosen["target"]) is int and 0 <= chosen["target"] <= 9):
        raise RequestError(422, f'"target" must be a class from 0 to 9, not {json.dumps(chosen["target"])[:40]}')
    return chosen


def not_json(constant: str):
    raise ValueError(f"{constant} is not JSON")


def bare_base64(text: str) -> str:
    """The base64 of a picture as people send it: a data URL's prefix (`data:image/png;base64,`) and the line
    breaks that `base64` prints without `-w0` taken away."""
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    return "".join(text.split())


class RequestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


# Paths the metrics name; any other path is counted as "other", so that no request can grow the label set.
KNOWN_PATHS = (
    "/",
    "/predict",
    "/health",
    "/info",
    "/metrics",
    "/openapi.json",
    "/lab",
    "/lab/fit",
    "/lab/resume",
    "/lab/test",
    "/lab/stop",
    "/lab/runs",
    "/lab/teach",
    "/collect",
    "/collect/measure",
    "/lab/events",
)


class ServiceMetrics:
    """The service's Prometheus metrics, in a registry of their own (served at GET /metrics)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "mnist_ann_requests", "HTTP requests answered", ["method", "path", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "mnist_ann_request_seconds",
            "time to answer an HTTP request",
            ["path"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )


class ServiceLog:
    """ASGI middleware on every HTTP request: access log, metrics, and which model answered."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, model: str, access_log: bool = True) -> None:
        self.app, self.metrics, self.access_log = app, metrics, access_log
        self.model = model.encode("latin-1", "replace")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500  # (500 if the answer never started)

        async def observed(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), (b"x-model", self.model)]}
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            seconds = time.perf_counter() - start
            path = scope["path"] if scope["path"] in KNOWN_PATHS or scope["path"].startswith("/web/") else "other"
            self.metrics.requests.labels(scope["method"], path, str(status)).inc()
            self.metrics.latency.labels(path).observe(seconds)
            if self.access_log:
                client = (scope.get("client") or ("-",))[0]
                shown = "".join(c if c.isprintable() else "?" for c in scope["path"])[:200]
                print(
                    f'{client} "{scope["method"]} {shown}" {status} {1000 * seconds:.1f} ms',
                    file=sys.stderr,
                    flush=True,
                )
