"""Readers: the pixels of a :class:`~tia_scanner_robust.data.collection.PairedSample`.

- :func:`load_sample_image`: a patch (OpenCV, cropped to the sample's
  region) or a whole-slide region (TIAToolbox's ``WSIReader``) as RGB uint8.
- :func:`read_mask` and :func:`load_sample_mask`: THE mask reader of the
  package (segmentation training reads its masks with it too): a label map
  as a 2-D integer array.
- :func:`open_wsi`: open (and cache) a TIAToolbox whole-slide reader; the
  whole-slide reads of this package (samples, registration, the demo set)
  go through it.
- :func:`verify_images`: decode every image and mask of a collection.

This module imports neither torch nor TIAToolbox at import time.

Examples:
    >>> import tempfile, pathlib, numpy as np
    >>> from tia_scanner_robust._io import atomic_write_image
    >>> from tia_scanner_robust.data.readers import read_mask
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "mask.png"
    >>> _ = atomic_write_image(p, np.eye(3, dtype=np.uint8))
    >>> read_mask(p).tolist()
    [[1, 0, 0], [0, 1, 0], [0, 0, 1]]

"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tia_scanner_robust._validation import decode_image_file, read_rgb_image, warn_alpha_dropped

if TYPE_CHECKING:
    from tia_scanner_robust.data.collection import PairedCollection, PairedSample

__all__ = [
    "MAX_WHOLE_SLIDE_PIXELS",
    "check_mask_values",
    "existing_image_path",
    "load_sample_image",
    "load_sample_mask",
    "open_wsi",
    "read_mask",
    "verify_images",
]

#: Largest image (in pixels) :func:`load_sample_image` reads from a whole slide
#: without a region: larger reads need a region or a coarser ``mpp``.
MAX_WHOLE_SLIDE_PIXELS = 2**28

_READER_CACHE: dict[tuple[int, str, int, int, float | None], Any] = {}
_READER_CACHE_SIZE = 8


def open_wsi(path: str | Path, mpp: float | None = None) -> Any:
    """Open a whole-slide image with TIAToolbox, caching the last few readers.

    Readers are cached per process (DataLoader workers do not share file
    handles), keyed by the resolved path, the file's modification time and
    size, and ``mpp``, so that a file rewritten in place is opened again.
    Suffixes that ``WSIReader.open`` does not list but OpenSlide reads
    (``.scn``, ``.bif``, ``.vms``...) are opened with ``OpenSlideWSIReader``.

    Args:
        path: The whole-slide image file.
        mpp: Microns per pixel of the baseline level; overrides the
            resolution in the file's metadata (``None``: keep it).

    Returns:
        A TIAToolbox ``WSIReader``.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If TIAToolbox cannot open it (the message names the file).

    Examples:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.svs"
        >>> _ = p.write_bytes(b"not a slide")
        >>> open_wsi(p)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: Could not open whole-slide image ...x.svs: ...

    """
    path = Path(path)
    if not path.exists():  # a file, or a folder for formats such as OME-Zarr
        msg = f"Whole-slide image not found: {path}"
        raise FileNotFoundError(msg)
    from tiatoolbox.wsicore.wsireader import (  # noqa: PLC0415 - tiatoolbox is slow to import
        OpenSlideWSIReader,
        WSIReader,
    )

    stat = path.stat()
    # The process id keeps DataLoader workers (forked) from sharing file handles.
    key = (os.getpid(), str(path.resolve()), stat.st_mtime_ns, stat.st_size, mpp)
    if key in _READER_CACHE:
        return _READER_CACHE[key]
    try:
        try:
            reader = WSIReader.open(path, mpp=None if mpp is None else (mpp, mpp))
        except Exception as error:
            # WSIReader.open refuses suffixes it does not list (.scn, .bif, .vms...)
            # that OpenSlide reads.
            if "not a supported file format" not in str(error):
                raise
            reader = OpenSlideWSIReader(path, mpp=None if mpp is None else (mpp, mpp))
    except Exception as error:
        msg = f"Could not open whole-slide image {path}: {error}"
        raise ValueError(msg) from error
    if len(_READER_CACHE) >= _READER_CACHE_SIZE:
        _READER_CACHE.pop(next(iter(_READER_CACHE)))
    _READER_CACHE[key] = reader
    return reader


def _to_rgb_uint8(region: np.ndarray, path: Path) -> np.ndarray:
    region = np.asarray(region)
    if region.ndim == 2:
        msg = f"Whole-slide image {path} is grayscale; expected RGB."
        raise ValueError(msg)
    if region.shape[-1] == 4:
        if region.dtype.kind in "iu" and not (region[..., 3] == np.iinfo(region.dtype).max).all():
            warn_alpha_dropped(path, reader="open_wsi")
        region = region[..., :3]
    if region.dtype != np.uint8:
        region = np.clip(region, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(region)


def _read_wsi_sample(sample: PairedSample) -> np.ndarray:
    path = sample.path
    reader = open_wsi(path)
    resolution, units = (sample.mpp, "mpp") if sample.mpp is not None else (0, "level")
    try:
        if sample.region is not None:
            x, y, w, h = sample.region
            image = reader.read_rect(
                (x, y), (w, h), resolution=resolution, units=units, pad_constant_values=255
            )
        else:
            width, height = reader.slide_dimensions(resolution=resolution, units=units)
            if int(width) * int(height) > MAX_WHOLE_SLIDE_PIXELS:
                msg = (
                    f"Reading the whole slide {path} at {sample.mpp or 'baseline'} mpp would "
                    f"give a {int(width)}x{int(height)} image; give the sample a region "
                    "(x, y, width, height) or a coarser mpp."
                )
                raise ValueError(msg)
            image = reader.slide_thumbnail(resolution=resolution, units=units)
    except ValueError:
        raise
    except Exception as error:
        msg = f"Could not read from whole-slide image {path}: {error}"
        raise ValueError(msg) from error
    return _to_rgb_uint8(image, path)


def _crop(image: np.ndarray, region: tuple[int, int, int, int], path: Path) -> np.ndarray:
    x, y, w, h = region
    height, width = image.shape[:2]
    if x + w > width or y + h > height:
        msg = (
            f"region (x={x}, y={y}, width={w}, height={h}) lies outside the image {path} "
            f"of size {width}x{height}."
        )
        raise ValueError(msg)
    return np.ascontiguousarray(image[y : y + h, x : x + w])


def existing_image_path(sample: PairedSample) -> Path:
    """The sample's image path, checked to be set and to exist.

    Raises:
        ValueError: If the sample has no path.
        FileNotFoundError: If the file does not exist (the message names it).

    Examples:
        >>> from tia_scanner_robust.data.collection import PairedSample
        >>> existing_image_path(PairedSample("s/1", "AT2", path=Path("nowhere.png")))
        Traceback (most recent call last):
        ...
        FileNotFoundError: Image file not found: nowhere.png

    """
    if sample.path is None:
        msg = f"Sample ({sample.specimen_id}, {sample.scanner}) has no image path."
        raise ValueError(msg)
    if not sample.path.exists():
        msg = f"Image file not found: {sample.path}"
        raise FileNotFoundError(msg)
    return sample.path


def load_sample_image(sample: PairedSample) -> np.ndarray:
    """Read a sample's pixels as an RGB uint8 ``(H, W, 3)`` array.

    Patches are decoded with OpenCV (and cropped to ``region`` when given);
    whole-slide images are read with TIAToolbox's ``WSIReader``: the region
    with ``read_rect(location=(x, y), size=(width, height), resolution=mpp,
    units="mpp")`` (baseline level when ``mpp`` is ``None``), or the whole
    slide at ``mpp`` when there is no region.

    Args:
        sample: The sample.

    Returns:
        The image.

    Raises:
        ValueError: If the sample has no path or the file cannot be decoded
            (the message names the file).
        FileNotFoundError: If the file does not exist.

    Examples:
        >>> import tempfile, pathlib, numpy as np
        >>> from tia_scanner_robust._io import atomic_write_image
        >>> from tia_scanner_robust.data.collection import PairedSample
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "AT2.png"
        >>> _ = atomic_write_image(p, np.full((8, 6, 3), 200, np.uint8))
        >>> load_sample_image(PairedSample("s/1", "AT2", path=p, region=(1, 2, 3, 4))).shape
        (4, 3, 3)

    """
    existing_image_path(sample)
    if sample.is_wsi:
        return _read_wsi_sample(sample)
    image = read_rgb_image(sample.path)
    if sample.region is not None:
        image = _crop(image, sample.region, sample.path)
    return image


def read_mask(
    path: str | Path,
    *,
    num_classes: int | None = None,
    ignore_index: int | None = None,
    max_pixels: int | None = None,
) -> np.ndarray:
    """Read a label-map mask as a 2-D integer array (pixel value = class index).

    The package's one mask reader (segmentation training reads its masks with
    it too). Accepted files:

    - a single-channel image, returned as stored (uint8 or uint16);
    - a 3-channel image whose channels are all equal (a grey image saved as
      RGB), reduced to one channel;
    - a 4-channel image whose alpha channel is fully opaque and whose colour
      channels are all equal, reduced to one channel.

    Anything else (unequal colour channels, any transparent pixel, another
    channel count) is refused: store label maps as single-channel PNG.
    With ``num_classes`` the values are checked too (:func:`check_mask_values`):
    a 0/255 mask given to a 2-class model is refused, not scored.

    Args:
        path: The mask file.
        num_classes: When given, every value must be a class index in
            ``[0, num_classes)`` (or ``ignore_index``).
        ignore_index: A value allowed besides the classes (e.g. 255).
        max_pixels: Largest mask decoded (see
            :func:`~tia_scanner_robust._validation.max_image_pixels`); the
            size its header declares is checked before decoding.

    Returns:
        ``(H, W)`` mask.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If the file cannot be decoded, is larger than the limit,
            is not a grey label map or holds values outside the classes (the
            message names the file).

    Examples:
        >>> import tempfile, pathlib, cv2, numpy as np
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> grey_rgba = np.full((2, 3, 4), 255, np.uint8)
        >>> grey_rgba[..., :3] = 1
        >>> cv2.imwrite(str(d / "rgba.png"), grey_rgba)
        True
        >>> read_mask(d / "rgba.png").tolist()
        [[1, 1, 1], [1, 1, 1]]
        >>> grey_rgba[0, 0, 3] = 0
        >>> cv2.imwrite(str(d / "holes.png"), grey_rgba)
        True
        >>> read_mask(d / "holes.png")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: Mask ...holes.png has transparent pixels ...

    """
    path = Path(path)
    if not path.is_file():
        msg = f"Mask file not found: {path}"
        raise FileNotFoundError(msg)
    mask = decode_image_file(path, what="mask", max_pixels=max_pixels)
    if mask.ndim == 3 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    if mask.ndim == 3:
        channels = mask.shape[-1]
        if channels not in (3, 4):
            msg = (
                f"Mask {path} has {channels} channels; masks must be single-channel label "
                "maps (pixel value = class index)."
            )
            raise ValueError(msg)
        if channels == 4:
            opaque = np.iinfo(mask.dtype).max if mask.dtype.kind in "iu" else 1.0
            if not (mask[..., 3] == opaque).all():
                msg = (
                    f"Mask {path} has transparent pixels (its alpha channel is not fully "
                    "opaque); masks must be single-channel label maps (pixel value = "
                    "class index)."
                )
                raise ValueError(msg)
            mask = mask[..., :3]
        if not (mask == mask[..., :1]).all():
            msg = (
                f"Mask {path} is a colour image with unequal channels; masks must be "
                "single-channel label maps (pixel value = class index)."
            )
            raise ValueError(msg)
        mask = mask[..., 0]
    mask = np.ascontiguousarray(mask)
    if num_classes is not None:
        check_mask_values(mask, num_classes, path, ignore_index=ignore_index)
    return mask


def check_mask_values(
    mask: np.ndarray,
    num_classes: int,
    path: str | Path,
    *,
    ignore_index: int | None = None,
    allowed: set[int] | None = None,
) -> np.ndarray:
    """Refuse mask values that are not class indices (e.g. a 0/255 binary mask).

    Args:
        mask: The label map.
        num_classes: Valid labels are ``0 .. num_classes - 1``.
        path: The mask file (named in the message).
        ignore_index: A value allowed besides the classes (e.g. 255).
        allowed: The exact set of valid labels, when they are not
            ``0 .. num_classes - 1`` (e.g. the ground-truth labels of a
            ``target_map``); ``num_classes`` is then only reported.

    Returns:
        The same mask.

    Raises:
        ValueError: If a value is not a valid label; the message names the
            file, the offending values and the valid range.

    Examples:
        >>> import numpy as np
        >>> check_mask_values(np.array([[0, 255]], np.uint8), 2, "m.png")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: Mask m.png holds label(s) [255] outside [0, 1]; ...

    """
    values = np.unique(mask)
    valid = (
        np.isin(values, sorted(allowed))
        if allowed is not None
        else (values >= 0) & (values < int(num_classes))
    )
    if ignore_index is not None:
        valid |= values == ignore_index
    if valid.all():
        return mask
    labels = values[~valid].tolist()[:10]
    expected = (
        f"the labels {sorted(allowed)}" if allowed is not None else f"[0, {int(num_classes) - 1}]"
    )
    hint = ""
    if labels and max(labels) == 255 and set(values.tolist()) <= {0, 255}:
        hint = " (a 0/255 binary mask? store class indices: 0 and 1)"
    ignore = f" or the ignore index {ignore_index}" if ignore_index is not None else ""
    msg = (
        f"Mask {path} holds label(s) {labels} outside {expected}{ignore}; mask pixels must be "
        f"class indices of the model's {int(num_classes)} classes{hint}."
    )
    raise ValueError(msg)


def load_sample_mask(
    sample: PairedSample,
    image_shape: tuple[int, ...] | None = None,
    *,
    num_classes: int | None = None,
    allowed: set[int] | None = None,
) -> np.ndarray:
    """Read a sample's mask with :func:`read_mask`, cropped like the image.

    Args:
        sample: The sample (must have a ``mask_path``).
        image_shape: The loaded image's shape; when given, the mask must have
            the same height and width.
        num_classes: When given, the values are checked with
            :func:`check_mask_values` (before cropping: the whole file).
        allowed: The exact set of valid labels (see :func:`check_mask_values`).

    Returns:
        ``(H, W)`` mask (uint8 or uint16, as stored).

    Raises:
        FileNotFoundError: If the mask file does not exist.
        ValueError: On a missing ``mask_path``, a file :func:`read_mask`
            refuses, or a size that does not match the image.

    Examples:
        >>> import tempfile, pathlib, numpy as np
        >>> from tia_scanner_robust._io import atomic_write_image
        >>> from tia_scanner_robust.data.collection import PairedSample
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = atomic_write_image(d / "m.png", np.arange(12, dtype=np.uint8).reshape(3, 4))
        >>> load_sample_mask(PairedSample("s/1", "A", mask_path=d / "m.png", region=(1, 0, 2, 2)))
        array([[1, 2],
               [5, 6]], dtype=uint8)

    """
    if sample.mask_path is None:
        msg = f"Sample ({sample.specimen_id}, {sample.scanner}) has no mask_path."
        raise ValueError(msg)
    path = sample.mask_path
    mask = read_mask(path)
    if num_classes is not None:
        check_mask_values(mask, num_classes, path, allowed=allowed)
    if sample.region is not None and not sample.is_wsi:
        mask = _crop(mask, sample.region, path)
    if image_shape is not None and tuple(mask.shape[:2]) != tuple(image_shape[:2]):
        msg = (
            f"Mask {path} has size {mask.shape[1]}x{mask.shape[0]} but the image of "
            f"({sample.specimen_id}, {sample.scanner}) is {image_shape[1]}x{image_shape[0]}."
        )
        raise ValueError(msg)
    return np.ascontiguousarray(mask)


def verify_images(collection: PairedCollection, *, max_listed: int = 5) -> None:
    """Decode every image and mask of ``collection``; list every failure at once.

    Args:
        collection: The samples to check.
        max_listed: How many failures the message lists (all are counted).

    Raises:
        ValueError: If any image or mask cannot be read; the message counts
            the failures and names the first files with their errors.

    Examples:
        >>> import tempfile, pathlib
        >>> from tia_scanner_robust.data.collection import PairedCollection, PairedSample
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "A.png"
        >>> _ = p.write_bytes(b"not an image")
        >>> verify_images(PairedCollection([PairedSample("s/1", "A", path=p)]))
        ... # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: 1 of 1 sample(s) could not be read: ...A.png: Could not decode image file...

    """
    failures: list[str] = []
    for sample in collection:
        try:
            image = load_sample_image(sample)
            if sample.mask_path is not None:
                load_sample_mask(sample, image.shape)
        except (OSError, ValueError) as error:
            failures.append(f"{sample.path}: {error}")
    if failures:
        shown = "; ".join(failures[:max_listed])
        more = f"; ... and {len(failures) - max_listed} more" if len(failures) > max_listed else ""
        msg = f"{len(failures)} of {len(collection)} sample(s) could not be read: {shown}{more}"
        raise ValueError(msg)
