"""A real crash for resume tests: the training process kills itself with SIGKILL at a chosen step."""

import os
import signal

from lightning.pytorch.callbacks import Callback


class HardKill(Callback):
    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.at_step:  # before the step runs: nothing of it may be saved
            os.kill(os.getpid(), signal.SIGKILL)
