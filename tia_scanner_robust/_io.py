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
import stat
import tempfile
import threading
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
    "current_umask",
    "to_jsonable",
]

_UMASK_LOCK = threading.Lock()


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file beside ``path``; rename it over ``path`` on success.

    On an exception the temporary file is removed and ``path`` is untouched.
    The file gets the mode a plain :func:`open` would give it: an existing
    file's mode is kept, a new file gets ``0o666`` minus the umask (not the
    ``0o600`` of :func:`tempfile.mkstemp`).

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
        # mkstemp creates the file with mode 0600; give it the mode a plain
        # open() would (an existing file's mode, else 0666 minus the umask).
        tmp.chmod(_target_mode(path))
        with tmp.open(mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def current_umask() -> int:
    """The process's file-mode creation mask (read without changing it where possible).

    Linux reports it in ``/proc/self/status``; elsewhere it is read by setting
    and restoring it under a lock.

    Examples:
        >>> 0 <= current_umask() <= 0o777
        True

    """
    try:
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _target_mode(path: Path) -> int:
    """Mode of a file written to ``path``: the existing file's, else ``0o666 & ~umask``."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return 0o666 & ~current_umask()


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
    try:
        ok, buffer = cv2.imencode(ext, bgr, params)
    except cv2.error:  # OpenCV has no encoder for the extension
        ok = False
    if not ok:
        msg = (
            f"Could not encode an image with extension {ext!r} for {path}; use an image "
            "extension such as .png, .jpg or .tif."
        )
        raise ValueError(msg)
    return atomic_write_bytes(path, buffer.tobytes())


def to_jsonable(obj: Any, *, allow_nan: bool = False) -> Any:  # noqa: PLR0911 - one return per type
    """Convert results to plain JSON/YAML types (strict JSON by default).

    Mappings become dicts, tuples and lists become lists, NumPy scalars and
    arrays become Python numbers and lists, paths become strings and tuple
    keys (scanner pairs) become ``"a|b"`` strings; other keys become ``str``.
    NaN and inf become ``None`` unless ``allow_nan=True`` keeps them as
    Python floats (for YAML files and checkpoints, which hold them).

    Args:
        obj: A (nested) result: dicts, lists, tuples, arrays, numbers.
        allow_nan: Keep non-finite floats (the name mirrors
            :func:`json.dumps`); ``False`` (default) turns them into ``None``.

    Returns:
        An object that :func:`json.dumps` serialises with ``allow_nan=False``
        (with ``allow_nan=True``: that :func:`yaml.safe_dump` writes).

    Examples:
        >>> import numpy as np
        >>> to_jsonable({("AT2", "GT450"): np.float32(0.5), "m": np.array([np.nan, 1.0])})
        {'AT2|GT450': 0.5, 'm': [None, 1.0]}
        >>> to_jsonable({"clip": (np.float64(np.inf), 1)}, allow_nan=True)
        {'clip': [inf, 1]}

    """
    if isinstance(obj, Mapping):
        return {
            _json_key(k, allow_nan=allow_nan): to_jsonable(v, allow_nan=allow_nan)
            for k, v in obj.items()
        }
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist(), allow_nan=allow_nan)
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v, allow_nan=allow_nan) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if allow_nan or math.isfinite(value) else None
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _json_key(key: object, *, allow_nan: bool) -> str:
    if isinstance(key, tuple):
        return "|".join(str(k) for k in key)
    return str(to_jsonable(key, allow_nan=allow_nan))
