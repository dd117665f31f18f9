"""Errors a user can cause and fix. The command line prints their message alone, without a traceback."""

import contextlib
import errno
import os
import signal
import sys
import threading
from collections.abc import Iterator


class UserError(Exception):
    """Base class: the message says what is wrong and what to do about it."""


class ConfigError(UserError, ValueError):
    """A setting has a value that cannot work; the message names the option."""


class DataError(UserError):
    """A data file is missing, malformed or inconsistent; the message names the file."""


class MNISTNotFoundError(DataError, FileNotFoundError):
    """The MNIST files are neither present nor downloadable."""


class CheckpointError(UserError):
    """A checkpoint is missing, unreadable, or not safe to load."""


class TrainingDivergedError(UserError, RuntimeError):
    """The loss or the weights stopped being finite numbers."""


class DiskFullError(UserError):
    """The disk (or the file-size limit) ran out while the run was writing."""


class Interrupted(Exception):
    """The run was stopped by a signal; the message says what was saved and how to go on."""

    def __init__(self, message: str, exit_status: int) -> None:
        super().__init__(message)
        self.exit_status = exit_status


FULL_DISK_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
NO_PERMISSION = {errno.EACCES, errno.EPERM, errno.EROFS}


def full_disk_cause(error: BaseException) -> OSError | None:
    """The out-of-space OSError behind an error, however deeply libraries wrapped it; None if there is none."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in FULL_DISK_ERRNOS:
            return error
        error = error.__cause__ or error.__context__
    return None


@contextlib.contextmanager
def reported() -> Iterator[None]:
    """Around a command: what the user can fix exits with its message alone (`error: ...`), a run stopped by
    a signal with what it saved; anything else is a bug, and keeps its traceback."""
    main_thread = threading.current_thread() is threading.main_thread()
    # Lightning handles SIGTERM while it runs a trainer; before (loading, starting processes) and after, it says so.
    previous = signal.signal(signal.SIGTERM, stopped_outside_training) if main_thread else None
    try:
        yield
    except UserError as error:
        close_progress_bars()
        sys.exit(f"error: {error}")
    except OSError as error:
        close_progress_bars()
        if cause := full_disk_cause(error):
            sys.exit(f"error: no space left writing {cause.filename or 'a file'} ({cause.strerror})")
        if error.errno in NO_PERMISSION and error.filename:  # a folder the command must write in, e.g. lightning_logs
            sys.exit(f"error: {error.filename}: {error.strerror}")
        if error.errno in (errno.EEXIST, errno.ENOTDIR) and error.filename:  # a file where that folder should be
            sys.exit(f"error: {error.filename}: a file stands where the command needs a folder")
        raise
    except Interrupted as interruption:  # what was saved, and the command that goes on from there
        close_progress_bars()
        if str(interruption):  # (said once, by the first process)
            print(interruption, file=sys.stderr)
        sys.exit(interruption.exit_status)
    except KeyboardInterrupt:  # Ctrl-C outside training: nothing to save
        close_progress_bars()
        sys.exit(128 + signal.SIGINT)
    except Exception as error:  # (Lightning is imported here: this guards the imports too)
        from lightning.fabric.utilities.exceptions import MisconfigurationException

        if not isinstance(error, MisconfigurationException):
            raise
        close_progress_bars()
        sys.exit(f"error: {error}")
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def stopped_outside_training(signum, frame) -> None:
    if signal.getsignal(signal.SIGTERM) is not stopped_outside_training:
        return  # called by Lightning's handler, which chains the one it found: it stops the run its own way
    # Every process says it: under DDP the first may be waiting for the others, in code no signal interrupts.
    rank = f"[rank {os.environ['LOCAL_RANK']}] " if "LOCAL_RANK" in os.environ else ""
    message = "stopped by SIGTERM outside training (starting, loading, or writing results): no step was cut short"
    raise Interrupted(rank + message, 128 + signal.SIGTERM)


def close_progress_bars() -> None:
    """Close the bars a stopped run leaves open, so that the message comes last (tqdm has no public list
    of open bars, and Lightning does not close them when a run stops with an exception)."""
    from tqdm import tqdm

    for bar in list(tqdm._instances):
        bar.leave = False
        bar.close()
