"""Shared argument and array checks with clear error messages.

Every public entry point validates its inputs here so that bad input fails
early, with a message naming the argument (and the file, where there is one),
instead of deep inside OpenCV or torch.

Examples:
    >>> import numpy as np
    >>> img = check_rgb_image(np.zeros((4, 4, 3), np.uint8))
    >>> img.shape
    (4, 4, 3)

"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "check_finite",
    "check_in_choices",
    "check_probability",
    "check_range",
    "check_rgb_image",
    "read_rgb_image",
    "safe_output_path",
]

SUPPORTED_IMAGE_DTYPES = (np.uint8, np.float32)


def check_rgb_image(image: object, name: str = "image") -> np.ndarray:
    """Check that ``image`` is an RGB ``(H, W, 3)`` uint8 or float32 array.

    float32 images are expected in ``[0, 1]`` (albumentations' convention) and
    must be finite.

    Args:
        image: The candidate array.
        name: Name used in error messages.

    Returns:
        The same array (not copied).

    Raises:
        TypeError: If ``image`` is not a NumPy array or has an unsupported dtype.
        ValueError: If the shape is not ``(H, W, 3)``, the image is empty, or a
            float image holds NaN/inf.

    Examples:
        >>> import numpy as np
        >>> check_rgb_image(np.zeros((2, 2), np.uint8))
        Traceback (most recent call last):
        ...
        ValueError: image must be an RGB image of shape (H, W, 3); got shape (2, 2) (grayscale?).

    """
    if not isinstance(image, np.ndarray):
        msg = f"{name} must be a numpy array, got {type(image).__name__}."
        raise TypeError(msg)
    if image.ndim == 2:
        msg = (
            f"{name} must be an RGB image of shape (H, W, 3); got shape {image.shape} (grayscale?)."
        )
        raise ValueError(msg)
    if image.ndim != 3 or image.shape[-1] != 3:
        hint = " (RGBA? drop the alpha channel)" if image.ndim == 3 and image.shape[-1] == 4 else ""
        msg = f"{name} must be an RGB image of shape (H, W, 3); got shape {image.shape}{hint}."
        raise ValueError(msg)
    if image.shape[0] == 0 or image.shape[1] == 0:
        msg = f"{name} is empty (shape {image.shape})."
        raise ValueError(msg)
    if image.dtype not in SUPPORTED_IMAGE_DTYPES:
        msg = f"{name} must have dtype uint8 or float32 (values in [0, 1]); got {image.dtype}."
        raise TypeError(msg)
    if image.dtype == np.float32 and not np.isfinite(image).all():
        msg = f"{name} contains NaN or inf values."
        raise ValueError(msg)
    return image


def check_finite(array: np.ndarray, name: str) -> np.ndarray:
    """Raise ``ValueError`` if ``array`` holds NaN or inf.

    Examples:
        >>> import numpy as np
        >>> check_finite(np.array([1.0, np.nan]), "scores")
        Traceback (most recent call last):
        ...
        ValueError: scores contains 1 NaN/inf value(s).

    """
    bad = ~np.isfinite(np.asarray(array, dtype=np.float64))
    if bad.any():
        msg = f"{name} contains {int(bad.sum())} NaN/inf value(s)."
        raise ValueError(msg)
    return array


def check_probability(value: float, name: str = "p") -> float:
    """Check that ``value`` is a probability in ``[0, 1]``.

    Examples:
        >>> check_probability(0.5)
        0.5

    """
    value = float(value)
    if not 0.0 <= value <= 1.0:
        msg = f"{name} must be in [0, 1], got {value}."
        raise ValueError(msg)
    return value


def check_range(
    value: tuple[float, float] | list[float],
    name: str,
    *,
    low: float = -np.inf,
    high: float = np.inf,
) -> tuple[float, float]:
    """Check an interval ``(a, b)`` with ``low <= a <= b <= high``.

    Examples:
        >>> check_range((0.0, 0.1), "beta_range", low=0.0, high=0.5)
        (0.0, 0.1)

    """
    if len(value) != 2:
        msg = f"{name} must be a pair (min, max), got {value!r}."
        raise ValueError(msg)
    a, b = float(value[0]), float(value[1])
    if not (low <= a <= b <= high):
        msg = f"{name} must satisfy {low} <= min <= max <= {high}, got {(a, b)}."
        raise ValueError(msg)
    return a, b


def check_in_choices(value: str, choices: Iterable[str], name: str) -> str:
    """Check that ``value`` is one of ``choices`` (the message lists them).

    Examples:
        >>> check_in_choices("LAB", ["LAB", "HSV"], "color_space")
        'LAB'

    """
    choices = list(choices)
    if value not in choices:
        msg = f"Unknown {name} {value!r}; valid values: {', '.join(map(str, choices))}."
        raise ValueError(msg)
    return value


def read_rgb_image(path: str | Path) -> np.ndarray:
    """Read an image file as an RGB uint8 array, with errors naming the file.

    Grayscale images are rejected; an alpha channel is dropped (a common case
    for PNG tiles).

    Args:
        path: Image file readable by OpenCV.

    Returns:
        ``(H, W, 3)`` uint8 RGB array.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If the file cannot be decoded or is not a colour image.

    """
    import cv2  # noqa: PLC0415 - keep module import light

    path = Path(path)
    if not path.is_file():
        msg = f"Image file not found: {path}"
        raise FileNotFoundError(msg)
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        msg = f"Could not decode image file (corrupt or unsupported format): {path}"
        raise ValueError(msg)
    if image.dtype != np.uint8:
        if image.dtype == np.uint16:
            image = (image / 257.0).round().astype(np.uint8)
        else:
            msg = f"Unsupported image dtype {image.dtype} in {path}; expected 8-bit RGB."
            raise ValueError(msg)
    if image.ndim == 2 or image.shape[-1] == 1:
        msg = f"Image is grayscale, expected an RGB H&E image: {path}"
        raise ValueError(msg)
    if image.shape[-1] == 4:
        image = image[..., :3]
    return np.ascontiguousarray(image[..., ::-1])


def safe_output_path(root: str | Path, relative: str | Path) -> Path:
    """Join ``relative`` under ``root`` and refuse paths that escape it.

    Args:
        root: The output folder.
        relative: A relative path taken from user data (e.g. a specimen id).

    Returns:
        The resolved path inside ``root``.

    Raises:
        ValueError: If the result would lie outside ``root``.

    Examples:
        >>> safe_output_path("/tmp/out", "../etc/passwd")
        Traceback (most recent call last):
        ...
        ValueError: Path '../etc/passwd' escapes the output folder /tmp/out.

    """
    root_path = Path(root).resolve()
    candidate = (root_path / relative).resolve()
    if candidate != root_path and root_path not in candidate.parents:
        msg = f"Path {str(relative)!r} escapes the output folder {root_path}."
        raise ValueError(msg)
    return candidate
