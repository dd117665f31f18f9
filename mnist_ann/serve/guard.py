"""Whom the service answers, and what a request may cost it: the guards in front of every route.

The service runs on the learner's own machine and holds what matters there (trainings, the drawings).
Any page the learner's browser visits can send it requests, so it trusts only its own page:

- `TrustedHosts` (every request): the `Host` must be a name of this service (127.0.0.1, localhost, [::1],
  the `--host` given), with its port. A page of another site whose name was made to point at 127.0.0.1
  (DNS rebinding) sends its own name, and is refused before anything is read or run.
- `BodyLimit` (every request): a body over the limit is refused from its `Content-Length`, or as soon as
  that much has arrived; no route ever holds more.
- `from_own_page` (each route that changes something): a browser names the page a request comes from
  (`Origin`, `Sec-Fetch-Site`); another page's, a `file://` page's (`Origin: null`) and a cross-site one
  are refused. Only `application/json` is taken, a type another origin's page can send only after
  asking (a CORS preflight, which this service never grants), so that no HTML form can reach these
  routes. Requests without an `Origin` (curl, scripts on the machine) are no browser's, and are taken.
  Beyond this machine, with `--allow_remote_training`, they also need the service's training key.
"""

import json
import secrets

from fastapi import HTTPException, Request
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

LOCAL_NAMES = ("127.0.0.1", "localhost", "[::1]")
MAX_BODY_BYTES = 10 * 1024 * 1024
# A body a little over the limit is read to its end, unkept, before the refusal, so that a client that sends the
# whole body before it reads the answer (urllib, requests) gets the 413 rather than a reset connection; a larger
# one is refused at once.
DRAINED_BYTES = 4 * MAX_BODY_BYTES
OTHER_PAGE = "refused: this service takes changes only from its own page (the request came from {})"


async def refuse(send: Send, status: int, message: str, close: bool = False) -> None:
    """An `{"error": ...}` answer sent straight from a middleware, before any route runs; `close`: the connection
    is closed after it (what is left of a refused body is never read)."""
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(b"connection", b"close")] if close else []
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def host_names(host: str) -> tuple[str, ...]:
    """The names the service answers to when it listens on `host`: this machine's, and that address."""
    if host in ("0.0.0.0", "::"):  # every interface: any address of the machine, as a client reaches it
        return ("*",)
    return (*LOCAL_NAMES, f"[{host}]" if ":" in host else host)


class TrustedHosts:
    """ASGI middleware: answers only requests whose `Host` names this service (see the module's docstring)."""

    def __init__(self, app: ASGIApp, names: tuple[str, ...], port: int | None) -> None:
        self.app, self.names, self.port = app, names, port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        host = Headers(scope=scope).get("host", "") if scope["type"] in ("http", "websocket") else None
        if host is not None and not self.trusted(host):
            shown = "".join(c if c.isprintable() else "?" for c in host)[:80]
            await refuse(send, 400, f"refused: this service does not answer for the host {shown!r}")
            return
        await self.app(scope, receive, send)

    def trusted(self, host: str) -> bool:
        name, _, port = host.rpartition(":") if not host.endswith("]") else (host, "", "")
        if not name:  # no port given
            name, port = host, ""
        if port and self.port is not None and port != str(self.port):
            return False
        return "*" in self.names or name.lower() in self.names


class BodyTooLarge(HTTPException):
    def __init__(self, size: str, limit: int) -> None:
        super().__init__(413, f"request body of {size} bytes, over the {limit:,} accepted")


class BodyLimit:
    """ASGI middleware: no request body over `max_bytes` reaches a route, nor is held by the service."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            if int(declared) <= DRAINED_BYTES:
                await drain(receive, 0)
            await refuse(send, 413, BodyTooLarge(f"{int(declared):,}", self.max_bytes).detail, close=True)
            return
        received, started = 0, False

        async def counted() -> dict:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                if message.get("more_body", False):
                    await drain(receive, received)
                raise BodyTooLarge(f"over {self.max_bytes:,}", self.max_bytes)
            return message

        async def watched(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge as error:  # read by a middleware (a route's is answered by the exception handler)
            if not started:
                await refuse(send, error.status_code, error.detail, close=True)


async def drain(receive: Receive, received: int) -> None:
    """Read the rest of a refused body, keeping none of it, up to `DRAINED_BYTES` in all."""
    while received <= DRAINED_BYTES:
        message = await receive()
        received += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


TRAINING_OFF = (
    "training from the page is off: this service listens beyond 127.0.0.1; "
    "start it with --allow_remote_training true to let every client that reaches it train"
)


class OwnPage:
    """The FastAPI dependency of every route that changes something (see the module's docstring): `allowed`,
    whether this service changes anything at all; `key`, when set, the training key that requests must also
    carry (`Authorization: Bearer <key>`)."""

    def __init__(self, allowed: bool = True, key: str | None = None) -> None:
        self.allowed, self.key = allowed, key

    def __call__(self, request: Request) -> None:
        if not self.allowed:
            raise HTTPException(403, TRAINING_OFF)
        origin, site = request.headers.get("origin"), request.headers.get("sec-fetch-site")
        own = f"{request.url.scheme}://{request.headers.get('host', '')}"
        if origin is not None and origin != own:
            raise HTTPException(403, OTHER_PAGE.format(f"the page {origin[:80]!r}"))
        if site is not None and site not in ("same-origin", "none"):
            raise HTTPException(403, OTHER_PAGE.format(f"a {site[:20]} page"))
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            raise HTTPException(415, f"send JSON with Content-Type: application/json, not {media_type or 'none'!r}")
        if self.key is not None:
            given = request.headers.get("authorization", "")
            if not secrets.compare_digest(given.encode(), f"Bearer {self.key}".encode()):
                raise HTTPException(
                    401,
                    "training here needs the key the service printed at start: "
                    "open the page with #key=<key>, or send Authorization: Bearer <key>",
                    headers={"WWW-Authenticate": "Bearer"},
                )
