"""The HTTP app around LitServe's: the page's routes, every error in one shape, the API's schema, /metrics.

LitServe builds a FastAPI app with POST /predict, GET /health and GET /info. Here it gets the
draw-a-digit page at / (GET and HEAD, in place of LitServe's "litserve running"), its files under
/web/, the lab's routes under /lab (`mnist_ann.serve.lab`), GET /metrics, `{"error": ...}` for the
framework's own refusals too (405, 404, ...), and an
OpenAPI schema that describes POST /predict's bodies. FastAPI's /docs and /redoc pages are left out:
they load their scripts from a CDN, which the page's Content-Security-Policy (and an offline
machine) refuses.
"""

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import make_asgi_app
from starlette.exceptions import HTTPException

from mnist_ann.serve.lab import Lab, add_lab
from mnist_ann.serve.middleware import ServiceMetrics

WEB = Path(str(files("mnist_ann.serve") / "web"))
LEFT_OUT = ("/docs", "/docs/oauth2-redirect", "/redoc", "/")  # ("/": LitServe's, replaced by the page)

ERROR = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
PREDICT_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "image": {"type": "string", "description": "base64 of a picture file (a data: URL too)"},
                    "explain": {"type": "boolean", "default": False},
                },
                "required": ["image"],
            }
        },
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}, "explain": {"type": "string"}},
                "required": ["file"],
            }
        },
    },
}
ANSWER = {
    "type": "object",
    "properties": {
        "class": {"type": "integer"},
        "name": {"type": "string"},
        "classes": {"type": "array", "items": {"type": "string"}},
        "probabilities": {"type": "array", "items": {"type": "number"}},
        "value": {"type": "number", "description": "regression only, instead of probabilities"},
        "input": {"type": "array", "description": "with explain: the prepared 28x28 input, 0-255"},
        "layers": {"type": "array", "description": "with explain: each layer's outputs"},
        "attribution": {"type": "array", "description": "with explain: each pixel's push toward the class"},
    },
}


def page() -> FileResponse:
    return FileResponse(WEB / "index.html")


async def error_answer(request, error: HTTPException) -> JSONResponse:
    return JSONResponse({"error": str(error.detail)}, status_code=error.status_code, headers=error.headers)


async def invalid_request(request, error: RequestValidationError) -> JSONResponse:
    return JSONResponse({"error": f"invalid request: {error.errors()[:1]}"}, status_code=422)


def complete(app: FastAPI, metrics: ServiceMetrics, lab: Lab) -> None:
    """LitServe's app with the page, the lab, the error shape, the schema and /metrics (see the module's docstring)."""
    app.router.routes[:] = [route for route in app.router.routes if getattr(route, "path", None) not in LEFT_OUT]
    app.docs_url = app.redoc_url = None
    app.add_api_route("/", page, methods=["GET", "HEAD"], include_in_schema=False)
    app.mount("/web", StaticFiles(directory=WEB), name="web")
    app.mount("/metrics", make_asgi_app(registry=metrics.registry), name="metrics")
    add_lab(app, lab)
    app.add_exception_handler(HTTPException, error_answer)
    app.add_exception_handler(RequestValidationError, invalid_request)

    def schema() -> dict:
        if app.openapi_schema is None:
            document = get_openapi(title="mnist-ann", version="1", routes=app.routes)
            predict = document["paths"]["/predict"]["post"]
            predict["requestBody"] = PREDICT_BODY
            predict["responses"] = {
                "200": {"description": "the prediction", "content": {"application/json": {"schema": ANSWER}}},
                "4XX": {
                    "description": "a request no prediction can come of",
                    "content": {"application/json": {"schema": ERROR}},
                },
            }
            predict.pop("parameters", None)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = schema
