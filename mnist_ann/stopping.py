"""Stopping a multi-process `fit` on a signal: every process at the same step.

Lightning stops a run on SIGTERM at the end of the step in progress, and `save_on_exception` saves
that step. Under DDP its handler broadcasts from inside the signal handler, a collective that can
meet another one in flight, and each process then stops at its own step: the processes hung or
crashed with a collective mismatch. Here a signal only sets a flag; after every training step the
processes agree on it (one `max` reduction), and all of them stop at the same step through
Lightning's own path. A signal to one process alone stops them all the same way.

A run the page's lab started also stops so when the service is gone (`watch_lifeline`), and a multi-process
command that has finished leaves its process group in order (`end_process_group`).
"""

import os
import signal
import threading

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback


class StopTogether(Callback):
    """For runs of several processes; the command line adds it to `fit` (a process of its own is not needed)."""

    def __init__(self) -> None:
        self.received = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Installed after Lightning's own handler (it registers its handlers as the run starts), in its place.
        signal.signal(signal.SIGTERM, self.notice)

    def notice(self, signum, frame) -> None:
        self.received = True

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        flag = torch.tensor(float(self.received), device=pl_module.device)
        if trainer.strategy.reduce(flag, reduce_op="max").item():
            # What Lightning's handler would have set: its loop then stops after this step, on every process.
            trainer._signal_connector.received_sigterm = True


LIFELINE = "MNIST_ANN_LIFELINE"  # names the pipe a lab job holds (`mnist_ann.serve.jobs`)


def watch_lifeline() -> None:
    """In a job of the page's lab: once the service that started it is gone, whatever ended it, stop as SIGTERM
    stops the command (its step saved). The service holds the pipe's other end; its end closes the pipe."""
    if (held := os.environ.pop(LIFELINE, None)) is None:
        return

    def watch() -> None:
        while os.read(int(held), 1):  # nothing is ever written: read returns b"" when the pipe closes
            pass
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="lifeline", daemon=True).start()


def end_process_group() -> None:
    """After a multi-process command has finished well, each process leaves the process group. Lightning ends only
    NCCL's at exit: gloo's threads left to the interpreter's exit could abort a process that had done its work
    ("terminate called without an active exception", pytorch/pytorch#190489)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
