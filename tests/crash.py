"""Real failures for the reliability tests, at a chosen step of a real run (added with `--trainer.callbacks+=`)."""

import os
import signal

from lightning.pytorch.callbacks import Callback


class SendSignal(Callback):
    """The training process sends itself `signal_name` (SIGKILL, SIGTERM, SIGINT) just before step `at_step`."""

    def __init__(self, at_step: int, signal_name: str = "SIGKILL") -> None:
        self.at_step, self.signal = at_step, signal.Signals[signal_name]

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.at_step:
            os.kill(os.getpid(), self.signal)
