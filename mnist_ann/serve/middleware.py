"""What stands in front of the prediction service, in LitServe's HTTP process, as ASGI middlewares; the guards
(hosts, body size, the own page) are `mnist_ann.serve.guard`'s.

- `RequestGate`, before POST /predict: LitServe's route takes JSON alone, and would answer a malformed body
  with a 500 and cannot pass an uploaded file to its workers (LitServe#443). Here the body, JSON whatever the
  content type says or a file upload, is checked by `PredictRequest` and handed on as its JSON, or answered
  `{"error": ...}` with a 4xx status before it reaches a worker.
- `SecurityHeaders`, on every answer: the page may run only its own scripts and styles, and talk only
  to this service, so that nothing a checkpoint or a request holds can run as script in a browser.
- `ServiceLog`, on every request: one access-log line (method, path, status, milliseconds; never a
  body), Prometheus metrics for GET /metrics, and the answering model's name as the `X-Model` header.
"""

import base64
import sys
import time

from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter, Histogram
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from mnist_ann.serve.runs import MODEL

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


class PredictRequest(BaseModel):
    """POST /predict's JSON (a file upload gives the same fields as form fields, `file` for the image)."""

    model_config = ConfigDict(allow_inf_nan=False)

    image: str = Field(description="base64 of a picture file (a data: URL's prefix and line breaks are taken)")
    explain: StrictBool = Field(False, description="add the prepared input, each layer's outputs and attributions")
    target: int | None = Field(None, ge=0, le=9, description="the class the attributions are toward")
    model: str | None = Field(None, pattern=f"^{MODEL.pattern}$", description="a run's model: version_N[/best|live]")


FASTAPI_LOCATIONS = ("body", "query", "path", "header")  # where FastAPI says a field was: not part of its name


def one_message(errors: list[dict]) -> tuple[int, str]:
    """A request's validation errors (Pydantic's) as the service's status and one message: the first error."""
    error = errors[0]
    where = ".".join(str(part) for part in error["loc"] if part not in FASTAPI_LOCATIONS)
    if error["type"] == "json_invalid":
        return 400, f"malformed JSON: {' '.join(str(error.get('ctx', {}).get('error', error['msg'])).split())[:200]}"
    if not where and error["type"] in ("missing", "dict_type", "model_type", "model_attributes_type"):
        return 422, "send a JSON object"
    if where == "image" and error["type"] in ("missing", "string_type"):
        return 422, NO_IMAGE_FIELD
    message = error["msg"].removeprefix("Value error, ")
    return 422, f"{where}: {message}" if where else message


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
    """ASGI middleware in front of POST /predict (see the module's docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/predict" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        body = await Request(scope, receive).body()  # (at most the body limit: mnist_ann.serve.guard.BodyLimit)
        try:
            request = await self._checked(scope, body)
        except RequestError as error:
            await JSONResponse({"error": error.message}, status_code=error.status)(scope, receive, send)
            return
        # What LitServe gets is always this JSON, whatever the content type said (a form, or none at all).
        body = request.model_dump_json().encode()
        headers = [(k, v) for k, v in scope["headers"] if k not in (b"content-type", b"content-length")]
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]

        async def replay() -> dict:
            return {"type": "http.request", "body": body, "more_body": False}

        scope["headers"] = headers  # (in place: the router's record of the route answering stays visible to the log)
        await self.app(scope, replay, send)

    async def _checked(self, scope: Scope, body: bytes) -> PredictRequest:
        """The request as a worker takes it, from JSON whatever the content type, or from a file upload."""
        content_type = dict(scope["headers"]).get(b"content-type", b"").decode("latin-1")
        if not body:
            raise RequestError(400, 'empty request: send JSON {"image": "<base64>"} or a file upload (field "file")')
        try:
            if content_type.startswith("multipart/form-data"):
                request = PredictRequest.model_validate(await self._upload(scope, body), strict=False)
            else:
                request = PredictRequest.model_validate_json(body, strict=True)
        except ValidationError as error:
            raise RequestError(*one_message(error.errors(include_url=False))) from None
        return request.model_copy(update={"image": bare_base64(request.image)})

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
        fields = {name: value for name, value in form.items() if name in PredictRequest.model_fields}
        return {**fields, "image": base64.b64encode(await upload.read()).decode()}


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
    """ASGI middleware on every HTTP request: access log, metrics, and which model answered. `routes`: the app's,
    whose paths name the requests in the metrics (any other path is "other": no request can grow the labels)."""

    def __init__(
        self, app: ASGIApp, metrics: ServiceMetrics, model: str, routes: list, access_log: bool = True
    ) -> None:
        self.app, self.metrics, self.access_log, self.routes = app, metrics, access_log, routes
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
            path = self.label(scope)
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

    def label(self, scope: Scope) -> str:
        """The path of the route that answered (a mount's prefix), or of the route a refusal in front of it spared."""
        if route := getattr(scope.get("route"), "path", None):
            return route
        return scope["path"] if scope["path"] in {getattr(route, "path", None) for route in self.routes} else "other"
