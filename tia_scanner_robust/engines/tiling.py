"""Images of any size for models that need a fixed input: reflect padding, tiles, stitching.

The unpaired evaluator (:mod:`~tia_scanner_robust.engines.unpaired`) scores
images as they come (COSAS crops are 300-400 px and all different); bringing
them to what the model needs is the evaluator's job, not the user's:

- :func:`pad_image`: reflect padding (edge padding for 1-pixel images);
- :func:`tile_image`: model-input tiles stepping by the model's output size
  (with context margins when the output is smaller than the input);
- :func:`stitch_tiles`: the tile outputs placed back and cropped to the image;
- :func:`to_grid`: one label map brought to a shape (centre crop when larger,
  nearest resize when smaller).

Examples:
    >>> import numpy as np
    >>> image = np.arange(35).reshape(5, 7)
    >>> tiles, grid = tile_image(image, (4, 4))
    >>> tiles.shape, grid
    ((4, 4, 4), (2, 2))
    >>> bool((stitch_tiles(list(tiles), grid, (4, 4), image.shape) == image).all())
    True

"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from tia_scanner_robust.engines._imageops import centre_crop, resize

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["pad_image", "stitch_tiles", "tile_image", "to_grid"]


def pad_image(image: np.ndarray, top: int, bottom: int, left: int, right: int) -> np.ndarray:
    """``image`` reflect-padded by the given widths (edge-padded when a side is 1 pixel).

    Examples:
        >>> import numpy as np
        >>> pad_image(np.array([[1, 2, 3]]), 0, 0, 1, 1).tolist()
        [[1, 1, 2, 3, 3]]
        >>> pad_image(np.array([[1, 2, 3], [4, 5, 6]]), 0, 0, 1, 1).tolist()
        [[2, 1, 2, 3, 2], [5, 4, 5, 6, 5]]

    """
    widths = [(top, bottom), (left, right)] + [(0, 0)] * (image.ndim - 2)
    if image.shape[0] < 2 or image.shape[1] < 2:
        return np.pad(image, widths, mode="edge")
    return np.pad(image, widths, mode="reflect")


def tile_image(
    image: np.ndarray, tile: tuple[int, int], out: tuple[int, int] | None = None
) -> tuple[np.ndarray, tuple[int, int]]:
    """Cut an image of any size into model-input tiles (reflect-padded at the borders).

    Tiles step by the output shape ``out``; when ``out`` is smaller than
    ``tile`` each tile carries a margin of ``(tile - out) / 2`` context pixels,
    so the tile outputs tile the image exactly (:func:`stitch_tiles`).

    Args:
        image: ``(H, W, ...)`` array.
        tile: Model input ``(height, width)``.
        out: Model output ``(height, width)`` (default: ``tile``).

    Returns:
        ``(tiles (K, th, tw, ...), grid (rows, cols))``.

    Examples:
        >>> import numpy as np
        >>> tiles, grid = tile_image(np.zeros((5, 7, 3)), (4, 4))
        >>> tiles.shape, grid
        ((4, 4, 4, 3), (2, 2))
        >>> tile_image(np.zeros((5, 7, 3)), (6, 6), (4, 4))[0].shape
        (4, 6, 6, 3)

    """
    th, tw = (int(v) for v in tile)
    oh, ow = (int(v) for v in (out or tile))
    if not (0 < oh <= th and 0 < ow <= tw):
        msg = f"output shape {(oh, ow)} must be positive and at most the tile shape {(th, tw)}."
        raise ValueError(msg)
    h, w = image.shape[:2]
    rows, cols = max(1, math.ceil(h / oh)), max(1, math.ceil(w / ow))
    my, mx = (th - oh) // 2, (tw - ow) // 2
    padded = pad_image(
        image, my, rows * oh - h + (th - oh - my), mx, cols * ow - w + (tw - ow - mx)
    )
    tiles = [
        padded[i * oh : i * oh + th, j * ow : j * ow + tw] for i in range(rows) for j in range(cols)
    ]
    return np.stack(tiles), (rows, cols)


def to_grid(pred: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A label map brought to ``shape``: centre-cropped when larger, nearest-resized otherwise.

    Examples:
        >>> import numpy as np
        >>> to_grid(np.arange(16).reshape(4, 4), (2, 2)).tolist()
        [[5, 6], [9, 10]]

    """
    if tuple(pred.shape[:2]) == tuple(shape):
        return pred
    if pred.shape[0] >= shape[0] and pred.shape[1] >= shape[1]:
        return centre_crop(pred, shape)
    return resize(pred, shape, nearest=True)


def stitch_tiles(
    preds: Sequence[np.ndarray], grid: tuple[int, int], out: tuple[int, int], shape: tuple[int, int]
) -> np.ndarray:
    """Inverse of :func:`tile_image` for label maps: place each tile output, crop to ``shape``.

    Tile outputs of another size than ``out`` are first brought to it
    (centre crop when larger, nearest resize when smaller).

    Examples:
        >>> import numpy as np
        >>> image = np.arange(35).reshape(5, 7)
        >>> tiles, grid = tile_image(image, (4, 4))
        >>> bool((stitch_tiles(list(tiles), grid, (4, 4), image.shape) == image).all())
        True

    """
    oh, ow = (int(v) for v in out)
    rows, cols = grid
    first = np.asarray(preds[0])
    canvas = np.zeros((rows * oh, cols * ow, *first.shape[2:]), dtype=first.dtype)
    for k, pred in enumerate(preds):
        i, j = divmod(k, cols)
        canvas[i * oh : (i + 1) * oh, j * ow : (j + 1) * ow] = to_grid(np.asarray(pred), (oh, ow))
    return canvas[: shape[0], : shape[1]]
