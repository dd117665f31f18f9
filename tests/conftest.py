import os
import socket
from pathlib import Path

import pytest

from tests.idx import write_mnist

REPO = Path(__file__).resolve().parent.parent
REAL_DATA_DIR = Path(os.environ.get("MNIST_ANN_DATA_DIR") or REPO.parent / "shared" / "data")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, for servers and process groups the tests start."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def synthetic_data_dir(tmp_path_factory) -> Path:
    """A data folder with small synthetic MNIST files (1,200 training and 300 test images)."""
    return write_mnist(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture
def real_data_dir() -> Path:
    raw = REAL_DATA_DIR / "MNIST" / "raw"
    if not (raw / "train-images-idx3-ubyte").is_file():
        pytest.skip(f"real MNIST not found in {raw} (set MNIST_ANN_DATA_DIR to a folder holding MNIST/raw/)")
    return REAL_DATA_DIR
