"""The package's structure: layers, no import that runs back up, no cycle, small modules."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

import tia_scanner_robust
from tia_scanner_robust._layers import LAYERS, ImportEdge, import_edges, layer_of, upward_imports

ROOT = Path(tia_scanner_robust.__file__).resolve().parent
MAX_LINES = 900


def test_every_subpackage_has_a_layer():
    names = {name for name, _ in LAYERS}
    subpackages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    missing = sorted(subpackages - names)
    assert not missing, f"subpackages without a layer in _layers.LAYERS: {missing}"


def test_no_import_runs_back_up():
    found = [f"{e.path}:{e.line}: {e.source} -> {e.target}" for e in upward_imports(ROOT)]
    assert not found, "imports from a lower layer to a higher one:\n" + "\n".join(found)


def test_upward_import_is_detected(tmp_path):
    # the checker itself: a function-level import from data/ up to engines/ is found
    package = tmp_path / "tia_scanner_robust"
    (package / "data").mkdir(parents=True)
    (package / "engines").mkdir()
    for init in (package, package / "data", package / "engines"):
        (init / "__init__.py").write_text("")
    (package / "engines" / "run.py").write_text("X = 1\n")
    (package / "data" / "reader.py").write_text(
        "def f():\n    from tia_scanner_robust.engines.run import X\n    return X\n"
    )
    (package / "data" / "rel.py").write_text("from ..engines import run\n")
    found = {(e.source, e.target) for e in upward_imports(package)}
    assert found == {
        ("tia_scanner_robust.data.reader", "tia_scanner_robust.engines.run"),
        ("tia_scanner_robust.data.rel", "tia_scanner_robust.engines.run"),
    }


def _cycles(edges: list[ImportEdge]) -> list[list[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for edge in edges:
        if edge.source != edge.target and not edge.target.startswith(edge.source + "."):
            graph[edge.source].add(edge.target)
    # Tarjan's strongly connected components
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in list(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_between_modules():
    # package __init__ files re-export their own modules; a cycle through one
    # of them is the package importing itself, not a design cycle
    edges = [e for e in import_edges(ROOT) if not e.path.endswith("__init__.py")]
    cycles = _cycles(edges)
    assert not cycles, f"import cycles: {cycles}"


def test_cycle_checker_finds_a_cycle():
    edges = [ImportEdge("a", "b", "a.py", 1), ImportEdge("b", "a", "b.py", 1)]
    assert _cycles(edges) == [["a", "b"]]


@pytest.mark.parametrize("path", sorted(ROOT.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_module_is_small(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines (limit {MAX_LINES})"


def test_no_experiments_package_inside():
    assert not (ROOT / "experiments").exists(), "paper experiments belong in top-level experiments/"


def test_layer_of_names_the_package():
    assert layer_of("tia_scanner_robust.cli.evaluate") == "cli"
    assert layer_of("tia_scanner_robust._io") == "base"
    with pytest.raises(ValueError, match="not a module"):
        layer_of("numpy")
