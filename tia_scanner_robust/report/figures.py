r"""Figures of the scanner-consistency report (matplotlib, PNG, written atomically).

- :func:`plot_pair_matrix`: the scanner-pair matrix as an annotated heatmap,
  the worst pair outlined.
- :func:`plot_per_scanner`: the per-specimen scalar (e.g. nuclei fraction,
  positive-class probability) per scanner, one line per specimen; the spread
  of each line is what the CoV measures.
- :func:`plot_example_pair`: one specimen seen by the worst pair of scanners,
  side by side, with the predicted label maps overlaid and their disagreement.
- :func:`label_overlay`: colour a label map over an RGB image.

Every function draws on a :class:`matplotlib.figure.Figure` (no global pyplot
state) and returns the path of the PNG it wrote.

Examples:
    >>> import tempfile, pathlib
    >>> from tia_scanner_robust.metrics.functional import pairwise_consistency
    >>> pc = pairwise_consistency({"A": [0, 1], "B": [0, 1], "C": [1, 1]}, "agreement")
    >>> path = plot_pair_matrix(pc, pathlib.Path(tempfile.mkdtemp()) / "m.png")
    >>> path.read_bytes()[:4] == b"\x89PNG"
    True

"""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from tia_scanner_robust._io import atomic_write_bytes

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

    from matplotlib.figure import Figure

    from tia_scanner_robust.engines.results import ExamplePair
    from tia_scanner_robust.metrics.functional import PairConsistency

__all__ = [
    "CLASS_COLOURS",
    "label_overlay",
    "plot_example_pair",
    "plot_pair_matrix",
    "plot_per_scanner",
    "save_figure",
]

#: RGB colour of each class index in overlays (class 0, usually background, is not drawn).
CLASS_COLOURS: tuple[tuple[int, int, int], ...] = (
    (255, 255, 255),
    (240, 170, 60),
    (70, 20, 160),
    (30, 160, 70),
    (220, 40, 40),
    (40, 140, 220),
    (230, 200, 30),
    (140, 80, 40),
    (200, 90, 190),
    (90, 90, 90),
)


def save_figure(fig: Figure, path: str | Path, *, dpi: int = 120) -> Path:
    """Render ``fig`` to PNG and write it atomically."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return atomic_write_bytes(path, buffer.getvalue())


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure  # noqa: PLC0415 - plotting only

    return Figure(figsize=(width, height), layout="constrained")


def plot_pair_matrix(
    result: PairConsistency,
    path: str | Path,
    *,
    title: str | None = None,
    dpi: int = 120,
) -> Path:
    """Annotated heatmap of the scanner-pair matrix; the worst pair is outlined.

    Args:
        result: A :class:`~tia_scanner_robust.metrics.functional.PairConsistency`.
        path: PNG destination.
        title: Figure title (default: the score name with average and minimum).
        dpi: Resolution.

    Returns:
        The path written.

    """
    matrix = np.asarray(result.matrix, dtype=np.float64)
    scanners = list(result.scanners)
    n = len(scanners)
    side = max(4.5, 1.1 * n + 2.2)
    fig = _new_figure(side + 1.0, side)
    ax = fig.subplots()
    finite = matrix[np.isfinite(matrix)]
    if result.score == "cosine" and finite.size:
        # cosine similarities of embeddings crowd near 1: stretch the scale to the data
        vmin, vmax = max(-1.0, math.floor(float(finite.min()) * 100) / 100 - 0.01), 1.0
    elif result.score in {"dice", "agreement", "cosine"} or result.score.startswith("top"):
        vmin, vmax = (min(0.0, float(finite.min())) if finite.size else 0.0), 1.0
    else:
        vmin = 0.0
        vmax = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    cmap = "viridis" if result.higher_is_better else "viridis_r"
    shown = np.ma.masked_invalid(matrix)
    image = ax.imshow(shown, cmap=cmap, vmin=vmin, vmax=vmax)
    ax.set_facecolor("#dddddd")
    cbar = fig.colorbar(image, ax=ax, shrink=0.8)
    direction = "higher is better" if result.higher_is_better else "lower is better"
    cbar.set_label(f"{result.score} ({direction})")
    ax.set_xticks(range(n), scanners, rotation=35, ha="right")
    ax.set_yticks(range(n), scanners)
    span = vmax - vmin if vmax > vmin else 1.0
    for i in range(n):
        for j in range(n):
            value = matrix[i, j]
            if i == j or not math.isfinite(value):
                ax.text(j, i, "-", ha="center", va="center", color="#555555", fontsize=11)
                continue
            rel = (value - vmin) / span
            dark_cell = rel < 0.55 if result.higher_is_better else rel > 0.45
            ax.text(
                j,
                i,
                f"{value:.3f}",
                ha="center",
                va="center",
                fontsize=10 if n <= 6 else 8,
                color="white" if dark_cell else "black",
            )
    worst = result.worst_pair
    if worst is not None:
        from matplotlib.patches import Rectangle  # noqa: PLC0415

        i, j = scanners.index(worst[0]), scanners.index(worst[1])
        for r, c in ((i, j), (j, i)):
            ax.add_patch(
                Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=3)
            )
    if title is None:
        title = (
            f"Scanner-pair {result.score}: average {result.average:.3f}, worst {result.worst:.3f}"
        )
    ax.set_title(title, fontsize=11)
    return save_figure(fig, path, dpi=dpi)


def plot_per_scanner(
    values: Mapping[str, Sequence[float]],
    path: str | Path,
    *,
    ylabel: str,
    title: str | None = None,
    sample_ids: Sequence[str] | None = None,
    max_lines: int = 200,
    dpi: int = 120,
) -> Path:
    """Per-specimen values across scanners: one grey line per specimen, box per scanner.

    Args:
        values: Scanner -> per-specimen values (aligned by specimen).
        path: PNG destination.
        ylabel: Name of the quantity.
        title: Figure title.
        sample_ids: Specimen ids (the three most variable are labelled).
        max_lines: Draw at most this many specimen lines (evenly chosen).
        dpi: Resolution.

    Returns:
        The path written.

    """
    scanners = list(values)
    data = np.array([np.asarray(values[s], dtype=np.float64) for s in scanners])  # (S, N)
    fig = _new_figure(max(5.5, 1.3 * len(scanners) + 2), 4.2)
    ax = fig.subplots()
    x = np.arange(len(scanners))
    n = data.shape[1]
    chosen = np.unique(np.linspace(0, n - 1, min(n, max_lines)).round().astype(int)) if n else []
    for k in chosen:
        ax.plot(x, data[:, k], color="#888888", alpha=0.35, linewidth=1, marker="o", markersize=3)
    spread = np.nanstd(data, axis=0) if n else np.zeros(0)
    if sample_ids is not None and n:
        for k in np.argsort(-np.nan_to_num(spread))[: min(3, n)]:
            ax.plot(x, data[:, k], linewidth=2, marker="o", label=str(sample_ids[k]))
        ax.legend(fontsize=8, title="most variable specimens", title_fontsize=8)
    box_data = [row[~np.isnan(row)] for row in data]
    ax.boxplot(box_data, positions=x, widths=0.35, showfliers=False, manage_ticks=False)
    ax.set_xticks(x, scanners, rotation=25, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title or f"{ylabel} per scanner (one line per specimen)", fontsize=11)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path, dpi=dpi)


def label_overlay(
    image: np.ndarray, labels: np.ndarray, *, alpha: float = 0.55, skip_zero: bool = True
) -> np.ndarray:
    """Blend class colours (:data:`CLASS_COLOURS`) over an RGB uint8 image.

    Examples:
        >>> import numpy as np
        >>> out = label_overlay(np.zeros((2, 2, 3), np.uint8), np.array([[0, 1], [2, 2]]))
        >>> out[0, 0].tolist(), out.dtype.name
        ([0, 0, 0], 'uint8')

    """
    palette = np.array(CLASS_COLOURS, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    colours = palette[labels % len(palette)]
    weight = np.full(labels.shape, alpha)
    if skip_zero:
        weight[labels == 0] = 0.0
    out = image.astype(np.float64) * (1 - weight[..., None]) + colours * weight[..., None]
    return np.clip(out, 0, 255).astype(np.uint8)


def plot_example_pair(
    example: ExamplePair,
    path: str | Path,
    *,
    class_dict: Mapping[int, str] | None = None,
    dpi: int = 110,
) -> Path:
    """One specimen under two scanners: images, overlays and disagreement.

    For segmentation the figure has two rows (images; predicted label maps
    overlaid) and a third column with the pixels where the two scanners'
    predictions disagree. For other tasks it shows the two images with their
    captions.

    Args:
        example: An :class:`~tia_scanner_robust.engines.results.ExamplePair`.
        path: PNG destination.
        class_dict: Class index -> name (legend).
        dpi: Resolution.

    Returns:
        The path written.

    """
    a, b = example.scanners
    segmentation = example.predictions[0] is not None and example.predictions[1] is not None
    title = f"{example.specimen_id}: {a} vs {b} ({example.score_name} = {example.score:.3f})"
    if not segmentation:
        fig = _new_figure(9, 5)
        axes = fig.subplots(1, 2)
        for ax, image, caption in zip(axes, example.images, example.captions, strict=True):
            ax.imshow(image)
            ax.set_title(caption, fontsize=9, wrap=True)
            ax.axis("off")
        fig.suptitle(title, fontsize=11)
        return save_figure(fig, path, dpi=dpi)

    pred_a, pred_b = (np.asarray(p) for p in example.predictions)
    fig = _new_figure(12, 8.4)
    axes = fig.subplots(2, 3)
    for col, (image, pred, caption) in enumerate(
        zip(example.images, (pred_a, pred_b), example.captions, strict=True)
    ):
        axes[0, col].imshow(image)
        axes[0, col].set_title(caption, fontsize=9, wrap=True)
        axes[1, col].imshow(label_overlay(image, pred))
        axes[1, col].set_title(f"prediction on {example.scanners[col]}", fontsize=9)
    differ = pred_a != pred_b
    shade = example.images[0].astype(np.float64) * 0.35 + 255 * 0.65  # faded tissue
    shade[differ] = (220, 30, 30)
    axes[0, 2].imshow(shade.astype(np.uint8))
    axes[0, 2].set_title(f"red: labels differ ({differ.mean():.1%} of pixels)", fontsize=9)
    legend_ax = axes[1, 2]
    classes = sorted(set(np.unique(pred_a).tolist()) | set(np.unique(pred_b).tolist()))
    names = dict(class_dict or {})
    for k, c in enumerate(classes):
        colour = np.array(CLASS_COLOURS[c % len(CLASS_COLOURS)]) / 255.0
        legend_ax.add_patch(_square(0.05, 0.85 - 0.12 * k, colour))
        legend_ax.text(0.18, 0.87 - 0.12 * k, f"{c}: {names.get(c, f'class {c}')}", fontsize=10)
    legend_ax.set_xlim(0, 1)
    legend_ax.set_ylim(0, 1)
    legend_ax.set_title("classes", fontsize=9)
    for ax in axes.ravel():
        ax.axis("off")
    fig.suptitle(title, fontsize=11)
    return save_figure(fig, path, dpi=dpi)


def _square(x: float, y: float, colour: np.ndarray) -> Any:
    from matplotlib.patches import Rectangle  # noqa: PLC0415

    return Rectangle((x, y), 0.09, 0.08, facecolor=colour, edgecolor="black", linewidth=0.5)
