"""Atomic file writes and strict-JSON conversion.

An interrupted run never leaves a half-written output.

Every output file is first written to a temporary file in the same folder and
then moved into place with :func:`os.replace`, which is atomic on POSIX and
Windows file systems.

Examples:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = atomic_write_text(d / "a.txt", "hello")
    >>> (d / "a.txt").read_text()
    'hello'

"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Iterator


__all__ = [
    "atomic_open",
    "atomic_write_bytes",
    "atomic_write_image",
    "atomic_write_json",
    "atomic_write_text",
    "to_jsonable",
]


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file beside ``path``; rename it over ``path`` on success.

    On an exception the temporary file is removed and ``path`` is untouched.

    Args:
        path: Final destination.
        mode: ``"w"`` or ``"wb"``.
        **kwargs: Passed to :func:`open` (e.g. ``encoding``).

    Yields:
        The open temporary file.

    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with tmp.open(mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and return the path."""
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return Path(path)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def atomic_write_json(path: str | Path, obj: Any, **kwargs: Any) -> Path:
    """Serialise ``obj`` as indented JSON to ``path`` atomically."""
    kwargs.setdefault("indent", 2)
    return atomic_write_text(path, json.dumps(obj, **kwargs) + "\n")


def atomic_write_image(path: str | Path, image: np.ndarray, quality: int = 95) -> Path:
    """Encode an RGB uint8 image by the file's extension and write it atomically.

    Args:
        path: Destination (``.png``, ``.jpg``/``.jpeg``, ``.tif``...).
        image: ``(H, W, 3)`` RGB uint8 array.
        quality: JPEG quality, used for JPEG files only.

    Returns:
        The path written.

    Raises:
        ValueError: If OpenCV cannot encode to the extension.

    """
    import cv2  # noqa: PLC0415 - keep module import light

    path = Path(path)
    ext = path.suffix.lower() or ".png"
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if ext in {".jpg", ".jpeg"} else []
    bgr = image[..., ::-1] if image.ndim == 3 else image
    ok, buffer = cv2.imencode(ext, bgr, params)
    if not ok:
        msg = f"Could not encode an image with extension {ext!r} for {path}."
        raise ValueError(msg)
    return atomic_write_bytes(path, buffer.tobytes())


def to_jsonable(obj: Any) -> Any:  # noqa: PLR0911 - one return per type
    """Convert results to strict-JSON types.

    NumPy scalars and arrays become Python numbers and lists, NaN and inf become
    ``None``, tuple keys (scanner pairs) become ``"a|b"`` strings and paths
    become strings.

    Args:
        obj: A (nested) result: dicts, lists, tuples, arrays, numbers.

    Returns:
        An object that :func:`json.dumps` serialises with ``allow_nan=False``.

    Examples:
        >>> import numpy as np
        >>> to_jsonable({("AT2", "GT450"): np.float32(0.5), "m": np.array([np.nan, 1.0])})
        {'AT2|GT450': 0.5, 'm': [None, 1.0]}

    """
    if isinstance(obj, Mapping):
        return {_json_key(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _json_key(key: object) -> str:
    if isinstance(key, tuple):
        return "|".join(str(k) for k in key)
    return str(to_jsonable(key))
