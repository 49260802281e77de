"""The package's layers, and a reader of its imports that checks them.

Every module of :mod:`tia_scanner_robust` belongs to one layer; a module may
import from its own layer's package and from layers below it, never from a
layer above (not even inside a function), so the packages form a stack with no
import that runs back up and no cycle. :data:`LAYERS` is the contract that
``tests/test_architecture.py`` enforces and ``scripts/draw_layers.py`` draws
in ``docs/_static/architecture/layers.png``.

Examples:
    >>> layer_of("tia_scanner_robust.engines.patch")
    'engines'
    >>> rank("cli") > rank("engines") > rank("data") > rank("base")
    True

"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LAYERS", "ImportEdge", "import_edges", "layer_of", "rank", "upward_imports"]

PACKAGE = "tia_scanner_robust"

#: Bottom to top: (layer name, what it holds). ``base`` is every top-level module.
LAYERS: tuple[tuple[str, str], ...] = (
    ("base", "I/O, validation, seeding, constants, bag operations, the TIAToolbox adapter"),
    ("metrics", "CoV, paired Dice, agreement, retrieval, analysis (NumPy)"),
    ("augmentations", "style augmentations (albumentations and batched torch), scanner simulator"),
    ("data", "paired data model, readers, datasets, registration, feature store"),
    ("models", "TIAToolbox ModelABC models: classical, smp segmentation, MIL"),
    ("losses", "SimCons consistency, ScanGen contrastive"),
    ("features", "foundation-model feature extraction into the store"),
    ("engines", "scanner-consistency evaluation and MIL prediction via TIAToolbox engines"),
    ("report", "report.json, figures, HTML reports"),
    ("training", "trainer, task adapters, hooks (SimCons, ScanGen), configs, MIL training"),
    ("demo", "the end-to-end demo behind the demo command"),
    ("cli", "the tia-scanner-robust command line"),
)
_RANK = {name: index for index, (name, _) in enumerate(LAYERS)}


def rank(layer: str) -> int:
    """Position of ``layer`` in :data:`LAYERS` (0 is the bottom)."""
    return _RANK[layer]


def layer_of(module: str) -> str:
    """The layer of a dotted module name inside the package."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        msg = f"{module!r} is not a module of {PACKAGE}."
        raise ValueError(msg)
    if len(parts) > 1 and parts[1] in _RANK:
        return parts[1]
    return "base"


@dataclass(frozen=True)
class ImportEdge:
    """One import of a package module by another: ``source`` imports ``target``."""

    source: str
    target: str
    path: str
    line: int


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    drop = node.level - 1 if is_package else node.level
    base = base[: len(base) - drop] if drop else base
    return ".".join([*base, node.module] if node.module else base)


def import_edges(root: str | Path | None = None) -> list[ImportEdge]:
    """Every import of a package module, at any depth of every source file.

    Args:
        root: The package folder (default: this package).

    Returns:
        One :class:`ImportEdge` per imported package module (``from X import
        name`` counts ``X.name`` when that is a module, else ``X``).

    """
    root = Path(root) if root is not None else Path(__file__).resolve().parent
    edges: list[ImportEdge] = []
    for path in sorted(root.rglob("*.py")):
        module = _module_name(path, root)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(node, module, path.name == "__init__.py")
                for alias in node.names:
                    candidate = f"{base}.{alias.name}"
                    as_path = root.parent / Path(*candidate.split("."))
                    is_module = as_path.with_suffix(".py").exists() or as_path.is_dir()
                    targets.append(candidate if is_module else base)
            edges.extend(
                ImportEdge(module, target, str(path), node.lineno)
                for target in targets
                if target == PACKAGE or target.startswith(PACKAGE + ".")
            )
    return edges


def upward_imports(root: str | Path | None = None) -> list[ImportEdge]:
    """The imports that run from a layer up to a higher one (should be none)."""
    return [
        edge
        for edge in import_edges(root)
        if rank(layer_of(edge.target)) > rank(layer_of(edge.source))
    ]
