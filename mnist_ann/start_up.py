"""A process's start-up: torch, torchvision and Lightning imported with the cyclic garbage collector held off."""

import gc
import sys


def skip_start_up_collections() -> None:
    """Importing torch, torchvision and Lightning creates ~400,000 long-lived objects, and Python's cyclic
    garbage collector would rescan them all several times on the way. Start-up leaves little garbage: skip
    collecting during it, and freeze what it built out of every later collection."""
    if "lightning" in sys.modules:  # a program that imported them already: nothing to gain
        return
    gc.disable()
    try:
        import lightning  # noqa: F401
        import torchvision  # noqa: F401
    finally:
        gc.freeze()
        gc.enable()
