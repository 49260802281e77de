"""Every lazily exported name resolves, and type checkers see the same names statically."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import tia_scanner_robust

ROOT = Path(tia_scanner_robust.__file__).resolve().parent
LAZY_INITS = sorted(
    p for p in ROOT.rglob("__init__.py") if "_EXPORTS" in p.read_text(encoding="utf-8")
)


def _package(init: Path) -> str:
    return ".".join(("tia_scanner_robust", *init.parent.relative_to(ROOT).parts))


def _exports(tree: ast.Module) -> dict[str, str]:
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        if isinstance(target, ast.Name) and target.id == "_EXPORTS":
            return ast.literal_eval(node.value)
    return {}


def _type_checking_imports(tree: ast.Module, package: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            for stmt in ast.walk(node):
                if isinstance(stmt, ast.ImportFrom):
                    # ``from .x import N`` (relative) or ``from package.x import N``
                    module = (stmt.module or "").removeprefix(package + ".")
                    for alias in stmt.names:
                        found[alias.asname or alias.name] = module
    return found


@pytest.mark.parametrize("init", LAZY_INITS, ids=lambda p: str(p.parent.relative_to(ROOT)))
def test_type_checking_block_matches_lazy_exports(init):
    tree = ast.parse(init.read_text(encoding="utf-8"))
    package = _package(init)
    exports = _exports(tree)
    static = _type_checking_imports(tree, package)
    missing = {n: m for n, m in exports.items() if static.get(n) != m}
    assert not missing, f"{init}: names without a matching TYPE_CHECKING import: {missing}"


@pytest.mark.parametrize("init", LAZY_INITS, ids=lambda p: str(p.parent.relative_to(ROOT)))
def test_every_lazy_export_resolves(init):
    package = importlib.import_module(_package(init))
    exports = _exports(ast.parse(init.read_text(encoding="utf-8")))
    for name in exports:
        assert getattr(package, name) is not None, name
