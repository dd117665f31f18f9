"""Real failures for the reliability tests, at a chosen step of a real run (added with `--trainer.callbacks+=`)."""

import os
import resource
import signal

from lightning.pytorch.callbacks import Callback


class SendSignal(Callback):
    """The training process sends itself `signal_name` (SIGKILL, SIGTERM, SIGINT) just before step `at_step`.
    Under DDP: only the process of global rank `rank` (None: each), and with `group`, to every process of its
    process group, as `timeout` or systemd do."""

    def __init__(
        self, at_step: int, signal_name: str = "SIGKILL", rank: int | None = None, group: bool = False
    ) -> None:
        self.at_step, self.signal, self.rank, self.group = at_step, signal.Signals[signal_name], rank, group

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.at_step and self.rank in (None, trainer.global_rank):
            if self.group:
                os.killpg(os.getpgid(0), self.signal)
            else:
                os.kill(os.getpid(), self.signal)


class FileSizeLimit(Callback):
    """From epoch `from_epoch` on, no file of this process may grow beyond `max_bytes`: the operating system
    refuses the write (EFBIG), as a full disk refuses it with ENOSPC. SIGXFSZ, which would kill the process
    instead, is ignored, as a process running into a real limit would see it."""

    def __init__(self, from_epoch: int = 1, max_bytes: int = 100_000) -> None:
        self.from_epoch, self.max_bytes = from_epoch, max_bytes

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.from_epoch:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (self.max_bytes, resource.RLIM_INFINITY))


class FillDisk(Callback):
    """From epoch `from_epoch` on, the disk holding the run's folder has `free_bytes` left: a file fills the rest."""

    def __init__(self, from_epoch: int = 1, free_bytes: int = 100_000) -> None:
        self.from_epoch, self.free_bytes = from_epoch, free_bytes

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.from_epoch:
            disk = os.statvfs(trainer.log_dir)
            with open(os.path.join(trainer.log_dir, "filler"), "wb") as filler:
                filler.write(bytes(max(0, disk.f_bavail * disk.f_frsize - self.free_bytes)))
