"""The project's shape: the lesson (network, tasks, model, data) reads on its own, and imports nothing of the
product's rooms (the command line, monitoring, the service, the search, your handwriting)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mnist_ann"
LESSON = ["network", "tasks", "model", "data"]
ROOMS = {"__main__", "cli", "collect", "explain", "export", "live", "monitoring", "predictions", "serve", "tune"}


def project_imports(module: str) -> set[str]:
    """The `mnist_ann` modules `module` imports at its top, each by its first name (`serve` for `serve.app`)."""
    path = PACKAGE / f"{module}.py"
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mnist_ann."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith("mnist_ann.")}
    return found


def test_the_lesson_imports_none_of_the_products_rooms():
    reached, to_visit = set(), list(LESSON)
    while to_visit:  # what the lesson's files import, and what those import in turn
        module = to_visit.pop()
        for imported in project_imports(module) - reached:
            reached.add(imported)
            if (PACKAGE / f"{imported}.py").is_file():
                to_visit.append(imported)
    assert reached & ROOMS == set(), f"the lesson reaches {sorted(reached & ROOMS)}"
