"""Check a training data set eagerly, before the first step.

:func:`check_segmentation_data` opens every image and mask of a
:class:`~tia_scanner_robust.training.data.SegmentationFolderDataset` (in a
few threads: decoding releases the GIL), checks that each image and its mask
have the same size and that every mask value is a class index (or
``ignore_index``), and raises on the first bad pair with the file named, so
a run fails in seconds instead of at the step that first draws the file.

Examples:
    >>> import tempfile, pathlib, numpy as np
    >>> from tia_scanner_robust._io import atomic_write_image
    >>> from tia_scanner_robust.training.data import SegmentationFolderDataset
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> _ = atomic_write_image(root / "images" / "a.png", np.zeros((8, 8, 3), np.uint8))
    >>> _ = atomic_write_image(root / "masks" / "a.png", np.full((8, 8), 2, np.uint8))
    >>> check_segmentation_data(SegmentationFolderDataset(root), num_classes=3)
    1
    >>> check_segmentation_data(SegmentationFolderDataset(root), num_classes=2)
    Traceback (most recent call last):
    ...
    ValueError: Mask ...a.png holds label(s) [2] outside [0, 1]; ...

"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from tia_scanner_robust._validation import read_rgb_image
from tia_scanner_robust.data.readers import read_mask

if TYPE_CHECKING:
    from pathlib import Path

    from tia_scanner_robust.training.data import SegmentationFolderDataset

__all__ = ["check_segmentation_data"]


def _check_pair(
    image_path: Path, mask_path: Path, num_classes: int | None, ignore_index: int | None
) -> None:
    image = read_rgb_image(image_path)
    mask = read_mask(mask_path, num_classes=num_classes, ignore_index=ignore_index)
    if image.shape[:2] != mask.shape:
        msg = (
            f"Image {image_path} is {image.shape[0]} x {image.shape[1]} (H x W) but its mask "
            f"{mask_path} is {mask.shape[0]} x {mask.shape[1]}."
        )
        raise ValueError(msg)


def check_segmentation_data(
    dataset: SegmentationFolderDataset,
    *,
    num_classes: int | None = None,
    ignore_index: int | None = None,
    workers: int = 4,
) -> int:
    """Open every image/mask pair of ``dataset`` and check sizes and mask values.

    Args:
        dataset: The folder dataset (its ``image_paths``/``mask_paths``).
        num_classes: Mask values must lie in ``[0, num_classes)`` (or equal
            ``ignore_index``); ``None`` checks only that masks open.
        ignore_index: Label value allowed besides the classes.
        workers: Threads decoding files.

    Returns:
        The number of pairs checked.

    Raises:
        ValueError: On the first pair (in file order) that does not open, whose
            sizes differ, or whose mask holds a value outside the classes; the
            message names the file.
        FileNotFoundError: If a file vanished.

    """
    pairs = list(zip(dataset.image_paths, dataset.mask_paths, strict=True))
    with ThreadPoolExecutor(max_workers=max(1, int(workers))) as pool:
        futures = [
            pool.submit(_check_pair, image, mask, num_classes, ignore_index)
            for image, mask in pairs
        ]
        try:
            for future in futures:  # file order: the first bad pair is reported
                future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return len(pairs)
