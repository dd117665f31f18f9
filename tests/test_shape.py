"""The project's shape: the lesson (network, tasks, model, data) reads on its own, and imports nothing of the
product's rooms (the command line, monitoring, the service, the search, your handwriting)."""

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mnist_ann"
LESSON = ["network", "tasks", "model", "data"]
ROOMS = {"__main__", "charts", "cli", "collect", "command_lines", "explain", "export", "live", "monitoring"}
ROOMS |= {"predictions", "serve", "tune"}


def imported_names(path: Path) -> list[str]:
    """Every module `path` imports, at its top or inside a function."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
    return names


def project_imports(module: str) -> set[str]:
    """The `mnist_ann` modules `module` imports, each by its first name (`serve` for `serve.app`)."""
    names = imported_names(PACKAGE / f"{module}.py")
    return {name.split(".")[1] for name in names if name.startswith("mnist_ann.")}


def test_the_lesson_imports_none_of_the_products_rooms():
    reached, to_visit = set(), list(LESSON)
    while to_visit:  # what the lesson's files import, and what those import in turn
        module = to_visit.pop()
        for imported in project_imports(module) - reached:
            reached.add(imported)
            if (PACKAGE / f"{imported}.py").is_file():
                to_visit.append(imported)
    assert reached & ROOMS == set(), f"the lesson reaches {sorted(reached & ROOMS)}"


def test_every_import_points_down_from_the_rooms_to_what_they_stand_on():
    """The subpackages (the service, the search) are built on the modules of `mnist_ann/`: those import no
    subpackage (`__main__` names the commands' modules as text), and no subpackage imports another."""
    subpackages = {path.parent.name for path in PACKAGE.glob("*/__init__.py")}
    for path in PACKAGE.rglob("*.py"):
        own = path.relative_to(PACKAGE).parts[0] if path.parent != PACKAGE else None
        for name in imported_names(path):
            parts = name.split(".")
            if parts[0] == "mnist_ann" and len(parts) > 1 and parts[1] in subpackages:
                assert parts[1] == own, f"{path.relative_to(PACKAGE)} imports {name}: an arrow that climbs"


def test_contributings_map_names_every_module():
    mapped = (PACKAGE.parent / "CONTRIBUTING.md").read_text()
    modules = [path.relative_to(PACKAGE.parent) for path in PACKAGE.rglob("*.py") if path.name != "__init__.py"]
    assert [str(module) for module in modules if f"`{module}`" not in mapped] == []


def test_no_module_is_over_300_lines():
    lines = {path.relative_to(PACKAGE).as_posix(): len(path.read_text().splitlines()) for path in PACKAGE.rglob("*.py")}
    assert {module: count for module, count in lines.items() if count > 300} == {}


def test_the_lesson_is_as_short_as_the_readme_says():
    [bound] = re.findall(r"The lesson is four files, under (\d+) lines", (PACKAGE.parent / "README.md").read_text())
    lines = sum(len((PACKAGE / f"{module}.py").read_text().splitlines()) for module in LESSON)
    assert lines < int(bound)
