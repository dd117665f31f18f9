"""The service's processes, from its start to its end: the port checked before anything says it is served, a
stop on SIGTERM or SIGINT in order, and every process it starts ending with it, however it ends.

`mnist-ann serve` runs a main process, which forks LitServe's HTTP process and manager and spawns the
inference workers (`mnist_ann.serve.server`).
"""

import contextlib
import ctypes
import os
import signal
import socket
import sys

import torch

from mnist_ann.errors import UserError


def check_port(host: str, port: int) -> None:
    """Refuse a port another program listens on, before anything says it is served."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will: TIME_WAIT is no obstacle
        try:
            probe.bind((host, port))
        except OSError as error:
            raise UserError(f"--port {port}: cannot listen on {host} ({error.strerror}); choose another port") from None


def stop_on_signals(stopping) -> None:
    """SIGTERM and SIGINT stop the server as Ctrl-C does: LitServe then stops its HTTP servers and workers in
    order (SIGINT too, since a process started in the background may have inherited it ignored); `stopping`
    (an event the workers see) is set first.

    LitServe's manager process is forked from this one and inherits the handler: there a signal is left to
    this process, which stops it last, since a manager gone first (a signal to the whole process group, as
    systemd and a terminal's Ctrl-C send) broke LitServe's worker monitor with a traceback. The HTTP servers
    install uvicorn's own handlers."""
    main = os.getpid()

    def stop(signum, frame) -> None:
        if os.getpid() == main:
            stopping.set()
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


_forking = 0  # the pid of the process that forks, recorded before each fork


def die_with_this_process() -> None:
    """Every process this one forks from here on (LitServe's HTTP process and manager) is killed when this one
    ends, however it ends: a `kill -9` of the service would otherwise leave them holding its port."""

    def before() -> None:
        global _forking
        _forking = os.getpid()

    os.register_at_fork(before=before, after_in_child=lambda: die_with_parent(_forking))


def die_with_parent(parent: int) -> None:
    """This process gets SIGKILL when `parent` ends (Linux's PR_SET_PDEATHSIG; elsewhere nothing happens); if it
    has ended already, this process ends now."""
    if not sys.platform.startswith("linux"):
        return
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


def torch_ready(lifespan):
    """The HTTP process's lifespan, torch's thread pool made first. That process is forked from the main one,
    which used torch, and makes the pool anew at its first parallel operation: request threads racing to make
    it fail ("Invalid thread pool!") or hang. It is made once, here, before any request."""

    @contextlib.asynccontextmanager
    async def ready(app):
        torch.set_num_threads(torch.get_num_threads())
        async with lifespan(app) as state:
            yield state

    return ready
