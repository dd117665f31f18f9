"""`python -m mnist_ann SUBCOMMAND ...` (also installed as the `mnist-ann` command)."""

import gc
import logging
import sys
import warnings

# Importing torch, torchvision and Lightning creates ~400,000 long-lived objects, and Python's cyclic
# garbage collector would rescan them all several times on the way (about half a second per run).
# Start-up leaves little garbage: skip collecting during it, and freeze what it built out of every
# later collection.
gc.disable()
from tqdm import tqdm  # noqa: E402

from mnist_ann.cli import MNISTCLI  # noqa: E402
from mnist_ann.errors import UserError  # noqa: E402

gc.freeze()
gc.enable()

# Warnings of dependencies that say nothing a user of this command can act on, silenced by message.
DEPENDENCY_NOISE = [
    # Lightning's own use of a torch API that torch deprecated; nothing here calls it.
    (FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated"),
    # The prediction writer names rows from the batches themselves, not from Lightning's batch indices.
    (UserWarning, "Couldn't infer the batch indices fetched from your dataloader"),
]


def quiet_dependency_noise() -> None:
    """Applied where the command starts, not on import, so that importing mnist_ann changes nothing."""
    for category, message in DEPENDENCY_NOISE:
        warnings.filterwarnings("ignore", message=message, category=category)
    # Lightning advertises a cloud logger on every run.
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
        lambda record: not record.getMessage().startswith("💡 Tip")
    )


def main() -> None:
    quiet_dependency_noise()
    try:
        if sys.argv[1:2] == ["export"]:
            from jsonargparse import CLI

            from mnist_ann.export import export

            CLI(export, args=sys.argv[2:])
        else:
            MNISTCLI()
    except UserError as error:  # the user's to fix: the message, without a traceback
        # A run stopped mid-epoch leaves its progress bar open: close it first, so that the message is
        # the last thing printed (tqdm has no public list of open bars, and Lightning leaves them open).
        for bar in list(tqdm._instances):
            bar.leave = False
            bar.close()
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
