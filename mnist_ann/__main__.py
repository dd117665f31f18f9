"""`mnist-ann COMMAND ...` (also `python -m mnist_ann COMMAND ...`): the entry point and its command table.

Everything that changes the state of the whole process (the garbage collector, warning and log filters,
the hook for errors of background threads) happens here, when the command runs, never on import.
"""

import logging
import sys
import threading
import warnings
from contextlib import ExitStack
from importlib import import_module
from importlib.metadata import metadata, version

from mnist_ann.start_up import skip_start_up_collections

# Each command, one line of help, and what runs it: LightningCLI's subcommands, or "module:function".
COMMANDS = {
    "fit": ("train the network (the recipe without --config; resume with --ckpt_path last)", None),
    "validate": ("a checkpoint's loss and accuracy on the validation split", None),
    "test": ("a checkpoint's loss and accuracy on the 10,000 test images", None),
    "predict": ("classify your own pictures (or the test images) with a checkpoint", None),
    "export": ("write a checkpoint as model.pt2 and model.onnx for deployment", "mnist_ann.export:export"),
    "serve": ("an HTTP prediction service and a draw-a-digit page", "mnist_ann.serve.server:serve"),
    "tune": ("search for better settings with Optuna (every fit option applies)", "mnist_ann.tune.study:tune"),
}

# Warnings of dependencies that say nothing a user of this command can act on, silenced by message.
DEPENDENCY_NOISE = [
    # Lightning's own use of a torch API that torch deprecated; nothing here calls it.
    (FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated"),
    # The prediction writer names rows from the batches themselves, not from Lightning's batch indices.
    (UserWarning, "Couldn't infer the batch indices fetched from your dataloader"),
    # Values every process holds alike are logged without a collective (mnist_ann.lean.log_same_everywhere).
    (Warning, r"It is recommended to use `self.log\('(train/lr|val/acc_best)'"),
    # test/validate/predict of a run trained with weight averaging: its checkpoints already hold the averaged weights.
    (UserWarning, "You're using the WeightAveraging callback, but loading a checkpoint outside the 'fit' stage"),
]

# Log lines of Lightning that advertise, or that the command's own last line says better: a run stopped
# by a signal reports what it saved and how to resume (Lightning's says SIGTERM even for Ctrl-C).
DEPENDENCY_LOG_NOISE = {
    "lightning.pytorch.utilities.rank_zero": ("💡 Tip", "An SIGTERMException was raised"),
    "lightning.pytorch.trainer.connectors.signal_connector": ("Received SIGTERM", "[rank: 0] Received SIGTERM"),
}


def usage() -> str:
    rows = "\n".join(f"  {name:<10}{text}" for name, (text, _) in COMMANDS.items())
    return (
        f"usage: mnist-ann [--version] [--help] COMMAND [OPTIONS]\n\n{metadata('mnist-ann')['Summary']}.\n\n"
        f"commands:\n{rows}\n\n"
        "mnist-ann COMMAND --help lists a command's options. Start with:\n"
        "  mnist-ann fit && mnist-ann test --ckpt_path best"
    )


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return
    if args[0] == "--version":
        print(f"mnist-ann {version('mnist-ann')}")
        return
    if args[0] not in COMMANDS:
        sys.exit(f"error: unknown command {args[0]!r}: one of {', '.join(COMMANDS)} (mnist-ann --help)")
    from mnist_ann.errors import reported

    with reported(), ExitStack() as scope:  # (a stop or an error met while importing is reported too)
        quiet_dependency_noise(scope)
        run(args[0], args[1:], from_sys_argv=argv is None)


def run(command: str, args: list[str], from_sys_argv: bool = False) -> None:
    from mnist_ann.stopping import end_process_group, watch_lifeline

    watch_lifeline()  # a job of the page's lab: it ends with the service
    _, target = COMMANDS[command]
    if target is None:
        from mnist_ann.cli import MNISTCLI

        # (Lightning reads sys.argv itself, and warns when given arguments beside it)
        MNISTCLI(args=None if from_sys_argv else [command, *args])
        end_process_group()
        return
    module, function = target.split(":")
    runner = getattr(import_module(module), function)
    if command == "tune":  # its own options, then fit's
        runner(args)
    else:
        from jsonargparse import CLI

        CLI(runner, args=args, prog=f"mnist-ann {command}", allow_abbrev=False)


def quiet_dependency_noise(scope: ExitStack) -> None:
    """Warning and log filters, the thread error hook and the start-up's garbage collection, for the
    command's length only: a program that calls `main` gets its own state back."""
    scope.enter_context(warnings.catch_warnings())
    for category, message in DEPENDENCY_NOISE:
        warnings.filterwarnings("ignore", message=message, category=category)
    for name, prefixes in DEPENDENCY_LOG_NOISE.items():
        logger = logging.getLogger(name)
        noise = NoiseFilter(prefixes)
        logger.addFilter(noise)
        scope.callback(logger.removeFilter, noise)
    previous_hook, threading.excepthook = threading.excepthook, thread_error
    scope.callback(setattr, threading, "excepthook", previous_hook)
    skip_start_up_collections()


class NoiseFilter(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefixes)


def thread_error(args: threading.ExceptHookArgs) -> None:
    """A full disk met by a background thread (TensorBoard's event writer) also reaches the main thread,
    which reports it in one line: the thread's own traceback would only repeat it. Anything else as usual."""
    from mnist_ann.errors import full_disk_cause

    if not full_disk_cause(args.exc_value):
        threading.__excepthook__(args)


if __name__ == "__main__":
    main()
