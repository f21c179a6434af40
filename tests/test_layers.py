"""Imports point downwards only (docs: DESIGN.md's layout): a module may import its own package and the layers below
it, never a layer above or a neighbour on its own layer, so no cycle can come back (experiments/compression once read
the run service that runs it)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "kdviz"

# Bottom first. The name is the first part below kdviz (a package, or a module at the top of kdviz).
LAYERS = [
    {"core"},  # the ML library
    {"experiments"},  # event streams on core
    {"runs", "present"},  # the run service; presentations
    {"views"},  # page models without Streamlit
    {"routes"},  # the server's extra HTTP routes (the live-run payloads, the follow endpoint)
    {"ui"},  # the only Streamlit code
    {"cli", "hall"},  # the command line; the hall launcher (HAProxy, replicas, Ray)
    {"__main__"},  # python -m kdviz: the command line
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def part_of(module: str) -> str | None:
    """The layer name of a kdviz module ("kdviz.runs.store" → "runs"); None for kdviz itself (its __version__)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def imported_modules(path: Path, source: str) -> list[tuple[int, str]]:
    """(line, module) of every kdviz import in source (the file at path, which resolves relative imports), those
    inside functions and TYPE_CHECKING blocks included; `from kdviz import x` counts as kdviz.x."""
    package = list(path.relative_to(ROOT.parent).parts[:-1])  # kdviz/runs/store.py and kdviz/runs/__init__.py: runs
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package[:len(package) - node.level + 1]  # level 1: this package, 2: its parent, ...
                base = ".".join(up + ([node.module] if node.module else []))
            if base == "kdviz":
                found += [(node.lineno, f"kdviz.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, base))
    return [(line, module) for line, module in found if module == "kdviz" or module.startswith("kdviz.")]


def upward_imports(path: Path, source: str) -> list[str]:
    """Each import in source that points up a layer or sideways into a neighbour, as "file:line imports module"."""
    here = part_of(".".join(path.relative_to(ROOT.parent).with_suffix("").parts))
    problems = []
    for line, module in imported_modules(path, source):
        there = part_of(module)
        if there is None or there == here:
            continue
        if here not in RANK or there not in RANK:
            problems.append(f"{path.relative_to(ROOT.parent)}:{line} imports {module}: add "
                            f"{here if here not in RANK else there!r} to a layer in tests/test_layers.py")
        elif RANK[there] >= RANK[here]:
            where = "a layer above" if RANK[there] > RANK[here] else "a neighbour on its own layer"
            problems.append(f"{path.relative_to(ROOT.parent)}:{line} imports {module} ({where})")
    return problems


def test_every_kdviz_module_imports_only_downwards():
    problems = [problem for path in sorted(ROOT.rglob("*.py"))
                for problem in upward_imports(path, path.read_text(encoding="utf-8"))]
    assert not problems, "\n".join(problems)


def test_every_part_of_kdviz_has_a_layer():
    parts = {path.stem if path.is_file() else path.name for path in ROOT.iterdir()
             if (path.is_file() and path.suffix == ".py" and path.stem != "__init__")
             or (path / "__init__.py").is_file()}
    assert parts - RANK.keys() == set()


@pytest.mark.parametrize("where, source", [
    ("experiments/compression.py", "def f():\n    from kdviz.runs.store import RunStore\n"),
    ("core/budget.py", "from kdviz import experiments\n"),
    ("runs/manager.py", "import kdviz.ui.core\n"),
    ("runs/store.py", "from ..present import rooms\n"),
    ("core/models.py", "from .. import views\n"),
])
def test_an_upward_or_sideways_import_is_caught(where, source):
    assert len(upward_imports(ROOT / where, source)) == 1


@pytest.mark.parametrize("where, source", [
    ("runs/store.py", "from kdviz.core.checkpoints import is_valid_run_id\nfrom . import index\n"),
    ("ui/core.py", "from kdviz import runs\nimport kdviz\nfrom kdviz.views import charts\n"),
])
def test_a_downward_import_passes(where, source):
    assert upward_imports(ROOT / where, source) == []
