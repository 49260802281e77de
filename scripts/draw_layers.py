"""Draw the package's layers and the imports between them.

Writes ``docs/_static/architecture/layers.png``: one band per layer of
``tia_scanner_robust._layers.LAYERS`` (bottom layer at the bottom), the
modules of each layer with their line counts, and one arrow per pair of layers
that import each other, labelled with the number of imports. An import that
ran back up a layer would be drawn in red (the tests forbid it).

Usage:
    .venv/bin/python scripts/draw_layers.py [-o docs/_static/architecture/layers.png]
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt

import tia_scanner_robust
from tia_scanner_robust._layers import LAYERS, import_edges, layer_of, rank

ROOT = Path(tia_scanner_robust.__file__).resolve().parent


def _modules_by_layer() -> dict[str, list[tuple[str, int]]]:
    out: dict[str, list[tuple[str, int]]] = {name: [] for name, _ in LAYERS}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.name == "__init__.py" and len(rel.parts) > 1:
            continue
        module = ".".join(("tia_scanner_robust", *rel.with_suffix("").parts))
        lines = len(path.read_text(encoding="utf-8").splitlines())
        label = str(rel.relative_to(rel.parts[0])) if len(rel.parts) > 1 else str(rel)
        out[layer_of(module)].append((label.removesuffix(".py"), lines))
    return out


def main() -> None:
    """Parse arguments and write the figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default="docs/_static/architecture/layers.png")
    args = parser.parse_args()

    modules = _modules_by_layer()
    edges = Counter(
        (layer_of(e.source), layer_of(e.target))
        for e in import_edges(ROOT)
        if layer_of(e.source) != layer_of(e.target)
    )
    n = len(LAYERS)
    fig, ax = plt.subplots(figsize=(13, 0.95 * n + 1))
    ax.set_xlim(0, 13)
    ax.set_ylim(-0.2, n + 0.2)
    ax.axis("off")
    for index, (name, what) in enumerate(LAYERS):
        y = index
        ax.add_patch(plt.Rectangle((0.1, y + 0.08), 9.3, 0.84, color="#dde8f3", ec="#55708c"))
        total = sum(lines for _, lines in modules[name])
        ax.text(0.2, y + 0.7, f"{name}/" if name != "base" else "base modules", weight="bold")
        ax.text(2.0, y + 0.7, f"{what}  ({total:,} lines)", fontsize=8, color="#333333")
        listing = ", ".join(f"{m} {lines}" for m, lines in modules[name])
        wrapped = [listing[i : i + 150] for i in range(0, len(listing), 150)][:3]
        for k, chunk in enumerate(wrapped):
            ax.text(0.2, y + 0.45 - 0.16 * k, chunk, fontsize=6, family="monospace")
    for (source, target), count in sorted(edges.items()):
        up = rank(target) > rank(source)
        x = 9.6 + 0.28 * (rank(source) % 12)
        ax.annotate(
            "",
            xy=(x, rank(target) + 0.5),
            xytext=(x, rank(source) + 0.5),
            arrowprops={"arrowstyle": "->", "color": "red" if up else "#55708c", "lw": 0.8},
        )
        ax.text(x + 0.03, rank(source) + 0.3, str(count), fontsize=5)
    ax.set_title(
        "tia_scanner_robust layers: each package imports only from the layers below it "
        "(arrows: imports between layers, from the importing layer; red would be upward)",
        fontsize=9,
    )
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130, bbox_inches="tight")
    print(f"wrote {out}")  # noqa: T201 - a script reports what it wrote


if __name__ == "__main__":
    main()
