"""The HTTP app around LitServe's: the guards, the page, the lab's and the collection's routers, every answer
in one shape, the API's schema, /metrics.

LitServe builds a FastAPI app with POST /predict, GET /health and GET /info. Here it gets the guards of
`mnist_ann.serve.guard` and the middlewares of `mnist_ann.serve.middleware`, the draw-a-digit page at / (in
place of LitServe's "litserve running"), its files under /web/, the lab's routes (`mnist_ann.serve.lab`) and
the collection's (`mnist_ann.serve.handwriting`), GET /metrics, and one exception handler for each kind of
refusal: every one is `{"error": ...}` with its status, and an unexpected error is a 500 that says nothing of
the code. The OpenAPI schema is FastAPI's, from the routes' Pydantic models; /predict's bodies and answer come
from `PredictRequest` and `Answer`. FastAPI's /docs and /redoc pages are left out: they load their scripts
from a CDN, which the page's Content-Security-Policy (and an offline machine) refuses.
"""

import logging
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from mnist_ann.collect import Collection
from mnist_ann.serve.backward import backward_router
from mnist_ann.serve.guard import BodyLimit, OwnPage, TrustedHosts
from mnist_ann.serve.handwriting import handwriting_router
from mnist_ann.serve.jobs import Lab
from mnist_ann.serve.lab import lab_router
from mnist_ann.serve.lifetime import torch_ready
from mnist_ann.serve.middleware import (
    PredictRequest,
    RequestGate,
    SecurityHeaders,
    ServiceLog,
    ServiceMetrics,
    one_message,
)
from mnist_ann.serve.runs import RunModels, drawings_tag

WEB = Path(str(files("mnist_ann.serve") / "web"))
LEFT_OUT = ("/docs", "/docs/oauth2-redirect", "/redoc", "/")  # ("/": LitServe's, replaced by the page)
log = logging.getLogger(__name__)


class Answer(BaseModel):
    """POST /predict's answer."""

    class_: int = Field(alias="class")
    name: str
    classes: list[str]
    probabilities: list[float] | None = Field(None, description="each class's; regression answers `value` instead")
    value: float | None = Field(None, description="regression only")
    model: dict = Field(description="the model that answered: its checkpoint, run, layers, step")
    input: list[list[int]] | None = Field(None, description="with explain: the prepared 28x28 input, 0-255")
    layers: list[list[float]] | None = Field(None, description="with explain: each layer's outputs")
    target: int | None = Field(None, description="with explain: the class the attribution is toward")
    attribution: list[list[float]] | None = Field(None, description="with explain: each pixel's push toward it")


class Refusal(BaseModel):
    error: str


@dataclass
class Service:
    """What the routes serve: the lab's jobs, the collection, the runs' models and the served one, the metrics."""

    lab: Lab
    collection: Collection
    models: RunModels
    served: tuple  # the served checkpoint's (model, description)
    metrics: ServiceMetrics
    data_dir: Path
    own_page: OwnPage
    host_names: tuple[str, ...]
    port: int | None
    model_name: str = ""
    access_log: bool = True
    stopping: object = None  # the event the main process sets when it stops: an open event stream then ends


def page() -> FileResponse:
    return FileResponse(WEB / "index.html")


async def refused(request: Request, error: HTTPException) -> JSONResponse:
    return JSONResponse({"error": str(error.detail)}, status_code=error.status_code, headers=error.headers)


async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
    status, message = one_message(error.errors())
    return JSONResponse({"error": message}, status_code=status)


async def unexpected(request: Request, error: Exception) -> JSONResponse:
    log.exception(f"{request.method} {request.url.path} failed")
    return JSONResponse({"error": "the service failed to answer this request; its log says why"}, status_code=500)


def complete(app: FastAPI, service: Service) -> FastAPI:
    """LitServe's app (or any FastAPI app) with the guards, routes, error shape, schema and /metrics."""
    app.router.routes[:] = [route for route in app.router.routes if getattr(route, "path", None) not in LEFT_OUT]
    app.docs_url = app.redoc_url = None
    app.router.lifespan_context = torch_ready(app.router.lifespan_context)
    app.add_api_route("/", page, methods=["GET", "HEAD"], include_in_schema=False)
    app.mount("/web", StaticFiles(directory=WEB), name="web")
    drawings = drawings_tag(service.collection.folder)
    app.include_router(lab_router(service.lab, service.own_page, service.data_dir, drawings, service.stopping))
    app.include_router(backward_router(service.own_page, service.models, service.served, service.data_dir))
    app.include_router(
        handwriting_router(
            service.lab, service.own_page, service.collection, service.models, service.served, service.data_dir
        )
    )

    @app.get("/metrics", response_class=Response, tags=["service"])
    def metrics() -> Response:
        """Prometheus: requests by method, path and status, and a latency histogram."""
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_exception_handler(HTTPException, refused)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(Exception, unexpected)
    # Starlette runs the last added first: the log sees every answer, the guards' refusals included.
    app.add_middleware(RequestGate)
    app.add_middleware(BodyLimit)
    app.add_middleware(TrustedHosts, names=service.host_names, port=service.port)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(
        ServiceLog, metrics=service.metrics, model=service.model_name, routes=app.routes, access_log=service.access_log
    )
    app.openapi = lambda: schema(app)
    return app


def schema(app: FastAPI) -> dict:
    """FastAPI's schema of the routes, with /predict's bodies and answers from their models (LitServe's route
    takes its body untyped)."""
    if app.openapi_schema is None:
        document = get_openapi(title="mnist-ann", version="1", routes=app.routes)
        components = document.setdefault("components", {}).setdefault("schemas", {})
        for model in (PredictRequest, Answer, Refusal):
            components[model.__name__] = model.model_json_schema(by_alias=True)
        upload = {
            "type": "object",
            "properties": {
                "file": {"type": "string", "format": "binary"},
                **{name: {"type": "string"} for name in PredictRequest.model_fields if name != "image"},
            },
            "required": ["file"],
        }
        predict = document["paths"].get("/predict", {}).get("post", {})
        predict.pop("parameters", None)
        predict["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}},
                "multipart/form-data": {"schema": upload},
            },
        }
        refusal = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Refusal"}}}}
        predict["responses"] = {
            "200": {
                "description": "the prediction",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Answer"}}},
            },
            "4XX": {"description": "a request no prediction can come of", **refusal},
        }
        for path, operations in document["paths"].items():
            for operation in operations.values():
                operation.setdefault("responses", {}).setdefault(
                    "4XX", {"description": f"refused: {path} cannot do this", **refusal}
                )
        app.openapi_schema = document
    return app.openapi_schema
