"""`python -m mnist_ann SUBCOMMAND ...` (also installed as the `mnist-ann` command)."""

import sys

from mnist_ann.cli import MNISTCLI, CheckpointNotFoundError
from mnist_ann.data import MNISTNotFoundError


def main() -> None:
    try:
        MNISTCLI()
    except (MNISTNotFoundError, CheckpointNotFoundError) as error:  # the user's to fix: no traceback
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
