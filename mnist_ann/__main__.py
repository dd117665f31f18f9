"""`python -m mnist_ann SUBCOMMAND ...` (also installed as the `mnist-ann` command)."""

import gc
import logging
import signal
import sys
import threading
import warnings

# Importing torch, torchvision and Lightning creates ~400,000 long-lived objects, and Python's cyclic
# garbage collector would rescan them all several times on the way (about half a second per run).
# Start-up leaves little garbage: skip collecting during it, and freeze what it built out of every
# later collection.
gc.disable()
from lightning.fabric.utilities.exceptions import MisconfigurationException  # noqa: E402
from tqdm import tqdm  # noqa: E402

from mnist_ann.cli import MNISTCLI  # noqa: E402
from mnist_ann.errors import Interrupted, UserError, full_disk_cause  # noqa: E402

gc.freeze()
gc.enable()

# Commands that are one function each (mnist_ann/<name>.py: <name>()), beside LightningCLI's subcommands.
FUNCTION_COMMANDS = ("export", "serve")

# Warnings of dependencies that say nothing a user of this command can act on, silenced by message.
DEPENDENCY_NOISE = [
    # Lightning's own use of a torch API that torch deprecated; nothing here calls it.
    (FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated"),
    # The prediction writer names rows from the batches themselves, not from Lightning's batch indices.
    (UserWarning, "Couldn't infer the batch indices fetched from your dataloader"),
]


# Log lines of Lightning that advertise, or that the command's own last line says better: a run stopped
# by a signal reports what it saved and how to resume (Lightning's says SIGTERM even for Ctrl-C).
DEPENDENCY_LOG_NOISE = {
    "lightning.pytorch.utilities.rank_zero": ("💡 Tip", "An SIGTERMException was raised"),
    "lightning.pytorch.trainer.connectors.signal_connector": ("Received SIGTERM", "[rank: 0] Received SIGTERM"),
}


def quiet_dependency_noise() -> None:
    """Applied where the command starts, not on import, so that importing mnist_ann changes nothing."""
    for category, message in DEPENDENCY_NOISE:
        warnings.filterwarnings("ignore", message=message, category=category)
    for logger, prefixes in DEPENDENCY_LOG_NOISE.items():
        logging.getLogger(logger).addFilter(
            lambda record, prefixes=prefixes: not record.getMessage().startswith(prefixes)
        )


def thread_error(args: threading.ExceptHookArgs) -> None:
    """A full disk met by a background thread (TensorBoard's event writer) also reaches the main thread,
    which reports it in one line: the thread's own traceback would only repeat it. Anything else as usual."""
    if not full_disk_cause(args.exc_value):
        threading.__excepthook__(args)


def main() -> None:
    quiet_dependency_noise()
    threading.excepthook = thread_error
    try:
        if sys.argv[1:2] == ["tune"]:  # its own options, then fit's
            from mnist_ann.tune import tune

            tune(sys.argv[2:])
        elif (command := sys.argv[1:2]) and command[0] in FUNCTION_COMMANDS:
            from importlib import import_module

            from jsonargparse import CLI

            module = import_module(f"mnist_ann.{command[0]}")
            CLI(getattr(module, command[0]), args=sys.argv[2:], prog=f"mnist-ann {command[0]}")
        else:
            MNISTCLI()
    except (UserError, MisconfigurationException) as error:  # the user's to fix: the message, no traceback
        close_progress_bars()
        sys.exit(f"error: {error}")
    except OSError as error:
        if not (cause := full_disk_cause(error)):
            raise
        close_progress_bars()
        sys.exit(f"error: no space left writing {cause.filename or 'a file'} ({cause.strerror})")
    except Interrupted as interruption:  # what was saved, and the command that goes on from there
        close_progress_bars()
        if str(interruption):  # (said once, by the first process)
            print(interruption, file=sys.stderr)
        sys.exit(interruption.exit_status)
    except KeyboardInterrupt:  # Ctrl-C outside training: nothing to save
        close_progress_bars()
        sys.exit(128 + signal.SIGINT)


def close_progress_bars() -> None:
    """Close the bars a stopped run leaves open, so that the message comes last (tqdm has no public list
    of open bars, and Lightning does not close them when a run stops with an exception)."""
    for bar in list(tqdm._instances):
        bar.leave = False
        bar.close()


if __name__ == "__main__":
    main()
