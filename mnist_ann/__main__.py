"""`python -m mnist_ann SUBCOMMAND ...` (also installed as the `mnist-ann` command)."""

import gc
import sys

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


def main() -> None:
    try:
        if sys.argv[1:2] == ["export"]:
            from jsonargparse import CLI

            from mnist_ann.export import export

            CLI(export, args=sys.argv[2:])
        else:
            MNISTCLI()
    except UserError as error:  # the user's to fix: the message, without a traceback
        for bar in list(tqdm._instances):  # a run stopped mid-epoch leaves its progress bar open: close it first,
            bar.leave = False  # so that the message is the last thing printed
            bar.close()
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
