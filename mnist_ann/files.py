"""Writing a file whole: its new content goes to a temporary file beside it, flushed to the disk, then
replaces it in one rename. At every moment one of the two versions is whole: a reader, a crash, a kill or a
full disk never leaves half a file where a good one was."""

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def replaced_whole(path: Path) -> Iterator[BinaryIO]:
    """A binary file to write `path`'s new content into; it becomes `path` when the block ends without an
    error, and is removed when it does not. Its temporary name starts with a dot: `.NAME.XXXX.tmp`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
