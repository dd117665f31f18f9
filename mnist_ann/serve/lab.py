"""The page's lab: start a real `mnist-ann fit` from the page, watch it learn, stop it, test a run.

    GET  /lab            the limits, the defaults, presets and choices, the datasets present, the job now
    POST /lab/fit        `FitSettings` (mnist_ann.serve.settings): {"hidden_sizes": [256, 128], "lr": 0.01, ...}
    POST /lab/resume     {"run": "version_3"}: `fit` again from that run's last.ckpt
    POST /lab/test       {"run": "version_3"}: `test` of that run's best.ckpt
    POST /lab/stop       the job in progress stops as SIGTERM stops it (its step saved to last.ckpt)
    GET  /lab/runs       every run under lightning_logs/ (`mnist_ann.serve.runs`)
    GET  /lab/events     server-sent events: the job's state, and the watched run's `live.jsonl` as it grows

Each job is the command line itself, in a process of its own (`mnist_ann.serve.jobs`); one at a time, since
training takes every core. Every setting is checked by its Pydantic model, which also describes it in
/openapi.json; the routes that start or stop something answer only the service's own page (`OwnPage`).
"""

import asyncio
import gzip
import json
import struct
from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import Field

from mnist_ann.errors import DataError
from mnist_ann.idx import ensure_files, idx_path, raw_folder
from mnist_ann.live import EVENTS
from mnist_ann.serve.guard import OwnPage
from mnist_ann.serve.jobs import Lab
from mnist_ann.serve.runs import RUN, list_runs
from mnist_ann.serve.settings import (
    ADVERSARIAL,
    AUGMENTATIONS,
    DATASETS,
    LIMITS,
    OPTIMIZERS,
    PRESETS,
    SCHEDULES,
    FitSettings,
    LabRequest,
    preset,
)

RUNS = Path("lightning_logs")  # the recipe's logger folder, under the folder the service runs in


class RunChoice(LabRequest):
    run: str = Field(pattern=f"^{RUN.pattern}$", description="a run's folder under lightning_logs/: version_N")


def run_folder(root: Path, choice: RunChoice) -> Path:
    """The run a request names, which must be there."""
    if not (root / choice.run).is_dir():
        raise HTTPException(404, f"run: no run {choice.run!r} under {root}/")
    return root / choice.run


def time_limit() -> str:
    """`--trainer.max_time` for every job: Lightning stops the run after that long, as at its last epoch."""
    return f"--trainer.max_time=00:{LIMITS['hours']:02d}:00:00"


def training_images(data_dir: Path, dataset: str) -> int:
    """How many training images the dataset's files hold (their IDX header says)."""
    path = idx_path(raw_folder(data_dir, dataset), "train-images-idx3-ubyte")
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as file:
        return struct.unpack(">I", file.read(8)[4:])[0]


def available_datasets(data_dir: Path) -> list[str]:
    present = []
    for dataset in DATASETS:
        try:
            ensure_files(data_dir, download=False, dataset=dataset)
            present.append(dataset)
        except DataError:
            pass
    return present


def lab_router(lab: Lab, own_page: OwnPage, data_dir: Path, drawings: str | None = None, stopping=None) -> APIRouter:
    """The lab's routes (see the module's docstring); `drawings`, the tag of a test on the page's collection.
    Starting a job happens on the event loop's thread, a short fork and exec; what reads files runs in the
    thread pool."""
    router = APIRouter(prefix="/lab", tags=["lab"])
    changes = [Depends(own_page)]

    @router.get("")
    def about() -> dict:
        """The limits, the defaults, the presets, the choices (with the datasets present) and the job now."""
        return {
            "allowed": own_page.allowed,
            "limits": LIMITS,
            "defaults": FitSettings().model_dump(),
            "presets": {name: preset(name).model_dump() for name in PRESETS},
            "choices": {
                "optimizer": list(OPTIMIZERS),
                "schedule": list(SCHEDULES),
                "augmentation": list(AUGMENTATIONS),
                "adversarial": list(ADVERSARIAL),
                "dataset": available_datasets(data_dir),
            },
            "job": lab.state(),
        }

    @router.post("/fit", dependencies=changes)
    async def fit(settings: FitSettings | None = None) -> dict:
        """Start `fit` with these settings (the recipe's for any not given)."""
        settings = settings or FitSettings()
        if settings.dataset not in await run_in_threadpool(available_datasets, data_dir):
            raise HTTPException(422, f"dataset: {settings.dataset}'s files are not in {data_dir}")
        settings.check_steps(await run_in_threadpool(training_images, data_dir, settings.dataset))
        return lab.start("fit", [*settings.command_line(), time_limit()])

    @router.post("/resume", dependencies=changes)
    async def resume(choice: RunChoice) -> dict:
        """`fit` again from the run's last.ckpt."""
        run = run_folder(lab.root, choice)
        if not (last := run / "checkpoints" / "last.ckpt").is_file():
            raise HTTPException(409, f"{run.name} has no last.ckpt to resume from")
        return lab.start("fit", ["--config", str(run / "config.yaml"), "--ckpt_path", str(last), time_limit()])

    @router.post("/test", dependencies=changes)
    async def test(choice: RunChoice) -> dict:
        """`test` of the run's best.ckpt: its figures land in the run's events and the runs table."""
        run = run_folder(lab.root, choice)
        if not (best := run / "checkpoints" / "best.ckpt").is_file():
            raise HTTPException(409, f"{run.name} has no best.ckpt to test")
        return lab.start("test", ["--config", str(run / "config.yaml"), "--ckpt_path", str(best)], run)

    @router.post("/stop", dependencies=changes)
    async def stop() -> dict:
        """SIGTERM to the job: its step is saved."""
        return lab.stop()

    @router.get("/runs")
    def runs() -> list:
        """Every run, newest first, with its settings and scores."""
        return list_runs(lab.root, drawings)

    @router.get("/events", response_class=StreamingResponse)
    async def events(request: Request) -> StreamingResponse:
        """Server-sent events: `job` (its state) and `live` (the lines of the watched run's live.jsonl)."""
        return watch(lab, request, stopping)

    return router


def watch(lab: Lab, request: Request, stopping=None) -> StreamingResponse:
    """Server-sent events: `job` when the job's state changes, `live` for each line of the watched run's
    live.jsonl (from its beginning, so that a page that connects late draws the whole curve). The stream ends
    when the service stops (`stopping` set): the server would otherwise wait its graceful timeout for it."""

    def ending() -> bool:
        return stopping is not None and stopping.is_set()

    async def stream():
        sent, run, offset, partial, quiet = None, None, 0, "", 0.0
        while not ending() and not await request.is_disconnected():
            state = lab.state()
            if state != sent:
                sent = state
                yield f"event: job\ndata: {json.dumps(state)}\n\n"
            watched = lab.job.watched() if lab.job else None
            if watched != run:
                run, offset, partial = watched, 0, ""
            if run is not None and (run / EVENTS).is_file():
                with open(run / EVENTS) as file:
                    file.seek(offset)
                    partial += file.read()
                    offset = file.tell()
                *lines, partial = partial.split("\n")  # a line being written waits for its end
                for line in lines:
                    yield f"event: live\ndata: {line}\n\n"
                    quiet = 0.0
            quiet += 0.25
            if quiet >= 15:  # a comment now and then keeps proxies from closing a quiet stream
                quiet = 0.0
                yield ": waiting\n\n"
            await asyncio.sleep(0.25)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
