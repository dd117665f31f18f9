"""The fixtures the tests share; the helpers they call live in tests/helpers/."""

import os
from pathlib import Path

# The two pytest workers share the two cores: every process a test starts computes with one thread, as `--threads
# auto` gives the recipe, whatever network it trains (mnist_ann/threads.py: `auto` keeps within OMP_NUM_THREADS).
# With more, the processes' threads wait on each other's at every step.
os.environ["OMP_NUM_THREADS"] = "1"

from mnist_ann.start_up import skip_start_up_collections

skip_start_up_collections()  # each pytest worker imports what a command imports: as a command does

import pytest
import torch

from mnist_ann.data import MNISTDataModule
from tests.helpers.accuracy import fit
from tests.helpers.browser import chromium
from tests.helpers.commands import REAL_DATA_DIR, missing
from tests.helpers.synthetic import write_mnist


@pytest.fixture(autouse=True)
def one_thread():
    """Each test starts with one torch thread, and whatever a command in it chose (`--threads 2`) ends with it."""
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(1)


# The files, longest first (as `--durations` lists them): pytest-xdist hands each worker whole files in this order,
# the next to whichever worker is free, so that the last ones are short and neither worker waits long for the other
# at the end (`benchmarks/README.md`: the test suite). A file not listed comes after them.
LONGEST_FIRST = [
    "test_tune.py",
    "test_serve.py",
    "test_readme.py",
    "test_handwriting.py",
    "test_lab.py",
    "test_ddp.py",
    "test_service_processes.py",
    "test_multinode.py",
    "test_packaging.py",
    "test_interruptions.py",
    "test_tasks.py",
    "test_cli.py",
    "test_backward.py",
    "test_reliability.py",
    "test_collect.py",
    "test_notebook.py",
    "test_words.py",
    "test_levers.py",
    "test_smoke.py",
    "test_predict.py",
    "test_guard.py",
    "test_monitoring.py",
]


def pytest_collection_modifyitems(items) -> None:
    items.sort(key=lambda item: LONGEST_FIRST.index(item.path.name) if item.path.name in LONGEST_FIRST else 99)


@pytest.fixture(scope="session")
def synthetic_data_dir(tmp_path_factory) -> Path:
    """A data folder with small synthetic MNIST files (1,200 training and 300 test images)."""
    return write_mnist(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture(scope="session")
def trained_checkpoint(synthetic_data_dir, tmp_path_factory) -> Path:
    """A checkpoint of the recipe trained 2 epochs on the synthetic data, for tests that use a trained model."""
    path = tmp_path_factory.mktemp("model") / "model.ckpt"
    fit(MNISTDataModule(synthetic_data_dir, val_size=200), checkpoint=path)
    return path


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    raw = REAL_DATA_DIR / "MNIST" / "raw"
    if not (raw / "train-images-idx3-ubyte").is_file():
        missing(f"real MNIST not found in {raw} (set MNIST_ANN_DATA_DIR to a folder holding MNIST/raw/)")
    return REAL_DATA_DIR


@pytest.fixture(scope="session")
def recipe_checkpoint(real_data_dir, tmp_path_factory) -> Path:
    """The recipe trained 2 epochs on the real MNIST (seed 42), once a session, for the tests that need a model
    that reads real and drawn digits. Tests that write files copy it first."""
    path = tmp_path_factory.mktemp("recipe") / "recipe.ckpt"
    fit(MNISTDataModule(real_data_dir, download=False), seed=42, checkpoint=path)
    return path


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium, one a pytest worker: each test opens the page it needs, on a service of its own port."""
    with chromium() as driver:
        yield driver
