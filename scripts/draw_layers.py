"""Draw the package's layers and the imports between them.

Writes ``docs/_static/architecture/layers.png``: one band per layer of
``tia_scanner_robust._layers.LAYERS`` (bottom layer at the bottom), the
modules of each layer with their line counts, and one arrow per pair of layers
that import each other: one column per importing layer, with an arrowhead
and the number of imports at each layer it uses. An import that
ran back up a layer would be drawn in red (the tests forbid it).

Usage:
    .venv/bin/python scripts/draw_layers.py [-o docs/_static/architecture/layers.png]
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt

import tia_scanner_robust
from tia_scanner_robust._layers import LAYERS, import_edges, layer_of, rank

if TYPE_CHECKING:
    from matplotlib.axes import Axes

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


BAND_LEFT, BAND_WIDTH = 0.1, 9.3
COLUMN_LEFT, COLUMN_STEP = 9.7, 0.27


def _wrap_to_width(ax: Axes, items: list[str], width: float, **style: Any) -> list[str]:
    """Greedily join ``items`` with ", " into lines no wider than ``width`` data units."""
    renderer = ax.figure.canvas.get_renderer()
    to_data = ax.transData.inverted()

    def fits(text: str) -> bool:
        probe = ax.text(0, 0, text, **style)
        box = probe.get_window_extent(renderer=renderer).transformed(to_data)
        probe.remove()
        return box.width <= width

    lines: list[str] = []
    current = ""
    for item in items:
        candidate = f"{current}, {item}" if current else item
        if current and not fits(candidate + ","):
            lines.append(current + ",")
            current = item
        else:
            current = candidate
    if current:
        lines.append(current)
    return lines


def _draw_bands(ax: Axes, modules: dict[str, list[tuple[str, int]]]) -> None:
    """One band per layer: name, description, total lines and the wrapped module list."""
    for index, (name, what) in enumerate(LAYERS):
        y = index
        ax.add_patch(
            plt.Rectangle((BAND_LEFT, y + 0.05), BAND_WIDTH, 0.9, color="#dde8f3", ec="#55708c")
        )
        total = sum(lines for _, lines in modules[name])
        ax.text(
            BAND_LEFT + 0.1,
            y + 0.74,
            f"{name}/" if name != "base" else "base modules",
            weight="bold",
        )
        ax.text(2.1, y + 0.74, f"{what}  ({total:,} lines)", fontsize=8, color="#333333")
        items = [f"{m} {lines}" for m, lines in modules[name]]
        for size in (6.0, 5.5, 5.0, 4.5):
            style = {"fontsize": size, "family": "monospace"}
            wrapped = _wrap_to_width(ax, items, BAND_WIDTH - 0.25, **style)
            if len(wrapped) <= 4:
                break
        for k, line in enumerate(wrapped):
            ax.text(BAND_LEFT + 0.1, y + 0.55 - 0.14 * k, line, **style)


def _draw_edges(ax: Axes, edges: Counter[tuple[str, str]]) -> None:
    """One column per importing layer, with an arrowhead and a count at each layer it imports."""
    for source in {s for s, _ in edges}:
        targets = sorted((t for s, t in edges if s == source), key=rank)
        x = COLUMN_LEFT + COLUMN_STEP * rank(source)
        low, high = min(rank(t) for t in targets), max(rank(t) for t in targets)
        top = max(rank(source), high) + 0.5
        bottom = min(rank(source), low) + 0.5
        ax.plot([x, x], [bottom, top], color="#55708c", lw=0.8)
        ax.plot([x - 0.06, x], [rank(source) + 0.5, rank(source) + 0.5], color="#55708c", lw=0.8)
        for target in targets:
            up = rank(target) > rank(source)
            tip = rank(target) + (0.08 if not up else 0.92)
            ax.annotate(
                "",
                xy=(x, tip),
                xytext=(x, tip + (0.25 if not up else -0.25)),
                arrowprops={"arrowstyle": "-|>", "color": "red" if up else "#55708c", "lw": 0.8},
            )
            ax.text(
                x + 0.03, tip + 0.3, str(edges[(source, target)]), fontsize=5.5, color="#333333"
            )


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
    width = COLUMN_LEFT + COLUMN_STEP * n + 0.2
    fig, ax = plt.subplots(figsize=(width, 1.0 * n + 1))
    ax.set_xlim(0, width)
    ax.set_ylim(-0.1, n + 0.1)
    ax.axis("off")
    _draw_bands(ax, modules)
    _draw_edges(ax, edges)
    ax.set_title(
        "tia_scanner_robust layers: each package imports only from the layers below it\n"
        "(right: one column per importing layer, an arrowhead and the number of imports "
        "at each layer it uses; red would be upward)",
        fontsize=9,
    )
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130, bbox_inches="tight")
    print(f"wrote {out}")  # noqa: T201 - a script reports what it wrote


if __name__ == "__main__":
    main()
