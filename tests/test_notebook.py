"""The lesson as a notebook: notebooks/lesson.ipynb runs top to bottom in a fresh kernel and prints what it
shows as committed."""

import copy
import re
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "lesson.ipynb"


def printed(notebook) -> list[str]:
    """What each code cell printed (stdout)."""
    return [
        "".join(output.text for output in cell.outputs if output.output_type == "stream" and output.name == "stdout")
        for cell in notebook.cells
        if cell.cell_type == "code"
    ]


@pytest.mark.slow
def test_the_lesson_notebook_runs_top_to_bottom_as_committed(real_data_dir, monkeypatch, tmp_path):
    nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed (pip install -e '.[dev]')")
    from nbclient import NotebookClient

    monkeypatch.setenv("MNIST_ANN_DATA_DIR", str(real_data_dir))
    committed = nbformat.read(NOTEBOOK, as_version=4)
    ran = copy.deepcopy(committed)
    NotebookClient(ran, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    # Seeded, on the CPU: the forward pass, the loss, the gradients and the hand-made step print the same numbers.
    assert printed(ran)[:4] == printed(committed)[:4]
    assert "loss 2.4556 = -log p(7) = 2.4556" in printed(ran)[2]
    accuracy = float(re.search(r"after one epoch: test accuracy ([\d.]+)%", printed(ran)[4]).group(1))
    assert accuracy > 90  # one epoch of the recipe; the last digits differ by machine, as fit's do
