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

import os
import re
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = [
    "DEFAULT_MAX_IMAGE_PIXELS",
    "MAX_IMAGE_PIXELS_ENV",
    "check_image_size",
    "check_in_choices",
    "check_probability",
    "check_range",
    "check_rgb_image",
    "decode_image_file",
    "load_checkpoint_dict",
    "load_state_dict_checked",
    "max_image_pixels",
    "read_rgb_image",
    "read_utf8_text",
    "safe_output_path",
    "safe_torch_load",
    "state_dict_mismatch",
    "summarize_state_dict_error",
    "warn_alpha_dropped",
]

SUPPORTED_IMAGE_DTYPES = (np.uint8, np.float32)

#: Environment variable overriding :data:`DEFAULT_MAX_IMAGE_PIXELS` (``0``: no limit).
MAX_IMAGE_PIXELS_ENV = "TIA_SCANNER_ROBUST_MAX_IMAGE_PIXELS"

#: Largest image (width x height) decoded whole by default: 2**28 pixels
#: (16384 x 16384; 768 MiB as RGB uint8). Larger images are whole-slide
#: images: list them as such so that TIAToolbox's ``WSIReader`` reads regions.
DEFAULT_MAX_IMAGE_PIXELS = 2**28

_ALPHA_WARNED: set[str] = set()
_ALPHA_LOCK = threading.Lock()
_PIL_LOCK = threading.Lock()


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


def max_image_pixels(max_pixels: int | None = None) -> int | None:
    """The limit on decoded image sizes: ``max_pixels``, else the environment, else the default.

    Args:
        max_pixels: An explicit limit (``0``: no limit). ``None`` reads
            :data:`MAX_IMAGE_PIXELS_ENV` and falls back to
            :data:`DEFAULT_MAX_IMAGE_PIXELS`.

    Returns:
        The limit in pixels, or ``None`` for no limit.

    Raises:
        ValueError: If the limit (or the environment variable) is not a
            non-negative integer.

    Examples:
        >>> max_image_pixels(100), max_image_pixels(0)
        (100, None)

    """
    source = "max_pixels"
    value: object = max_pixels
    if max_pixels is None:
        raw = os.environ.get(MAX_IMAGE_PIXELS_ENV, "").strip()
        if not raw:
            return DEFAULT_MAX_IMAGE_PIXELS
        source, value = f"environment variable {MAX_IMAGE_PIXELS_ENV}", raw
    try:
        limit = int(str(value).replace("_", ""))
    except ValueError:
        limit = -1
    if isinstance(value, bool) or limit < 0:
        msg = f"{source} must be a non-negative number of pixels (0: no limit); got {value!r}."
        raise ValueError(msg)
    return limit or None


def _too_large(path: Path, width: int, height: int, limit: int) -> ValueError:
    return ValueError(
        f"Image {path} declares {width} x {height} = {width * height} pixels, more than the "
        f"limit of {limit} pixels; it was not decoded. A whole-slide image should be listed "
        f"as one (read by region with WSIReader); to decode it whole anyway, raise the limit "
        f"with the environment variable {MAX_IMAGE_PIXELS_ENV} (or max_pixels=)."
    )


def _declared_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` from an image header (Pillow opens lazily: nothing is decoded)."""
    from PIL import Image  # noqa: PLC0415 - keep module import light

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as image:
                return int(image.size[0]), int(image.size[1])
        except Image.DecompressionBombError:
            pass
        # Pillow refuses sizes above twice its own limit before returning the
        # image; read the header again with its check off (our limit applies).
        with _PIL_LOCK:
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                with Image.open(path) as image:
                    return int(image.size[0]), int(image.size[1])
            finally:
                Image.MAX_IMAGE_PIXELS = saved


def check_image_size(path: str | Path, max_pixels: int | None = None) -> tuple[int, int] | None:
    """Refuse an image whose header declares more pixels than the limit, before decoding.

    Only the header is read (Pillow opens files lazily), so a small file
    declaring a huge size (a decompression bomb) costs nothing.

    Args:
        path: The image file.
        max_pixels: The limit (see :func:`max_image_pixels`).

    Returns:
        The declared ``(width, height)``, or ``None`` when Pillow cannot
        read the header (the decoder then decides).

    Raises:
        ValueError: If the declared size exceeds the limit (the message names
            the file, the size, the limit and how to raise it).

    Examples:
        >>> import tempfile, pathlib, numpy as np
        >>> from tia_scanner_robust._io import atomic_write_image
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.png"
        >>> _ = atomic_write_image(p, np.zeros((4, 6, 3), np.uint8))
        >>> check_image_size(p)
        (6, 4)
        >>> check_image_size(p, max_pixels=10)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: Image ...a.png declares 6 x 4 = 24 pixels, more than the limit of 10 pixels; ...

    """
    from PIL import UnidentifiedImageError  # noqa: PLC0415 - keep module import light

    path = Path(path)
    limit = max_image_pixels(max_pixels)
    try:
        width, height = _declared_size(path)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None  # not a header Pillow knows: OpenCV decides (and names the file)
    if limit is not None and width * height > limit:
        raise _too_large(path, width, height, limit)
    return width, height


def decode_image_file(
    path: str | Path, *, what: str = "image", max_pixels: int | None = None
) -> Any:
    """Decode an image file with OpenCV (``IMREAD_UNCHANGED``) after checking its size.

    Args:
        path: The file (must exist).
        what: ``"image"`` or ``"mask"`` (for the messages).
        max_pixels: The size limit (see :func:`max_image_pixels`).

    Returns:
        The decoded array as OpenCV returns it (BGR/BGRA channel order).

    Raises:
        ValueError: If the file is too large (see :func:`check_image_size`)
            or cannot be decoded; the message names the file.

    Examples:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "bad.png"
        >>> _ = p.write_bytes(b"not an image")
        >>> decode_image_file(p)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: Could not decode image file (corrupt or unsupported format): ...bad.png

    """
    import cv2  # noqa: PLC0415 - keep module import light

    path = Path(path)
    limit = max_image_pixels(max_pixels)
    check_image_size(path, max_pixels=0 if limit is None else limit)
    data = np.fromfile(path, dtype=np.uint8)
    try:
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    except cv2.error as error:
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else "OpenCV error"
        msg = (
            f"Could not decode {what} file {path}: {reason} (OpenCV refuses images larger "
            "than its own limit, the environment variable OPENCV_IO_MAX_IMAGE_PIXELS)."
        )
        raise ValueError(msg) from None
    if image is None:
        msg = f"Could not decode {what} file (corrupt or unsupported format): {path}"
        raise ValueError(msg)
    if limit is not None and image.shape[0] * image.shape[1] > limit:
        raise _too_large(path, int(image.shape[1]), int(image.shape[0]), limit)
    return image


def warn_alpha_dropped(path: str | Path, reader: str = "read_rgb_image") -> bool:
    """Warn (once per process and reader) that an image's alpha channel is dropped.

    Args:
        path: The image (named in the warning).
        reader: Which reader drops it; each reader warns once.

    Returns:
        Whether a warning was issued.

    Examples:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     first = warn_alpha_dropped("a.png", reader="doctest")
        ...     second = warn_alpha_dropped("b.png", reader="doctest")
        >>> first, second, "a.png" in str(caught[0].message)
        (True, False, True)

    """
    with _ALPHA_LOCK:
        if reader in _ALPHA_WARNED:
            return False
        _ALPHA_WARNED.add(reader)
    warnings.warn(
        f"{path} has an alpha (transparency) channel; it is dropped and the colour channels "
        "are used as stored (further images with an alpha channel are not reported).",
        UserWarning,
        stacklevel=3,
    )
    return True


def read_rgb_image(path: str | Path, *, max_pixels: int | None = None) -> np.ndarray:
    """Read an image file as an RGB uint8 array, with errors naming the file.

    Grayscale images are rejected; an alpha channel is dropped (a common case
    for PNG tiles) with a warning the first time. The size the header
    declares is checked before decoding (:func:`check_image_size`).

    Args:
        path: Image file readable by OpenCV.
        max_pixels: Largest image decoded (see :func:`max_image_pixels`;
            default: :data:`DEFAULT_MAX_IMAGE_PIXELS` or the environment
            variable :data:`MAX_IMAGE_PIXELS_ENV`).

    Returns:
        ``(H, W, 3)`` uint8 RGB array.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If the file cannot be decoded, is larger than the limit,
            or is not a colour image.

    """
    path = Path(path)
    if not path.is_file():
        msg = f"Image file not found: {path}"
        raise FileNotFoundError(msg)
    image = decode_image_file(path, what="image", max_pixels=max_pixels)
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
        warn_alpha_dropped(path)
        image = image[..., :3]
    return np.ascontiguousarray(image[..., ::-1])


def read_utf8_text(path: str | Path, what: str = "file") -> str:
    r"""Read a UTF-8 text file (a byte-order mark is dropped) with a clear error otherwise.

    Line endings are kept as stored (for :mod:`csv`, wrap the text in
    ``io.StringIO(text, newline="")``).

    Args:
        path: The file.
        what: What the file is, for the message (``"manifest"``, ``"config"``...).

    Returns:
        The text.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If it is not valid UTF-8 (the message names the file,
            the byte and its line).

    Examples:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "m.csv"
        >>> _ = p.write_bytes("a,b\nx,caf\u00e9\n".encode("latin-1"))
        >>> read_utf8_text(p, "manifest")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: Manifest ...m.csv is not UTF-8 text: byte 0xe9 on line 2 ...

    """
    path = Path(path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        name = f"{what[:1].upper()}{what[1:]}"
        msg = (
            f"{name} {path} is not UTF-8 text: byte 0x{data[error.start]:02x} on line {line} "
            "cannot be decoded; save the file with UTF-8 encoding."
        )
        raise ValueError(msg) from None


def _torch_load_reason(error: BaseException) -> str:
    """One line saying why ``torch.load(weights_only=True)`` refused a file."""
    text = str(error)
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:
        return (
            f"it holds pickled Python objects ({found.group(1)}) that "
            "torch.load(weights_only=True) refuses, because loading them could run code"
        )
    if "weights_only" in text.lower() or "Weights only load failed" in text:
        return (
            "it holds pickled Python objects that torch.load(weights_only=True) refuses "
            "(only tensors and plain containers are read)"
        )
    if isinstance(error, EOFError) or "Ran out of input" in text:
        return "it is empty or truncated"
    return "it is not a PyTorch checkpoint written by torch.save"


def safe_torch_load(
    path: str | Path,
    *,
    what: str = "checkpoint",
    expected: str = "a dict of tensors saved with torch.save",
    map_location: Any = "cpu",
) -> Any:
    """``torch.load(path, weights_only=True)`` with one-line errors naming the file.

    Args:
        path: The file.
        what: What the file is (``"checkpoint"``, ``"weights file"``...).
        expected: What the file should hold (said when it does not).
        map_location: Passed to :func:`torch.load`.

    Returns:
        The loaded object (tensors and plain containers only).

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If torch cannot load it with ``weights_only=True``
            (pickled objects, another file format, a truncated file).

    Examples:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "w.pt"
        >>> _ = p.write_text("hello")
        >>> safe_torch_load(p, what="weights file")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: Cannot load weights file ...w.pt: it is not a PyTorch checkpoint ...

    """
    import torch  # noqa: PLC0415 - torch is heavy; only checkpoint readers need it

    path = Path(path)
    if not path.is_file():
        msg = f"{what[:1].upper()}{what[1:]} not found: {path}"
        raise FileNotFoundError(msg)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - every failure becomes one clear line
        msg = f"Cannot load {what} {path}: {_torch_load_reason(error)}; expected {expected}."
        raise ValueError(msg) from None


def load_checkpoint_dict(
    path: str | Path,
    *,
    what: str = "checkpoint",
    expected: str = "a dict saved with torch.save",
    map_location: Any = "cpu",
) -> Mapping[str, Any]:
    """A checkpoint that must hold a dict: :func:`safe_torch_load` plus that check.

    The one reader of the package's model checkpoints (segmentation, MIL and
    evaluation checkpoints): no code in the file runs, and every failure is
    one line naming the file.

    The arguments are those of :func:`safe_torch_load`; a missing file is
    reported as ``"<What> file not found: <path>"``.

    Returns:
        The loaded mapping.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If it cannot be loaded with ``weights_only=True`` or
            does not hold a dict.

    Examples:
        >>> import tempfile, pathlib, torch
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "list.pt"
        >>> torch.save([1, 2], p)
        >>> load_checkpoint_dict(p, expected="a dict")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: Checkpoint ...list.pt holds a list, not a dict; expected a dict.

    """
    from collections.abc import Mapping  # noqa: PLC0415 - runtime check only

    label = f"{what[:1].upper()}{what[1:]}"
    path = Path(path)
    if not path.is_file():
        msg = f"{label} file not found: {path}"
        raise FileNotFoundError(msg)
    payload = safe_torch_load(path, what=what, expected=expected, map_location=map_location)
    if not isinstance(payload, Mapping):
        msg = f"{label} {path} holds a {type(payload).__name__}, not a dict; expected {expected}."
        raise ValueError(msg)
    return payload


def _shape(value: Any) -> tuple[int, ...] | None:
    shape = getattr(value, "shape", None)
    return None if shape is None else tuple(int(v) for v in shape)


def _examples(keys: list[str], limit: int = 3) -> str:
    shown = ", ".join(repr(k) for k in keys[:limit])
    return f"{shown}, ..." if len(keys) > limit else shown


def state_dict_mismatch(model_state: Mapping[str, Any], state: Mapping[str, Any]) -> str:
    """A one-line summary of how ``state`` differs from a model's state dict ("" if it fits).

    Examples:
        >>> import numpy as np
        >>> state_dict_mismatch({"w": np.zeros((2, 3))}, {"w": np.zeros((4, 3)), "b": 1})
        "1 unexpected key(s) ('b'); 1 shape mismatch(es) ('w': file (4, 3), model (2, 3))"

    """
    missing = sorted(set(model_state) - set(state))
    unexpected = sorted(set(state) - set(model_state))
    shapes = [
        f"{k!r}: file {_shape(state[k])}, model {_shape(model_state[k])}"
        for k in sorted(set(model_state) & set(state))
        if _shape(state[k]) != _shape(model_state[k])
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s) ({_examples(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s) ({_examples(unexpected)})")
    if shapes:
        more = ", ..." if len(shapes) > 2 else ""
        parts.append(f"{len(shapes)} shape mismatch(es) ({'; '.join(shapes[:2])}{more})")
    return "; ".join(parts)


def summarize_state_dict_error(error: BaseException | str) -> str:
    r"""One line out of the key dump of a failed ``load_state_dict`` (counts and examples).

    Examples:
        >>> text = (
        ...     "Error(s) in loading state_dict for Linear:\n"
        ...     '\tMissing key(s) in state_dict: "bias". \n'
        ...     '\tUnexpected key(s) in state_dict: "a", "b", "c", "d". '
        ... )
        >>> summarize_state_dict_error(text)
        "1 missing key(s) ('bias'); 4 unexpected key(s) ('a', 'b', 'c', ...)"

    """
    lines = str(error).strip().splitlines()
    parts = []
    for kind in ("Missing", "Unexpected"):
        for line in lines:
            found = re.match(rf"\s*{kind} key\(s\) in state_dict:(.*)", line)
            if found:
                keys = re.findall(r'"([^"]*)"', found.group(1))
                parts.append(f"{len(keys)} {kind.lower()} key(s) ({_examples(keys)})")
    sizes = [line.strip() for line in lines if line.strip().startswith("size mismatch for")]
    if sizes:
        parts.append(f"{len(sizes)} shape mismatch(es) ({sizes[0].removesuffix('.')})")
    return "; ".join(parts) or (lines[-1].strip() if lines else "")


def load_state_dict_checked(module: Any, state: Mapping[str, Any], *, source: str) -> None:
    """``module.load_state_dict(state, strict=True)`` with a one-line error on a mismatch.

    Args:
        module: The ``nn.Module``.
        state: The weights.
        source: Where they come from (``"checkpoint /path/last.pt"``), for the message.

    Raises:
        ValueError: If the weights do not fit the module (another
            architecture or configuration): the message counts the missing
            and unexpected keys and the shape mismatches, with examples.

    Examples:
        >>> import torch
        >>> load_state_dict_checked(
        ...     torch.nn.Linear(2, 1), {"weight": torch.zeros(1, 3)}, source="w.pt"
        ... )  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: The weights in w.pt do not fit Linear: 1 missing key(s) ('bias'); ...

    """
    if not hasattr(state, "keys"):
        msg = f"{source} holds a {type(state).__name__}, not a state dict of tensors."
        raise ValueError(msg)
    summary = state_dict_mismatch(module.state_dict(), state)
    if not summary:
        try:
            module.load_state_dict(dict(state), strict=True)
        except RuntimeError as error:
            summary = summarize_state_dict_error(error)
        else:
            return
    msg = (
        f"The weights in {source} do not fit {type(module).__name__}: {summary}. They were "
        "saved from another architecture or model configuration."
    )
    raise ValueError(msg)


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
