"""Small image helpers of the evaluator: resizing, cropping, thumbnails, RGB statistics.

Examples:
    >>> import numpy as np
    >>> downsample(np.zeros((768, 400, 3), np.uint8), nearest=False).shape
    (384, 200, 3)
    >>> min_uint(np.array([0, 300])).dtype
    dtype('uint16')

"""

from __future__ import annotations

import numpy as np

__all__ = ["EXAMPLE_SIDE", "centre_crop", "downsample", "min_uint", "resize", "rgb_stats"]

#: Longest side of the report's example images.
EXAMPLE_SIDE = 384


def resize(image: np.ndarray, shape: tuple[int, int], *, nearest: bool) -> np.ndarray:
    """``image`` resized to ``(height, width)`` (nearest for label maps, area when shrinking)."""
    import cv2  # noqa: PLC0415

    if tuple(image.shape[:2]) == tuple(shape):
        return image
    if nearest:
        interp = cv2.INTER_NEAREST
    elif shape[0] < image.shape[0]:
        interp = cv2.INTER_AREA
    else:
        interp = cv2.INTER_LINEAR
    src = image.astype(np.int32) if image.dtype.kind in "iub" and nearest else image
    out = cv2.resize(src, (int(shape[1]), int(shape[0])), interpolation=interp)
    return out.astype(image.dtype, copy=False)


def centre_crop(array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The centre ``(height, width)`` of ``array`` (unchanged if it is not larger)."""
    h, w = array.shape[:2]
    th, tw = int(shape[0]), int(shape[1])
    if (h, w) == (th, tw) or th > h or tw > w:
        return array
    y0, x0 = (h - th) // 2, (w - tw) // 2
    return array[y0 : y0 + th, x0 : x0 + tw]


def downsample(image: np.ndarray, *, nearest: bool, side: int = EXAMPLE_SIDE) -> np.ndarray:
    """``image`` shrunk so that its longest side is at most ``side``."""
    h, w = image.shape[:2]
    scale = min(1.0, side / max(h, w))
    if scale >= 1.0:
        return image
    return resize(image, (max(1, round(h * scale)), max(1, round(w * scale))), nearest=nearest)


def rgb_stats(image: np.ndarray) -> np.ndarray:
    """Mean and std of R, G, B (the SCORPION paired-analysis statistics)."""
    from tia_scanner_robust.metrics.analysis import rgb_patch_statistics  # noqa: PLC0415

    return rgb_patch_statistics([image])[0]


def min_uint(labels: np.ndarray) -> np.ndarray:
    """Label map in the smallest unsigned integer type that holds it."""
    top = int(labels.max(initial=0))
    dtype = np.uint8 if top < 256 else (np.uint16 if top < 65536 else np.int32)
    return labels.astype(dtype)
