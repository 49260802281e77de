"""Paired versus unpaired analysis of scanner differences (SCORPION, section 2.2).

- :func:`rgb_patch_statistics`: per patch and RGB channel, mean and standard
  deviation of the pixel values -> ``(N, 6)`` (mean R, G, B, std R, G, B).
- Unpaired analysis: every patch of every scanner plotted as it is.
- Paired analysis (:func:`paired_deviation`): the reference scanner's values
  of the same sample are subtracted, so the reference sits at ``(0, 0)`` and
  what is left is the scanner-induced shift.
- Features: any ``(N, D)`` arrays per scanner, projected jointly to 2-D with
  UMAP (seeded; PCA with a warning if UMAP fails) by :func:`project_2d`; the
  paired view subtracts the reference's projected coordinates.
- :func:`plot_paired_unpaired` draws both views with density contours per
  scanner (Gaussian KDE, highest-density regions) and writes PNG files
  atomically; :func:`deviation_summary` gives the numbers behind them.

Examples:
    >>> import numpy as np
    >>> from tia_scanner_robust.metrics.analysis import paired_deviation, rgb_patch_statistics
    >>> img = np.full((4, 4, 3), 100, np.uint8)
    >>> stats = {"AT2": rgb_patch_statistics([img]), "GT450": rgb_patch_statistics([img + 10])}
    >>> paired_deviation(stats)["GT450"]
    array([[10., 10., 10.,  0.,  0.,  0.]])

"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tia_scanner_robust._io import atomic_write_bytes, to_jsonable
from tia_scanner_robust._validation import check_in_choices, check_rgb_image
from tia_scanner_robust.seeding import make_rng

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from matplotlib.axes import Axes

__all__ = [
    "PROJECTIONS",
    "RGB_STAT_NAMES",
    "deviation_summary",
    "paired_deviation",
    "plot_paired_unpaired",
    "project_2d",
    "rgb_patch_statistics",
]

#: Column names of :func:`rgb_patch_statistics`.
RGB_STAT_NAMES = ("mean_R", "mean_G", "mean_B", "std_R", "std_G", "std_B")
#: 2-D projections known to :func:`project_2d`.
PROJECTIONS = ("umap", "pca")


def rgb_patch_statistics(images: np.ndarray | Iterable[np.ndarray]) -> np.ndarray:
    """Per patch and RGB channel: mean and standard deviation of the pixels.

    Values are on the 0-255 scale (float32 images in ``[0, 1]`` are scaled by
    255); the standard deviation is the population one (ddof=0).

    Args:
        images: ``(N, H, W, 3)`` array or an iterable of ``(H, W, 3)`` RGB
            images (uint8 or float32; sizes may differ).

    Returns:
        ``(N, 6)`` float64: mean R, G, B, then std R, G, B.

    Raises:
        ValueError: If there is no image or one is not RGB.

    Examples:
        >>> import numpy as np
        >>> img = np.zeros((2, 2, 3), np.uint8)
        >>> img[0, :, 0] = 255
        >>> rgb_patch_statistics([img]).round(2)
        array([[127.5,   0. ,   0. , 127.5,   0. ,   0. ]])

    """
    if isinstance(images, np.ndarray) and images.ndim == 4:
        if images.shape[0] == 0:
            msg = "images is empty."
            raise ValueError(msg)
        check_rgb_image(images[0], "images[0]")
        pixels = images.reshape(images.shape[0], -1, 3).astype(np.float64)
        scale = 255.0 if images.dtype == np.float32 else 1.0
        return np.concatenate([pixels.mean(axis=1), pixels.std(axis=1)], axis=1) * scale
    rows = []
    for i, image in enumerate(images):
        check_rgb_image(image, f"images[{i}]")
        pixels = image.reshape(-1, 3).astype(np.float64)
        scale = 255.0 if image.dtype == np.float32 else 1.0
        rows.append(np.concatenate([pixels.mean(axis=0), pixels.std(axis=0)]) * scale)
    if not rows:
        msg = "images is empty."
        raise ValueError(msg)
    return np.stack(rows)


def _check_by_scanner(
    values_by_scanner: Mapping[str, object], name: str, *, aligned: bool
) -> dict[str, np.ndarray]:
    if not values_by_scanner:
        msg = f"{name} is empty: pass a dict scanner -> (N, K) array."
        raise ValueError(msg)
    out = {}
    for scanner, values in values_by_scanner.items():
        arr = np.asarray(values, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[0] == 0:
            msg = f"{name}[{scanner!r}] must be a non-empty (N, K) array, got shape {arr.shape}."
            raise ValueError(msg)
        if not np.isfinite(arr).all():
            msg = f"{name}[{scanner!r}] contains NaN or inf."
            raise ValueError(msg)
        out[str(scanner)] = arr
    columns = {a.shape[1] for a in out.values()}
    if len(columns) != 1:
        msg = f"{name}: every scanner needs the same number of columns, got {sorted(columns)}."
        raise ValueError(msg)
    if aligned:
        shapes = {s: a.shape[0] for s, a in out.items()}
        if len(set(shapes.values())) != 1:
            msg = (
                f"{name}: the paired analysis needs the same samples (rows aligned by "
                f"specimen) for every scanner; got row counts {shapes}."
            )
            raise ValueError(msg)
    return out


def _reference(scanners: Sequence[str], reference: str | None) -> str:
    if reference is None:
        return scanners[0]
    return check_in_choices(str(reference), scanners, "reference")


def paired_deviation(
    values_by_scanner: Mapping[str, object], reference: str | None = None
) -> dict[str, np.ndarray]:
    """Subtract the reference scanner's values of the same sample.

    Args:
        values_by_scanner: Scanner -> ``(N, K)`` values (RGB statistics,
            features or 2-D projections), rows aligned by specimen.
        reference: The reference scanner (default: the first key; SCORPION
            uses AT2).

    Returns:
        Scanner -> ``(N, K)`` deviations; the reference's are all zero.

    Examples:
        >>> import numpy as np
        >>> paired_deviation({"A": np.array([[1.0, 2.0]]), "B": np.array([[3.0, 3.0]])})["B"]
        array([[2., 1.]])

    """
    values = _check_by_scanner(values_by_scanner, "values_by_scanner", aligned=True)
    ref = values[_reference(list(values), reference)]
    return {scanner: arr - ref for scanner, arr in values.items()}


def deviation_summary(
    values_by_scanner: Mapping[str, object],
    reference: str | None = None,
    columns: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Numbers behind the paired/unpaired plots (strict-JSON dict).

    For each scanner: ``unpaired_mean`` (mean of its values),
    ``centroid_shift`` (distance of its centroid from the reference's, which
    is what an unpaired view shows), ``paired_mean`` and ``paired_std`` (mean
    and std of the per-sample deviations from the reference) and
    ``paired_mean_norm`` (mean Euclidean norm of the per-sample deviation).

    Args:
        values_by_scanner: Scanner -> ``(N, K)`` aligned values.
        reference: Reference scanner (default: the first key).
        columns: Column names (default: ``RGB_STAT_NAMES`` for 6 columns,
            else ``c0, c1, ...``).

    Returns:
        ``{"reference": ..., "columns": [...], "scanners": {scanner: {...}}}``.

    Examples:
        >>> import numpy as np
        >>> a = np.array([[0.0, 0.0], [1.0, 1.0]])
        >>> out = deviation_summary({"A": a, "B": a + [3.0, 4.0]})
        >>> out["scanners"]["B"]["paired_mean_norm"], out["scanners"]["B"]["centroid_shift"]
        (5.0, 5.0)

    """
    values = _check_by_scanner(values_by_scanner, "values_by_scanner", aligned=True)
    ref_name = _reference(list(values), reference)
    deviations = paired_deviation(values, ref_name)
    n_cols = next(iter(values.values())).shape[1]
    if columns is None:
        columns = (
            RGB_STAT_NAMES if n_cols == len(RGB_STAT_NAMES) else [f"c{i}" for i in range(n_cols)]
        )
    if len(columns) != n_cols:
        msg = f"columns has {len(columns)} names for {n_cols} columns."
        raise ValueError(msg)
    ref_centroid = values[ref_name].mean(axis=0)
    scanners = {}
    for scanner, arr in values.items():
        dev = deviations[scanner]
        scanners[scanner] = {
            "unpaired_mean": arr.mean(axis=0),
            "centroid_shift": float(np.linalg.norm(arr.mean(axis=0) - ref_centroid)),
            "paired_mean": dev.mean(axis=0),
            "paired_std": dev.std(axis=0),
            "paired_mean_norm": float(np.linalg.norm(dev, axis=1).mean()),
        }
    return to_jsonable({"reference": ref_name, "columns": list(columns), "scanners": scanners})


def _pca_2d(data: np.ndarray) -> np.ndarray:
    """First two principal components (deterministic signs)."""
    centred = data - data.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    comps = vt[:2]
    if comps.shape[0] < 2:  # a single feature: pad with a zero axis
        comps = np.vstack([comps, np.zeros((2 - comps.shape[0], data.shape[1]))])
    signs = np.sign(comps[np.arange(2), np.argmax(np.abs(comps), axis=1)])
    signs[signs == 0] = 1.0
    return centred @ (comps * signs[:, None]).T


def project_2d(
    features_by_scanner: Mapping[str, object],
    *,
    method: str = "umap",
    seed: int = 0,
    n_neighbors: int = 15,
    **umap_kwargs: Any,
) -> dict[str, np.ndarray]:
    """Project every scanner's features into one shared 2-D space.

    All scanners are fitted together (one embedding), then split back.
    ``method="umap"`` uses umap-learn with ``random_state=seed``
    (``n_neighbors`` is capped at ``n_samples - 1``); if it is missing or
    fails (e.g. too few samples) a warning is issued and PCA is used.

    Args:
        features_by_scanner: Scanner -> ``(N_s, D)`` features.
        method: ``"umap"`` (default) or ``"pca"``.
        seed: Seed of the UMAP layout.
        n_neighbors: UMAP's neighbourhood size.
        **umap_kwargs: Passed to ``umap.UMAP``.

    Returns:
        Scanner -> ``(N_s, 2)`` coordinates.

    Examples:
        >>> import numpy as np
        >>> x = np.random.default_rng(0).normal(size=(5, 8))
        >>> out = project_2d({"A": x, "B": x + 1}, method="pca")
        >>> out["A"].shape
        (5, 2)

    """
    return _project(features_by_scanner, method, seed, n_neighbors, **umap_kwargs)[0]


def _project(
    features_by_scanner: Mapping[str, object],
    method: str,
    seed: int,
    n_neighbors: int,
    **umap_kwargs: Any,
) -> tuple[dict[str, np.ndarray], str]:
    """:func:`project_2d` plus the method actually used (after a fallback)."""
    check_in_choices(method, PROJECTIONS, "method")
    feats = _check_by_scanner(features_by_scanner, "features_by_scanner", aligned=False)
    sizes = [a.shape[0] for a in feats.values()]
    data = np.concatenate(list(feats.values()))
    coords = None
    if method == "umap":
        try:
            import umap  # noqa: PLC0415 - heavy optional import (numba JIT)

            reducer = umap.UMAP(
                n_components=2,
                random_state=seed,
                n_neighbors=max(2, min(int(n_neighbors), data.shape[0] - 1)),
                **umap_kwargs,
            )
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*n_jobs.*overridden.*")
                coords = np.asarray(reducer.fit_transform(data), dtype=np.float64)
            if coords.shape != (data.shape[0], 2) or not np.isfinite(coords).all():
                msg = f"UMAP returned an invalid embedding of shape {coords.shape}."
                raise ValueError(msg)
        except Exception as exc:  # noqa: BLE001 - any UMAP failure falls back to PCA
            warnings.warn(
                f"UMAP projection failed ({type(exc).__name__}: {exc}); using PCA instead.",
                RuntimeWarning,
                stacklevel=2,
            )
            coords = None
    if coords is None:
        coords, method = _pca_2d(data), "pca"
    splits = np.cumsum(sizes)[:-1]
    return dict(zip(feats, np.split(coords, splits), strict=True)), method


# --------------------------------------------------------------------------- #
# Plots
# --------------------------------------------------------------------------- #
def _density_contours(
    ax: Axes, xy: np.ndarray, color: Any, levels: Sequence[float], *, seed: int = 0
) -> bool:
    """Highest-density-region contours of a Gaussian KDE; False if degenerate."""
    from scipy.stats import gaussian_kde  # noqa: PLC0415 - only needed for plots

    min_points = 3
    if xy.shape[0] < min_points or np.ptp(xy, axis=0).min() <= 0:
        return False
    pts = xy
    max_points = 2000  # KDE cost grows with points x grid
    if pts.shape[0] > max_points:
        pts = pts[make_rng(seed).choice(pts.shape[0], max_points, replace=False)]
    try:
        kde = gaussian_kde(pts.T)
        lo, hi = xy.min(axis=0), xy.max(axis=0)
        pad = 0.15 * (hi - lo)
        gx, gy = np.meshgrid(
            np.linspace(lo[0] - pad[0], hi[0] + pad[0], 80),
            np.linspace(lo[1] - pad[1], hi[1] + pad[1], 80),
        )
        grid = kde(np.vstack([gx.ravel(), gy.ravel()])).reshape(gx.shape)
        at_points = kde(pts.T)
    except (np.linalg.LinAlgError, ValueError):
        return False
    # the density above which a fraction `mass` of the points lies
    thresholds = sorted({float(np.quantile(at_points, 1.0 - m)) for m in levels})
    thresholds = [t for t in thresholds if grid.min() < t < grid.max()]
    if not thresholds:
        return False
    ax.contour(gx, gy, grid, levels=thresholds, colors=[color], linewidths=1.2, alpha=0.9)
    return True


def _scatter_panel(
    ax: Axes,
    points: Mapping[str, np.ndarray],
    colors: Mapping[str, Any],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    levels: Sequence[float],
    reference: str | None = None,
) -> None:
    for scanner, xy in points.items():
        color = colors[scanner]
        if scanner == reference:
            ax.scatter(
                [0.0],
                [0.0],
                marker="*",
                s=160,
                color=color,
                edgecolors="black",
                zorder=5,
                label=f"{scanner} (reference)",
            )
            continue
        ax.scatter(xy[:, 0], xy[:, 1], s=8, alpha=0.35, color=color, linewidths=0, label=scanner)
        _density_contours(ax, xy, color, levels)
    if reference is not None:
        ax.axhline(0.0, color="grey", lw=0.6, ls="--")
        ax.axvline(0.0, color="grey", lw=0.6, ls="--")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(visible=True, alpha=0.2)


def _legend(fig: Any, ax: Axes) -> None:
    """One figure legend with opaque markers of one readable size."""
    handles, labels = ax.get_legend_handles_labels()
    legend = fig.legend(handles, labels, loc="outside right center", title="scanner", fontsize=9)
    for handle in legend.legend_handles:
        handle.set_alpha(1.0)
        if hasattr(handle, "set_sizes"):
            handle.set_sizes([50.0])


def _save_figure(fig: Any, path: Path, dpi: int) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return atomic_write_bytes(path, buffer.getvalue())


def plot_paired_unpaired(
    out_dir: str | Path,
    *,
    stats_by_scanner: Mapping[str, object] | None = None,
    features_by_scanner: Mapping[str, object] | None = None,
    reference: str | None = None,
    projection: str = "umap",
    seed: int = 0,
    prefix: str = "",
    levels: Sequence[float] = (0.25, 0.5, 0.8),
    dpi: int = 150,
) -> list[Path]:
    """Draw the unpaired and paired views (SCORPION Fig. 2) as PNG files.

    - ``{prefix}rgb_paired_unpaired.png`` (with ``stats_by_scanner``): 2 rows
      (unpaired, paired) x 3 columns (R, G, B), x = channel mean,
      y = channel std.
    - ``{prefix}features_paired_unpaired.png`` (with ``features_by_scanner``):
      the joint 2-D projection (unpaired) and its deviation from the
      reference's coordinates of the same sample (paired).

    Each scanner has one colour, its points and density contours enclosing
    the ``levels`` fractions of its points (Gaussian KDE); the reference is a
    star at (0, 0) in the paired views. Files are written atomically.

    Args:
        out_dir: Output folder (created).
        stats_by_scanner: Scanner -> ``(N, 6)`` from :func:`rgb_patch_statistics`.
        features_by_scanner: Scanner -> ``(N, D)`` features, rows aligned.
        reference: Reference scanner (default: the first key).
        projection: ``"umap"`` (default) or ``"pca"``.
        seed: Seed of the projection.
        prefix: File name prefix.
        levels: Probability masses of the contours.
        dpi: Resolution.

    Returns:
        The paths written.

    Raises:
        ValueError: If neither input is given, or the inputs are not aligned.

    Examples:
        >>> import tempfile, numpy as np
        >>> rng = np.random.default_rng(0)
        >>> stats = {s: rng.normal(150, 10, size=(20, 6)) for s in ("AT2", "GT450")}
        >>> paths = plot_paired_unpaired(tempfile.mkdtemp(), stats_by_scanner=stats)
        >>> [p.name for p in paths]
        ['rgb_paired_unpaired.png']

    """
    from matplotlib.figure import Figure  # noqa: PLC0415 - plotting only

    if stats_by_scanner is None and features_by_scanner is None:
        msg = "pass stats_by_scanner and/or features_by_scanner."
        raise ValueError(msg)
    check_in_choices(projection, PROJECTIONS, "projection")
    out_dir = Path(out_dir)
    paths = []
    palette = [f"C{i}" for i in range(10)]

    if stats_by_scanner is not None:
        stats = _check_by_scanner(stats_by_scanner, "stats_by_scanner", aligned=True)
        if next(iter(stats.values())).shape[1] != len(RGB_STAT_NAMES):
            msg = "stats_by_scanner must hold (N, 6) arrays from rgb_patch_statistics."
            raise ValueError(msg)
        ref = _reference(list(stats), reference)
        colors = {s: palette[i % len(palette)] for i, s in enumerate(stats)}
        deviations = paired_deviation(stats, ref)
        fig = Figure(figsize=(13, 8), layout="constrained")
        axes = fig.subplots(2, 3)
        for c, channel in enumerate("RGB"):
            _scatter_panel(
                axes[0, c],
                {s: v[:, [c, c + 3]] for s, v in stats.items()},
                colors,
                title=f"Unpaired: {channel} channel",
                xlabel=f"mean {channel} (0-255)",
                ylabel=f"std {channel}",
                levels=levels,
            )
            _scatter_panel(
                axes[1, c],
                {s: v[:, [c, c + 3]] for s, v in deviations.items()},
                colors,
                title=f"Paired (minus {ref}): {channel} channel",
                xlabel=f"delta mean {channel}",
                ylabel=f"delta std {channel}",
                levels=levels,
                reference=ref,
            )
        _legend(fig, axes[1, 0])
        fig.suptitle("Per-patch RGB statistics: unpaired vs paired analysis")
        paths.append(_save_figure(fig, out_dir / f"{prefix}rgb_paired_unpaired.png", dpi))

    if features_by_scanner is not None:
        feats = _check_by_scanner(features_by_scanner, "features_by_scanner", aligned=True)
        ref = _reference(list(feats), reference)
        colors = {s: palette[i % len(palette)] for i, s in enumerate(feats)}
        coords, used = _project(feats, projection, seed, 15)
        deviations = paired_deviation(coords, ref)
        fig = Figure(figsize=(11, 5), layout="constrained")
        ax_u, ax_p = fig.subplots(1, 2)
        name = used.upper()
        _scatter_panel(
            ax_u,
            coords,
            colors,
            title=f"Unpaired: features ({name})",
            xlabel=f"{name} 1",
            ylabel=f"{name} 2",
            levels=levels,
        )
        _scatter_panel(
            ax_p,
            deviations,
            colors,
            title=f"Paired (minus {ref}): features ({name})",
            xlabel=f"delta {name} 1",
            ylabel=f"delta {name} 2",
            levels=levels,
            reference=ref,
        )
        _legend(fig, ax_p)
        fig.suptitle("Features: unpaired vs paired analysis")
        paths.append(_save_figure(fig, out_dir / f"{prefix}features_paired_unpaired.png", dpi))
    return paths
