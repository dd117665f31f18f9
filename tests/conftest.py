"""The fixtures the tests share; the helpers they call live in tests/helpers/."""

import compileall
import os
import shutil
from collections.abc import Callable
from pathlib import Path

# The two pytest workers share the two cores: every process a test starts computes with one thread, as `--threads
# auto` gives the recipe, whatever network it trains (mnist_ann/threads.py: `auto` keeps within OMP_NUM_THREADS).
# With more, the processes' threads wait on each other's at every step.
os.environ["OMP_NUM_THREADS"] = "1"

from mnist_ann.start_up import skip_start_up_collections

skip_start_up_collections()  # each pytest worker imports what a command imports: as a command does

import pytest
import torch
from filelock import FileLock

from mnist_ann.data import MNISTDataModule
from tests.helpers.accuracy import fit
from tests.helpers.browser import chromium
from tests.helpers.commands import REAL_DATA_DIR, REPO, missing
from tests.helpers.synthetic import write_mnist


def pytest_configure(config) -> None:
    """The package compiled once, before the workers start: each of the hundred processes the tests start imports
    it, and where PYTHONDONTWRITEBYTECODE is set (as on CI machines) each would compile it anew."""
    if not hasattr(config, "workerinput"):  # pytest-xdist's controller, or a run without workers
        compileall.compile_dir(REPO / "mnist_ann", quiet=1)


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


def made_once(tmp_path_factory, name: str, make: Callable[[Path], object]) -> Path:
    """The folder `make` fills, made once a test run whichever pytest worker asks first, the others waiting for it
    (pytest-xdist's recipe: a lock in the workers' common temporary folder). It is only read: a test that writes
    copies what it needs."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    folder = root / name
    with FileLock(root / f"{name}.lock"):
        if not folder.is_dir():
            building = root / f"{name}.building"
            shutil.rmtree(building, ignore_errors=True)
            building.mkdir()
            make(building)
            building.rename(folder)
    return folder


@pytest.fixture(scope="session")
def synthetic_data_dir(tmp_path_factory) -> Path:
    """A data folder with small synthetic MNIST files (1,200 training and 300 test images)."""
    return made_once(tmp_path_factory, "synthetic", write_mnist)


@pytest.fixture(scope="session")
def trained_checkpoint(synthetic_data_dir, tmp_path_factory) -> Path:
    """A checkpoint of the recipe trained 2 epochs on the synthetic data, for tests that use a trained model."""

    def train(folder: Path) -> None:
        fit(MNISTDataModule(synthetic_data_dir, val_size=200), checkpoint=folder / "model.ckpt")

    return made_once(tmp_path_factory, "model", train) / "model.ckpt"


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    raw = REAL_DATA_DIR / "MNIST" / "raw"
    if not (raw / "train-images-idx3-ubyte").is_file():
        missing(f"real MNIST not found in {raw} (set MNIST_ANN_DATA_DIR to a folder holding MNIST/raw/)")
    return REAL_DATA_DIR


@pytest.fixture(scope="session")
def recipe_checkpoint(real_data_dir, tmp_path_factory) -> Path:
    """The recipe trained 2 epochs on the real MNIST (seed 42), once a test run, for the tests that need a model
    that reads real and drawn digits."""

    def train(folder: Path) -> None:
        fit(MNISTDataModule(real_data_dir, download=False), seed=42, checkpoint=folder / "recipe.ckpt")

    return made_once(tmp_path_factory, "recipe", train) / "recipe.ckpt"


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium, one a pytest worker: each test opens the page it needs, on a service of its own port."""
    with chromium() as driver:
        yield driver
