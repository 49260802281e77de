"""WSI-mode helpers of the evaluator: geometry, region masks, streamed reads.

Private module: the evaluator runs TIAToolbox's engines with
``patch_mode=False`` on whole-slide images and then needs to

- map a sample's region (baseline ``x, y``; ``width, height`` at the sample's
  ``mpp``) into the engine's output grid (:func:`region_box`);
- restrict the engine to the regions it needs (:func:`region_mask`);
- compare two scanners' output canvases region by region without loading a
  whole slide (:class:`CanvasDice`, :func:`class_fractions`, read in blocks of
  rows from the zarr arrays the engines write);
- pool per-patch outputs (classification, embeddings) over a region
  (:func:`pool_patches`).

Examples:
    >>> import numpy as np
    >>> a = np.array([[0, 1], [1, 1]])
    >>> b = np.array([[0, 1], [0, 1]])
    >>> counts = confusion_counts(a, b, 2)
    >>> dice_from_confusion(counts, ignore_background=False)  # as paired_dice
    0.733...

"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "CanvasDice",
    "RegionHandle",
    "class_fractions",
    "confusion_counts",
    "dice_from_confusion",
    "pool_patches",
    "read_canvas",
    "region_box",
    "region_mask",
    "slide_geometry",
]

#: Pixels read per block when streaming a canvas (about 16 MB of uint8 labels).
BLOCK_PIXELS = 1 << 24


@dataclass(frozen=True)
class RegionHandle:
    """Where one sample's prediction lives: a box of a zarr canvas.

    Attributes:
        zarr_path: The engine's output zarr group.
        box: ``(x0, y0, x1, y1)`` in the canvas' pixels (output resolution).
    """

    zarr_path: str
    box: tuple[int, int, int, int]

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` of the box."""
        x0, y0, x1, y1 = self.box
        return (y1 - y0, x1 - x0)


def slide_geometry(path: str | Path, resolution: float, units: str) -> dict[str, Any]:
    """Baseline size, read size and pixel size of a WSI at the engine's resolution.

    Returns:
        Dict with ``baseline`` ``(w, h)``, ``read`` ``(w, h)`` (at
        ``resolution``/``units``), ``scale`` ``(sx, sy)`` = read / baseline and
        ``mpp`` (baseline microns per pixel or ``None``).

    Raises:
        ValueError: If the slide cannot be opened, or ``units`` is ``"mpp"``
            and the slide has no pixel-size metadata.

    """
    from tiatoolbox.wsicore.wsireader import WSIReader  # noqa: PLC0415

    try:
        reader = WSIReader.open(path)
    except Exception as error:
        msg = f"Could not open whole-slide image {path}: {error}"
        raise ValueError(msg) from error
    info = reader.info
    mpp = None if info.mpp is None else float(np.asarray(info.mpp, dtype=float)[0])
    if units == "mpp" and mpp is None:
        msg = (
            f"Whole-slide image {path} has no pixel-size (mpp) metadata, but the model's IO "
            "config reads at units='mpp'. Pass an ioconfig with units='baseline' "
            "(e.g. classical_ioconfig(units='baseline', resolution=1.0))."
        )
        raise ValueError(msg)
    base_w, base_h = (int(v) for v in info.slide_dimensions)
    read_w, read_h = (int(v) for v in reader.slide_dimensions(resolution=resolution, units=units))
    return {
        "baseline": (base_w, base_h),
        "read": (read_w, read_h),
        "scale": (read_w / base_w, read_h / base_h),
        "mpp": mpp,
    }


def region_box(
    region: tuple[int, int, int, int] | None,
    sample_mpp: float | None,
    geometry: dict[str, Any],
    canvas_shape: tuple[int, int] | None = None,
) -> tuple[int, int, int, int]:
    """A sample's region as ``(x0, y0, x1, y1)`` in the engine's output grid.

    ``region`` follows :class:`~tia_scanner_robust.data.paired.PairedSample`:
    ``x, y`` in baseline pixels, ``width, height`` in pixels at ``sample_mpp``
    (baseline pixels when ``sample_mpp`` or the slide's mpp is unknown). No
    region means the whole slide. The box is clipped to ``canvas_shape``.

    Examples:
        >>> geo = {"baseline": (1000, 800), "read": (500, 400), "scale": (0.5, 0.5), "mpp": 0.25}
        >>> region_box((100, 200, 50, 50), 0.5, geo)  # 50 px at 0.5 mpp = 100 baseline px
        (50, 100, 100, 150)
        >>> region_box(None, None, geo)
        (0, 0, 500, 400)

    """
    sx, sy = geometry["scale"]
    read_w, read_h = geometry["read"]
    if canvas_shape is not None:
        read_h, read_w = int(canvas_shape[0]), int(canvas_shape[1])
    if region is None:
        return (0, 0, read_w, read_h)
    x, y, w, h = region
    factor = 1.0
    if sample_mpp is not None and geometry.get("mpp"):
        factor = float(sample_mpp) / float(geometry["mpp"])
    x0 = round(x * sx)
    y0 = round(y * sy)
    x1 = round((x + w * factor) * sx)
    y1 = round((y + h * factor) * sy)
    x0, x1 = max(0, min(x0, read_w)), max(0, min(x1, read_w))
    y0, y1 = max(0, min(y0, read_h)), max(0, min(y1, read_h))
    return (x0, y0, max(x1, x0), max(y1, y0))


def region_mask(
    boxes_baseline: list[tuple[float, float, float, float]],
    baseline: tuple[int, int],
    *,
    max_side: int = 2048,
) -> np.ndarray:
    """Low-resolution binary mask covering the given baseline boxes (dilated by a pixel).

    TIAToolbox scales a mask array to the slide, so the engine processes only
    the patches that overlap the regions.

    Examples:
        >>> m = region_mask([(100, 100, 300, 200)], (1000, 1000), max_side=100)
        >>> m.shape, int(m.sum()) > 0, int(m[50, 50])
        ((100, 100), True, 0)

    """
    base_w, base_h = baseline
    down = max(1.0, max(base_w, base_h) / max_side)
    mask = np.zeros((max(1, math.ceil(base_h / down)), max(1, math.ceil(base_w / down))), np.uint8)
    for x0, y0, x1, y1 in boxes_baseline:
        c0 = max(0, math.floor(x0 / down) - 1)
        r0 = max(0, math.floor(y0 / down) - 1)
        c1 = min(mask.shape[1], math.ceil(x1 / down) + 1)
        r1 = min(mask.shape[0], math.ceil(y1 / down) + 1)
        mask[r0:r1, c0:c1] = 1
    return mask


def _open_array(zarr_path: str, key: str) -> Any:
    import zarr  # noqa: PLC0415

    group = zarr.open_group(zarr_path, mode="r")
    if key not in group:
        msg = f"Engine output {zarr_path} has no {key!r} array (found {sorted(group.keys())})."
        raise ValueError(msg)
    return group[key]


def read_canvas(handle: RegionHandle, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a (small) box of a prediction canvas as an integer array.

    Args:
        handle: Canvas and box.
        shape: Read only the top-left ``(height, width)`` of the box.

    """
    x0, y0, x1, y1 = handle.box
    if shape is not None:
        y1, x1 = y0 + int(shape[0]), x0 + int(shape[1])
    arr = _open_array(handle.zarr_path, "predictions")
    return np.asarray(arr[y0:y1, x0:x1]).astype(np.int64)


def _row_blocks(height: int, width: int) -> list[tuple[int, int]]:
    rows = max(1, BLOCK_PIXELS // max(1, width))
    return [(r, min(r + rows, height)) for r in range(0, height, rows)]


def confusion_counts(labels_a: np.ndarray, labels_b: np.ndarray, num_classes: int) -> np.ndarray:
    """``(K, K)`` joint histogram of two label maps (``K = num_classes``)."""
    a = np.asarray(labels_a, dtype=np.int64).ravel()
    b = np.asarray(labels_b, dtype=np.int64).ravel()
    if a.size and (min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= num_classes):
        msg = f"labels must be in [0, {num_classes}); got values outside."
        raise ValueError(msg)
    return np.bincount(a * num_classes + b, minlength=num_classes**2).reshape(
        num_classes, num_classes
    )


def dice_from_confusion(counts: np.ndarray, *, ignore_background: bool = False) -> float:
    """Dice averaged over classes present in either map, from a confusion matrix.

    The same rule as :func:`tia_scanner_robust.metrics.functional.paired_dice`
    (a class absent from both maps is skipped; two empty maps score 1), on
    counts accumulated block by block over a whole canvas.
    """
    counts = np.asarray(counts, dtype=np.float64)
    inter = np.diag(counts)
    total = counts.sum(axis=1) + counts.sum(axis=0)
    present = total > 0
    if ignore_background:
        present[0] = False
    if not present.any():
        return 1.0
    return float(np.mean(2.0 * inter[present] / total[present]))


class CanvasDice:
    """Pair score for :class:`~tia_scanner_robust.metrics.consistency.PairedConsistency`.

    Rows of ``a`` and ``b`` are integer ids into ``handles``; each pair of
    boxes is compared on their common (top-left aligned) extent, streaming
    blocks of rows from the zarr canvases and accumulating a confusion matrix.

    Args:
        handles: The boxes, indexed by the ids fed to the metric.
        num_classes: Number of classes of the label maps.
        ignore_background: Skip class 0 in the average.
    """

    __name__ = "dice"

    def __init__(
        self, handles: list[RegionHandle], num_classes: int, *, ignore_background: bool = False
    ) -> None:
        self.handles = handles
        self.num_classes = int(num_classes)
        self.ignore_background = ignore_background

    def pair(self, ha: RegionHandle, hb: RegionHandle) -> float:
        """Dice between two boxes (common extent)."""
        height = min(ha.shape[0], hb.shape[0])
        width = min(ha.shape[1], hb.shape[1])
        if height == 0 or width == 0:
            return float("nan")
        arr_a = _open_array(ha.zarr_path, "predictions")
        arr_b = _open_array(hb.zarr_path, "predictions")
        counts = np.zeros((self.num_classes, self.num_classes), np.int64)
        for r0, r1 in _row_blocks(height, width):
            block_a = np.asarray(
                arr_a[ha.box[1] + r0 : ha.box[1] + r1, ha.box[0] : ha.box[0] + width]
            )
            block_b = np.asarray(
                arr_b[hb.box[1] + r0 : hb.box[1] + r1, hb.box[0] : hb.box[0] + width]
            )
            counts += confusion_counts(block_a, block_b, self.num_classes)
        return dice_from_confusion(counts, ignore_background=self.ignore_background)

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Scores of row-aligned id arrays ``a`` and ``b``."""
        a = np.asarray(a, dtype=np.int64).ravel()
        b = np.asarray(b, dtype=np.int64).ravel()
        return np.array(
            [self.pair(self.handles[i], self.handles[j]) for i, j in zip(a, b, strict=True)]
        )


def class_fractions(handle: RegionHandle, num_classes: int) -> np.ndarray:
    """Fraction of the box's pixels in each class, streamed by blocks of rows."""
    height, width = handle.shape
    if height == 0 or width == 0:
        return np.full(num_classes, np.nan)
    arr = _open_array(handle.zarr_path, "predictions")
    counts = np.zeros(num_classes, np.int64)
    x0, y0 = handle.box[:2]
    for r0, r1 in _row_blocks(height, width):
        block = np.asarray(arr[y0 + r0 : y0 + r1, x0 : x0 + width]).astype(np.int64)
        counts += np.bincount(block.ravel(), minlength=num_classes)[:num_classes]
    return counts / max(1, height * width)


def pool_patches(
    zarr_path: str, key: str, box: tuple[int, int, int, int], *, block_rows: int = 8192
) -> np.ndarray:
    """Area-weighted mean of per-patch outputs over the patches overlapping ``box``.

    Args:
        zarr_path: Engine output with ``coordinates`` ``(P, 4)`` (x0, y0, x1,
            y1 at the read resolution) and ``key`` ``(P, D)``.
        key: ``"probabilities"`` or ``"features"``.
        box: ``(x0, y0, x1, y1)`` at the read resolution.
        block_rows: Patches read per block.

    Returns:
        ``(D,)`` mean (NaN when no patch overlaps the box).

    """
    coords = np.asarray(_open_array(zarr_path, "coordinates")[:], dtype=np.float64)
    values = _open_array(zarr_path, key)
    bx0, by0, bx1, by1 = box
    ow = np.clip(np.minimum(coords[:, 2], bx1) - np.maximum(coords[:, 0], bx0), 0, None)
    oh = np.clip(np.minimum(coords[:, 3], by1) - np.maximum(coords[:, 1], by0), 0, None)
    weight = ow * oh
    dim = int(np.prod(values.shape[1:])) if len(values.shape) > 1 else 1
    total = np.zeros(dim)
    hit = np.flatnonzero(weight > 0)
    if hit.size == 0:
        return np.full(dim, np.nan)
    for start in range(0, hit.size, block_rows):
        idx = hit[start : start + block_rows]
        lo, hi = int(idx.min()), int(idx.max()) + 1
        block = np.asarray(values[lo:hi], dtype=np.float64).reshape(hi - lo, -1)
        total += (block[idx - lo] * weight[idx, None]).sum(axis=0)
    return total / weight[hit].sum()
