r"""Figures of distributions and of prediction against truth (matplotlib, PNG, atomic).

Means hide what a reader needs to act: how many samples are bad, how sure the
number is, what the bad ones look like. These figures show the per-sample
values and the 95% bootstrap intervals beside each mean:

- :func:`plot_pair_distribution`: one column per scanner pair, the
  per-specimen pair scores as points (strip plot) and a box, the pair score
  with its 95% interval as an error bar (from ``PairConsistencyResult.ci95``
  when the bootstrap has run);
- :func:`plot_scanner_scores`: the same per scanner for a task metric
  against ground truth (unpaired protocol), with each scanner's trivial
  predictor as a dashed mark;
- :func:`plot_truth_overlays`: samples as rows, columns image, ground truth,
  prediction and where they differ (binary masks: true positive green, false
  positive red, false negative blue), with the class names in the legend;
- :func:`truth_error_map`: that last column as an RGB image.

Examples:
    >>> import tempfile, pathlib
    >>> path = plot_scanner_scores(
    ...     {"A": [0.8, 0.7, 0.9], "B": [0.4, 0.6, 0.5]},
    ...     pathlib.Path(tempfile.mkdtemp()) / "s.png",
    ...     metric="Dice",
    ...     ci95={"A": [0.7, 0.9], "B": [0.4, 0.6]},
    ... )
    >>> path.read_bytes()[:4] == b"\x89PNG"
    True

"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from tia_scanner_robust.report.figures import CLASS_COLOURS, label_overlay, save_figure

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

    from matplotlib.axes import Axes

    from tia_scanner_robust.metrics.functional import PairConsistencyResult

__all__ = [
    "ERROR_COLOURS",
    "plot_gallery",
    "plot_pair_distribution",
    "plot_scanner_scores",
    "plot_truth_overlays",
    "truth_error_map",
]

#: Colours of :func:`truth_error_map`: agreement, false positive, false negative, other error.
ERROR_COLOURS: dict[str, tuple[int, int, int]] = {
    "true positive": (40, 170, 70),
    "false positive": (220, 40, 40),
    "false negative": (40, 90, 220),
    "wrong class": (230, 160, 20),
}


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure  # noqa: PLC0415 - plotting only

    return Figure(figsize=(width, height), layout="constrained")


def _strips(
    ax: Axes,
    columns: Sequence[tuple[str, np.ndarray, float, Sequence[float] | None]],
    *,
    seed: int = 0,
) -> None:
    """Points, a box and the mean with its interval, one column each."""
    rng = np.random.default_rng(seed)
    for x, (_, values, mean, ci) in enumerate(columns):
        finite = values[np.isfinite(values)]
        if finite.size:
            jitter = rng.uniform(-0.18, 0.18, size=finite.size)
            ax.scatter(x + jitter, finite, s=12, color="#7c93c3", alpha=0.6, linewidths=0)
            ax.boxplot([finite], positions=[x], widths=0.5, showfliers=False, manage_ticks=False)
        if math.isfinite(mean):
            if ci is not None and all(v is not None for v in ci):
                low, high = float(ci[0]), float(ci[1])
                ax.errorbar(
                    [x + 0.32],
                    [mean],
                    yerr=[[max(0.0, mean - low)], [max(0.0, high - mean)]],
                    fmt="D",
                    color="#c0392b",
                    capsize=4,
                    markersize=5,
                )
            else:
                ax.plot([x + 0.32], [mean], "D", color="#c0392b", markersize=5)
    ax.set_xticks(range(len(columns)), [c[0] for c in columns], rotation=25, ha="right")
    ax.grid(axis="y", alpha=0.3)


def plot_pair_distribution(
    result: PairConsistencyResult, path: str | Path, *, dpi: int = 110
) -> Path:
    """Per-specimen pair scores per scanner pair, with the pair score and its 95% interval.

    Args:
        result: A pair-consistency result; its ``ci95["pairs"]`` (set by
            :func:`~tia_scanner_robust.metrics.functional.bootstrap_consistency`)
            gives the error bars (none drawn when absent).
        path: PNG destination.
        dpi: Resolution.

    Returns:
        The path written.

    Examples:
        >>> import tempfile, pathlib, numpy as np
        >>> from tia_scanner_robust.metrics.functional import pairwise_consistency
        >>> pc = pairwise_consistency({"A": [0.2, 0.9], "B": [0.3, 0.8]}, "abs_prob")
        >>> plot_pair_distribution(pc, pathlib.Path(tempfile.mkdtemp()) / "p.png").suffix
        '.png'

    """
    intervals = (getattr(result, "ci95", None) or {}).get("pairs") or {}
    columns = [
        (
            f"{a} vs {b}",
            np.asarray(result.per_sample.get((a, b), []), dtype=np.float64).reshape(-1),
            float(result.pairs[(a, b)]),
            intervals.get((a, b)),
        )
        for a, b in result.pairs
    ]
    sign = 1.0 if result.higher_is_better else -1.0
    columns.sort(key=lambda c: sign * c[2] if math.isfinite(c[2]) else math.inf)  # worst first
    fig = _figure(min(11.0, max(5.5, 0.85 * len(columns) + 2.5)), 4.2)
    ax = fig.subplots()
    _strips(ax, columns)
    direction = "higher is better" if result.higher_is_better else "lower is better"
    ax.set_ylabel(f"{result.score} per specimen ({direction})")
    ax.set_title(
        f"{result.score} per scanner pair\npoints: specimens; red: pair score"
        + (" with 95% bootstrap interval" if intervals else ""),
        fontsize=9,
    )
    return save_figure(fig, path, dpi=dpi)


def plot_scanner_scores(
    values: Mapping[str, Sequence[float]],
    path: str | Path,
    *,
    metric: str,
    ci95: Mapping[str, Sequence[float] | None] | None = None,
    trivial: Mapping[str, float | None] | None = None,
    dpi: int = 110,
) -> Path:
    """A task metric per scanner: samples as points, mean with its 95% interval, trivial mark.

    Args:
        values: Scanner -> per-sample scores.
        path: PNG destination.
        metric: Name of the score (axis label).
        ci95: Scanner -> ``[low, high]`` of its mean.
        trivial: Scanner -> the trivial predictor's score (dashed mark).
        dpi: Resolution.

    Returns:
        The path written.

    """
    ci95 = ci95 or {}
    columns = []
    for scanner, raw in values.items():
        arr = np.asarray(raw, dtype=np.float64).reshape(-1)
        mean = float(np.nanmean(arr)) if np.isfinite(arr).any() else float("nan")
        columns.append((scanner, arr, mean, ci95.get(scanner)))
    fig = _figure(max(5.0, 1.3 * len(columns) + 2.5), 4.0)
    ax = fig.subplots()
    _strips(ax, columns)
    drew = False
    for x, scanner in enumerate(values):
        level = (trivial or {}).get(scanner)
        if level is not None and math.isfinite(level):
            ax.hlines(level, x - 0.4, x + 0.4, colors="#444444", linestyles="dashed")
            drew = True
    ax.set_ylabel(f"{metric} per sample (against ground truth)")
    title = f"{metric} per scanner\npoints: samples; red: mean with 95% bootstrap interval"
    ax.set_title(title + ("; dashed: trivial predictor" if drew else ""), fontsize=9)
    return save_figure(fig, path, dpi=dpi)


def truth_error_map(image: np.ndarray, prediction: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Where a prediction differs from the truth, coloured over the faded image.

    Binary (classes 0/1): true positives green, false positives red, false
    negatives blue; several classes: any wrong class orange
    (:data:`ERROR_COLOURS`).

    Examples:
        >>> import numpy as np
        >>> out = truth_error_map(
        ...     np.zeros((1, 3, 3), np.uint8), np.array([[1, 1, 0]]), np.array([[1, 0, 1]])
        ... )
        >>> out[0].tolist()
        [[40, 170, 70], [220, 40, 40], [40, 90, 220]]

    """
    pred = np.asarray(prediction, dtype=np.int64)
    true = np.asarray(truth, dtype=np.int64)
    out = image.astype(np.float64) * 0.35 + 255 * 0.65
    binary = max(int(pred.max(initial=0)), int(true.max(initial=0))) <= 1
    if binary:
        out[(pred == 1) & (true == 1)] = ERROR_COLOURS["true positive"]
        out[(pred == 1) & (true == 0)] = ERROR_COLOURS["false positive"]
        out[(pred == 0) & (true == 1)] = ERROR_COLOURS["false negative"]
    else:
        out[pred != true] = ERROR_COLOURS["wrong class"]
    return out.astype(np.uint8)


def plot_truth_overlays(
    rows: Sequence[Mapping[str, Any]],
    path: str | Path,
    *,
    class_names: Mapping[int, str] | None = None,
    dpi: int = 100,
) -> Path:
    """Samples as rows: image, truth overlay, prediction overlay, error map.

    Args:
        rows: Each ``{"image", "prediction", "truth", "title"}`` (label maps in
            the same classes, the image's size).
        path: PNG destination.
        class_names: Class index -> name (the legend).
        dpi: Resolution.

    Returns:
        The path written.

    Raises:
        ValueError: If ``rows`` is empty.

    """
    if not rows:
        msg = "rows is empty: no sample to draw."
        raise ValueError(msg)
    fig = _figure(12.0, 3.1 * len(rows) + 0.8)
    axes = np.atleast_2d(fig.subplots(len(rows), 4))
    classes: set[int] = set()
    binary = True
    for r, row in enumerate(rows):
        image, pred, truth = row["image"], np.asarray(row["prediction"]), np.asarray(row["truth"])
        classes |= set(np.unique(pred).tolist()) | set(np.unique(truth).tolist())
        binary &= max(int(pred.max(initial=0)), int(truth.max(initial=0))) <= 1
        panels = (
            (image, str(row.get("title", ""))),
            (label_overlay(image, truth), "ground truth"),
            (label_overlay(image, pred), "prediction"),
            (truth_error_map(image, pred, truth), "prediction vs truth"),
        )
        for c, (picture, title) in enumerate(panels):
            axes[r, c].imshow(picture)
            axes[r, c].set_title(title, fontsize=8 if c == 0 else 9)
            axes[r, c].axis("off")
    from matplotlib.patches import Patch  # noqa: PLC0415

    names = dict(class_names or {})
    handles = [
        Patch(
            facecolor=np.array(CLASS_COLOURS[c % len(CLASS_COLOURS)]) / 255.0,
            edgecolor="black",
            label=names.get(c, f"class {c}"),
        )
        for c in sorted(classes)
        if c != 0
    ]
    errors = ("true positive", "false positive", "false negative") if binary else ("wrong class",)
    handles += [
        Patch(facecolor=np.array(ERROR_COLOURS[e]) / 255.0, edgecolor="black", label=e)
        for e in errors
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(6, len(handles)), fontsize=9)
    return save_figure(fig, path, dpi=dpi)


def plot_gallery(
    images: Sequence[np.ndarray],
    captions: Sequence[str],
    path: str | Path,
    *,
    columns: int = 4,
    dpi: int = 100,
) -> Path:
    """Images in a grid with one caption each (e.g. typical tiles of each scanner).

    Args:
        images: RGB uint8 images.
        captions: One line per image.
        path: PNG destination.
        columns: Images per row.
        dpi: Resolution.

    Returns:
        The path written.

    Raises:
        ValueError: If ``images`` is empty or the lengths differ.

    """
    if not images or len(images) != len(captions):
        msg = f"need as many captions as images, got {len(images)} and {len(captions)}."
        raise ValueError(msg)
    cols = min(columns, len(images))
    rows = math.ceil(len(images) / cols)
    fig = _figure(3.0 * cols, 3.1 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, image, caption in zip(axes, images, captions, strict=False):
        ax.imshow(image)
        ax.set_title(caption, fontsize=8, wrap=True)
    return save_figure(fig, path, dpi=dpi)
