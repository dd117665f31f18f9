"""`mnist-ann serve`: a trained checkpoint as an HTTP prediction service on LitServe, with a page to draw on.

    POST /predict   {"image": "<base64 of a PNG, JPEG, ...>", "explain": false}, or a file upload
                    (multipart form, field `file`); the answer is the predicted class, its name, every
                    class's probability (the value, for regression) and, with "explain", what the
                    network saw: the prepared 28x28 input, each layer's activations, and how much
                    each pixel pushed it toward the predicted class (`mnist_ann.explain`).
    GET  /          the draw-a-digit page (mnist_ann/serve/web/: index.html, its stylesheet and modules)
    GET  /health    LitServe's health check: "ok" once a worker is ready

Pictures go through the very preparation `predict` gives files (`mnist_ann.images`). Requests pass
two places, each answering what it can with `{"error": ...}` and a 4xx status: the guards and middlewares
(`mnist_ann.serve.app`), in the HTTP process, for the HTTP-level mistakes (host, size, syntax, fields), and
`DigitAPI` in the inference workers for the image itself (`mnist_ann.serve.worker`).

Every process the service starts ends with its main process, however that ends (`mnist_ann.serve.lifetime`;
the lab's job through its lifeline, `mnist_ann.serve.jobs`).
"""

import multiprocessing
import secrets
from pathlib import Path
from typing import Literal

import litserve as ls
import torch
from jsonargparse.typing import NonNegativeFloat, PositiveInt, restricted_number_type

from mnist_ann.checkpoints import resolve_checkpoint
from mnist_ann.collect import Collection
from mnist_ann.errors import UserError
from mnist_ann.idx import resolve_data_dir
from mnist_ann.model import MNISTClassifier
from mnist_ann.serve.app import Service, complete
from mnist_ann.serve.guard import OwnPage, host_names
from mnist_ann.serve.jobs import Lab, wait_for_job
from mnist_ann.serve.lab import RUNS
from mnist_ann.serve.lifetime import check_port, die_with_this_process, stop_on_signals
from mnist_ann.serve.middleware import ServiceMetrics
from mnist_ann.serve.runs import RunModels
from mnist_ann.serve.worker import DigitAPI

Port = restricted_number_type("Port", int, [(">=", 1024), ("<=", 65535)])
STOP_SECONDS = 2


def serve(
    ckpt_path: str = "best",
    host: Literal["127.0.0.1", "0.0.0.0", "::"] = "127.0.0.1",
    port: Port = 8000,
    workers: PositiveInt = 1,
    max_batch_size: PositiveInt = 1,
    batch_timeout: NonNegativeFloat = 0.0,
    fast_queue: bool = True,
    access_log: bool = True,
    allow_remote_training: bool = False,
    training_key: str | None = None,
    collect_dir: str = "my_digits",
) -> None:
    """Serve a checkpoint over HTTP until Ctrl-C or SIGTERM.

    Args:
        ckpt_path: the checkpoint (loaded with weights_only=True); `best` or `last`: that file of the
            newest run under lightning_logs/.
        host: 127.0.0.1 (this machine only), or 0.0.0.0 / :: (every interface: others can reach it).
        port: the TCP port, 1024-65535.
        workers: inference processes; each loads the model and takes batches of requests.
        max_batch_size: requests a worker answers with one forward pass, at most.
        batch_timeout: seconds a worker waits to fill a batch.
        fast_queue: pass requests to the workers over ZeroMQ rather than multiprocessing queues.
        access_log: one line on stderr per request: client, method, path, status, milliseconds.
        allow_remote_training: let the page's lab train, and keep drawings, when the service listens beyond
            127.0.0.1: any client that reaches it and has the training key can then use this machine's cores
            for hours (on 127.0.0.1 the lab always trains).
        training_key: the key that training and saving from beyond this machine need (`Authorization: Bearer
            KEY`, or the page opened with #key=KEY); unset, a new one is printed at start.
        collect_dir: the folder the page keeps your labelled drawings in (`mnist_ann.collect`); created
            with the first one.
    """
    # The HTTP process, forked from this one, runs torch too (the collection, the measurements): a thread pool
    # this process had started would deadlock there, since a fork copies no threads.
    torch.set_num_threads(1)
    checkpoint = resolve_checkpoint(ckpt_path)
    models = RunModels(RUNS, "cpu")
    # Loaded here too (weights only), so that a checkpoint the model cannot take fails with its message, not in
    # a worker; kept, since the runs' models come and go from the cache.
    served = models.load(checkpoint)
    check_port(host, port)
    stopping = multiprocessing.get_context("spawn").Event()
    local = host == "127.0.0.1"
    if not local and allow_remote_training and training_key is None:
        training_key = secrets.token_urlsafe(16)
    server = service(
        checkpoint,
        models,
        served,
        host=host,
        port=port,
        workers=workers,
        max_batch_size=max_batch_size,
        batch_timeout=batch_timeout,
        fast_queue=fast_queue,
        access_log=access_log,
        training_allowed=local or allow_remote_training,
        training_key=training_key,
        collect_dir=collect_dir,
        stopping=stopping,
    )
    # Open connections get this long to finish when the server stops (LitServe's default, 30 s, made a stop
    # under load take that long); a prediction takes milliseconds.
    server.uvicorn_graceful_timeout = STOP_SECONDS
    server.monitor_internal = 0.5  # seconds between LitServe's checks that its workers live (2 by default)

    address = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    print(f"serving {checkpoint} with {workers} worker(s): the page {address}/, the API POST {address}/predict")
    if training_key is not None:
        print(f"training and saving from the page need its key: open {address}/#key={training_key}")
    stop_on_signals(stopping)
    die_with_this_process()
    try:
        # One HTTP process whatever the workers (LitServe starts one per worker by default): the lab's job, the
        # collection's writes and the metrics then live in one process, and one job runs at a time.
        server.run(host=host, port=port, num_api_servers=1, generate_client_file=False, log_level="warning")
    except RuntimeError as error:  # LitServe: "One or more workers failed to start"
        raise UserError(f"the server did not start: {error}") from None
    finally:
        wait_for_job(RUNS)


def service(
    checkpoint: Path,
    models: RunModels,
    served: tuple[MNISTClassifier, dict],
    host: str = "127.0.0.1",
    port: int | None = None,
    workers: int = 1,
    max_batch_size: int = 1,
    batch_timeout: float = 0.0,
    fast_queue: bool = True,
    access_log: bool = True,
    training_allowed: bool = True,
    training_key: str | None = None,
    collect_dir: str = "my_digits",
    stopping=None,
) -> ls.LitServer:
    """The LitServer of `serve`, its app complete (`mnist_ann.serve.app`), not yet started: `served`, the model
    `models.load` made of `checkpoint` and its description; `stopping`: the event its main process sets when it
    stops."""
    api = DigitAPI(str(checkpoint), str(RUNS), max_batch_size, batch_timeout, stopping)
    server = ls.LitServer(
        api,
        accelerator="auto",
        workers_per_device=workers,
        fast_queue=fast_queue,
        model_metadata=served[1],
        restart_workers=True,  # a worker that dies is started again; /health is not "ok" until it is ready
    )
    parts = Service(
        lab=Lab(RUNS),
        collection=Collection(collect_dir),
        models=models,
        served=served,
        metrics=ServiceMetrics(),
        data_dir=resolve_data_dir(None),
        own_page=OwnPage(allowed=training_allowed, key=training_key),
        host_names=host_names(host),
        port=port,
        model_name=str(checkpoint),
        access_log=access_log,
        stopping=stopping,
    )
    complete(server.app, parts)
    return server
