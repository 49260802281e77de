"""Colour spaces used by RandStainNA, their channel statistics and Reinhard transfer.

Every colour space is expressed in one *8-bit convention* so that templates
fitted on uint8 images and float32 images agree, and so that template files
stay comparable with the RandStainNA reference implementation:

- ``"LAB"``: CIE L*a*b* (D65, sRGB) with OpenCV's 8-bit scaling:
  ``L * 255 / 100``, ``a + 128``, ``b + 128`` (each in ``[0, 255]``).
- ``"HSV"``: OpenCV's 8-bit HSV: ``H`` in degrees / 2, so ``[0, 180)``;
  ``S`` and ``V`` in ``[0, 255]``. Hue is circular; see :func:`reinhard_transfer`.
- ``"HED"``: colour deconvolution into haematoxylin, eosin and DAB optical
  densities, exactly :func:`skimage.color.rgb2hed` (Ruifrok and Johnston's
  stain matrix, ``log(1e-6)`` normalisation, negative densities clipped at 0).

uint8 RGB images go through OpenCV's 8-bit conversions (so LAB and HSV values
are exactly ``cv2.cvtColor``'s); float32 RGB images (values in ``[0, 1]``)
through OpenCV's float conversions, rescaled to the same convention. All
computation is float32 with OpenCV kernels (``cvtColor``, ``LUT``,
``transform``), fast enough to run per image in a data loader.

Examples:
    >>> import numpy as np
    >>> rgb = np.full((2, 2, 3), 255, np.uint8)
    >>> lab = rgb_to_colorspace(rgb, "LAB")
    >>> lab[0, 0].tolist()
    [255.0, 128.0, 128.0]
    >>> colorspace_to_rgb(lab, "LAB")[0, 0].tolist()
    [255, 255, 255]

"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

from tia_scanner_robust._validation import check_in_choices, check_rgb_image

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, DTypeLike

__all__ = [
    "CHANNEL_NAMES",
    "COLOR_SPACES",
    "MIN_IMAGE_STD",
    "channel_stats",
    "colorspace_to_rgb",
    "reinhard_transfer",
    "rgb_to_colorspace",
]

#: Supported colour spaces.
COLOR_SPACES: tuple[str, ...] = ("LAB", "HSV", "HED")

#: Channel names per colour space (the keys used in template files).
CHANNEL_NAMES: dict[str, tuple[str, str, str]] = {
    "LAB": ("L", "A", "B"),
    "HSV": ("H", "S", "V"),
    "HED": ("H", "E", "D"),
}

# skimage.color.rgb2hed / hed2rgb, in float64 then cast once.
_RGB_FROM_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
_HED_FROM_RGB = np.linalg.inv(_RGB_FROM_HED)
_LOG_ADJUST = float(np.log(1e-6))  # negative; skimage divides log(rgb) by it

# 8-bit convention y = native * scale + shift, where "native" is what OpenCV's
# float conversions return (L in [0, 100], a/b around 0, H in degrees, S/V in [0, 1])
# and skimage's rgb2hed for HED.
_NATIVE_SCALE: dict[str, np.ndarray] = {
    "LAB": np.array([255.0 / 100.0, 1.0, 1.0]),
    "HSV": np.array([0.5, 255.0, 255.0]),
    "HED": np.array([1.0, 1.0, 1.0]),
}
_NATIVE_SHIFT: dict[str, np.ndarray] = {
    "LAB": np.array([0.0, 128.0, 128.0]),
    "HSV": np.array([0.0, 0.0, 0.0]),
    "HED": np.array([0.0, 0.0, 0.0]),
}
# Domain of each channel in the 8-bit convention (values are clipped to it on
# the way back); HSV hue is circular and wraps instead.
_LOWER: dict[str, np.ndarray] = {
    "LAB": np.array([0.0, 0.0, 0.0]),
    "HSV": np.array([-np.inf, 0.0, 0.0]),
    "HED": np.array([0.0, 0.0, 0.0]),
}
_UPPER: dict[str, np.ndarray] = {
    "LAB": np.array([255.0, 255.0, 255.0]),
    "HSV": np.array([np.inf, 255.0, 255.0]),
    "HED": np.array([np.inf, np.inf, np.inf]),
}
_HUE_PERIOD = 180.0  # OpenCV 8-bit hue
_FORWARD_8U = {"LAB": cv2.COLOR_RGB2LAB, "HSV": cv2.COLOR_RGB2HSV}
_FORWARD_32F = {"LAB": cv2.COLOR_RGB2Lab, "HSV": cv2.COLOR_RGB2HSV}
_BACKWARD_32F = {"LAB": cv2.COLOR_Lab2RGB, "HSV": cv2.COLOR_HSV2RGB}

#: An image channel whose std (8-bit convention) is below this is treated as
#: constant by Reinhard transfer: it is moved to the target mean with gain 0
#: (amplifying float32 rounding noise would be meaningless). LAB/HSV: 1/100 of
#: a uint8 level; HED densities are ~100x smaller numbers.
MIN_IMAGE_STD: dict[str, float] = {"LAB": 1e-2, "HSV": 1e-2, "HED": 1e-4}


def _check_space(space: str) -> str:
    if not isinstance(space, str):
        msg = (
            f"space must be a string, one of {', '.join(COLOR_SPACES)}; got {type(space).__name__}."
        )
        raise TypeError(msg)
    return check_in_choices(space.upper(), COLOR_SPACES, "colour space")


def _hed_od_lut() -> np.ndarray:
    """Optical density ``log(max(v / 255, 1e-6)) / log(1e-6)`` for every uint8 level."""
    levels = np.maximum(np.arange(256, dtype=np.float64) / 255.0, 1e-6)
    od = np.log(levels) / _LOG_ADJUST
    return np.ascontiguousarray(np.repeat(od[None, :, None], 3, axis=2), dtype=np.float32)


_HED_OD_LUT = _hed_od_lut()
# cv2.transform computes dst = M @ src per pixel, so row-vector maths x @ A uses M = A.T.
_HED_MATRIX = np.ascontiguousarray(_HED_FROM_RGB.T, dtype=np.float32)
_HED_BACK = _RGB_FROM_HED * _LOG_ADJUST  # log_rgb = stains @ _HED_BACK


def _rgb_to_native(image: np.ndarray, space: str) -> np.ndarray:
    """Float32 colour values: OpenCV 8-bit values (uint8 LAB/HSV) or native units."""
    if space == "HED":
        if image.dtype == np.uint8:
            od = cv2.LUT(image, _HED_OD_LUT)
        else:
            od = np.maximum(image, np.float32(1e-6))
            cv2.log(od, dst=od)
            od *= np.float32(1.0 / _LOG_ADJUST)
        stains = cv2.transform(od, _HED_MATRIX)
        np.maximum(stains, 0, out=stains)
        return stains
    if image.dtype == np.uint8:
        return cv2.cvtColor(image, _FORWARD_8U[space]).astype(np.float32)
    return cv2.cvtColor(image, _FORWARD_32F[space])


def rgb_to_colorspace(image: np.ndarray, space: str) -> np.ndarray:
    """Convert an RGB image to ``space`` in the 8-bit convention.

    Args:
        image: ``(H, W, 3)`` RGB, uint8 or float32 in ``[0, 1]``.
        space: ``"LAB"``, ``"HSV"`` or ``"HED"`` (case-insensitive).

    Returns:
        ``(H, W, 3)`` float32 array: LAB as OpenCV's 8-bit LAB, HSV as OpenCV's
        8-bit HSV (``H`` in ``[0, 180)``), HED as :func:`skimage.color.rgb2hed`.
        For uint8 input LAB and HSV equal ``cv2.cvtColor(image, COLOR_RGB2LAB /
        COLOR_RGB2HSV)`` exactly; float32 input is converted without rounding.

    Raises:
        ValueError: If ``space`` is unknown or ``image`` is not an RGB image.
        TypeError: If ``image`` has an unsupported dtype.

    Examples:
        >>> import numpy as np
        >>> red = np.zeros((1, 1, 3), np.uint8)
        >>> red[..., 0] = 255
        >>> rgb_to_colorspace(red, "HSV")[0, 0].tolist()
        [0.0, 255.0, 255.0]
        >>> rgb_to_colorspace(red, "HED").dtype
        dtype('float32')

    """
    space = _check_space(space)
    image = check_rgb_image(image)
    values = _rgb_to_native(image, space)
    if image.dtype == np.uint8 and space != "HED":
        return values
    return _native_to_8bit(values, space)


def _native_to_8bit(values: np.ndarray, space: str) -> np.ndarray:
    if space == "HED":
        return values
    matrix = np.zeros((3, 4), np.float64)
    matrix[:, :3] = np.diag(_NATIVE_SCALE[space])
    matrix[:, 3] = _NATIVE_SHIFT[space]
    return cv2.transform(values, matrix)


def _check_values(values: ArrayLike, name: str = "values") -> np.ndarray:
    values = np.asarray(values)
    if values.ndim != 3 or values.shape[-1] != 3:
        msg = f"{name} must have shape (H, W, 3); got {values.shape}."
        raise ValueError(msg)
    if values.size == 0:
        msg = f"{name} is empty (shape {values.shape})."
        raise ValueError(msg)
    if not np.issubdtype(values.dtype, np.number) or np.issubdtype(
        values.dtype, np.complexfloating
    ):
        msg = f"{name} must be a real numeric array; got dtype {values.dtype}."
        raise TypeError(msg)
    values = np.ascontiguousarray(values, dtype=np.float32)
    if not np.isfinite(values).all():
        msg = f"{name} contains NaN or inf values."
        raise ValueError(msg)
    return values


def _check_dtype(dtype: DTypeLike) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype not in (np.uint8, np.float32):
        msg = f"dtype must be uint8 or float32; got {dtype}."
        raise TypeError(msg)
    return dtype


def _clip_native(native: np.ndarray, space: str) -> np.ndarray:
    """Clip native-unit values (in place) to the domain of the forward conversion."""
    if space == "HED":
        np.maximum(native, 0, out=native)
        return native
    # OpenCV takes a 4-tuple as a per-channel scalar (np.clip with per-channel
    # bounds is ~30x slower on interleaved images).
    lower = (_LOWER[space] - _NATIVE_SHIFT[space]) / _NATIVE_SCALE[space]
    upper = (_UPPER[space] - _NATIVE_SHIFT[space]) / _NATIVE_SCALE[space]
    cv2.max(native, (*lower.tolist(), 0.0), dst=native)
    cv2.min(native, (*upper.tolist(), 0.0), dst=native)
    return native


def _native_to_rgb(native: np.ndarray, space: str, dtype: np.dtype) -> np.ndarray:
    """Clipped native values -> RGB of ``dtype``.

    The float hue is wrapped into ``[0, 360)`` here: OpenCV's vectorised float
    HSV->RGB mishandles negative hues (the same pixel converted alone is right).
    """
    if space == "HSV":
        hue = native[..., 0]
        np.mod(hue, 360.0, out=hue)
    if space == "HED":
        rgb = cv2.transform(native, np.ascontiguousarray(_HED_BACK.T, dtype=np.float32))
        cv2.exp(rgb, dst=rgb)  # > 0 always; may exceed 1
    else:
        rgb = cv2.cvtColor(native, _BACKWARD_32F[space])  # OpenCV clips to [0, 1]
    if dtype == np.uint8:
        # Values are non-negative here, so |x| * 255 with saturation is the
        # rounded, clipped conversion.
        return cv2.convertScaleAbs(rgb, alpha=255.0)
    np.clip(rgb, 0.0, 1.0, out=rgb)
    return rgb


def colorspace_to_rgb(values: ArrayLike, space: str, dtype: DTypeLike = np.uint8) -> np.ndarray:
    """Convert colour values in the 8-bit convention back to RGB.

    Values outside the domain of the forward conversion are clipped first
    (LAB to ``[0, 255]``; HSV ``S``, ``V`` to ``[0, 255]`` with ``H`` wrapped
    modulo 180; HED densities at 0), then the RGB result is clipped to the
    output range.

    Args:
        values: ``(H, W, 3)`` colour values as returned by :func:`rgb_to_colorspace`.
        space: ``"LAB"``, ``"HSV"`` or ``"HED"``.
        dtype: ``np.uint8`` (``[0, 255]``, rounded) or ``np.float32`` (``[0, 1]``).

    Returns:
        ``(H, W, 3)`` RGB array of ``dtype``.

    Raises:
        ValueError: If ``space`` is unknown or ``values`` has a bad shape or NaN.
        TypeError: If ``dtype`` is not uint8 or float32.

    Examples:
        >>> import numpy as np
        >>> rgb = np.array([[[200, 120, 180]]], np.uint8)
        >>> back = colorspace_to_rgb(rgb_to_colorspace(rgb, "HED"), "HED")
        >>> back[0, 0].tolist()
        [200, 120, 180]

    """
    space = _check_space(space)
    dtype = _check_dtype(dtype)
    values = _check_values(values)
    scale = 1.0 / _NATIVE_SCALE[space]
    matrix = np.zeros((3, 4), np.float64)
    matrix[:, :3] = np.diag(scale)
    matrix[:, 3] = -_NATIVE_SHIFT[space] * scale
    native = cv2.transform(values, matrix)
    return _native_to_rgb(_clip_native(native, space), space, dtype)


def channel_stats(values: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and (population) standard deviation of an ``(H, W, 3)`` array.

    Args:
        values: Colour values (any real dtype).

    Returns:
        ``(mean, std)``, two float64 arrays of shape ``(3,)``.

    Raises:
        ValueError: If ``values`` is not ``(H, W, 3)``, is empty or holds NaN.

    Examples:
        >>> import numpy as np
        >>> v = np.zeros((2, 2, 3), np.float32)
        >>> v[0, :, 0] = 2.0
        >>> mean, std = channel_stats(v)
        >>> mean.tolist(), std.tolist()
        ([1.0, 0.0, 0.0], [1.0, 0.0, 0.0])

    """
    arr = np.asarray(values)
    if arr.dtype != np.uint8:
        arr = _check_values(arr)
    elif arr.ndim != 3 or arr.shape[-1] != 3 or arr.size == 0:
        _check_values(arr)
    mean, std = cv2.meanStdDev(np.ascontiguousarray(arr))
    return mean.reshape(3).astype(np.float64), std.reshape(3).astype(np.float64)


def _check_target(value: ArrayLike, name: str, *, non_negative: bool = False) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != (3,):
        msg = f"{name} must hold 3 values (one per channel); got shape {arr.shape}."
        raise ValueError(msg)
    if not np.isfinite(arr).all():
        msg = f"{name} must be finite; got {arr.tolist()}."
        raise ValueError(msg)
    if non_negative and (arr < 0).any():
        msg = f"{name} must be non-negative; got {arr.tolist()}."
        raise ValueError(msg)
    return arr


def _gain_offset(
    space: str,
    mean: np.ndarray,
    std: np.ndarray,
    target_mean: np.ndarray,
    target_std: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """``y' = y * gain + offset`` maps (mean, std) to (target_mean, target_std)."""
    constant = std < MIN_IMAGE_STD[space]
    gain = np.where(constant, 0.0, target_std / np.where(constant, 1.0, std))
    return gain, target_mean - mean * gain


def _transfer_uint8_lut(
    image: np.ndarray,
    space: str,
    target_mean: np.ndarray,
    target_std: np.ndarray,
) -> np.ndarray:
    """Reinhard transfer of a uint8 image in LAB or HSV through look-up tables.

    One 256-entry float LUT per channel does the affine map, the clipping or
    hue wrapping and the rescale to OpenCV's float units in a single pass.
    """
    values = cv2.cvtColor(image, _FORWARD_8U[space])
    mean, std = cv2.meanStdDev(values)
    gain, offset = _gain_offset(space, mean.reshape(3), std.reshape(3), target_mean, target_std)
    levels = np.arange(256, dtype=np.float64)[:, None]
    mapped = np.clip(levels * gain + offset, _LOWER[space], _UPPER[space])
    if space == "HSV":
        mapped[:, 0] = np.mod(mapped[:, 0], _HUE_PERIOD)
    native = (mapped - _NATIVE_SHIFT[space]) / _NATIVE_SCALE[space]
    lut = np.ascontiguousarray(native[None], dtype=np.float32)
    return _native_to_rgb(cv2.LUT(values, lut), space, np.dtype(np.uint8))


def reinhard_transfer(
    image: np.ndarray,
    space: str,
    target_mean: ArrayLike,
    target_std: ArrayLike,
) -> np.ndarray:
    """Reinhard colour transfer of ``image`` to a target mean and std in ``space``.

    Per channel ``c`` of the image converted to ``space`` (8-bit convention),

    ``x' = (x - mu_c) / sigma_c * target_std_c + target_mean_c``

    with ``mu_c``, ``sigma_c`` the image's own mean and population std; a
    channel with ``sigma_c`` below :data:`MIN_IMAGE_STD` (constant up to
    rounding) is set to ``target_mean_c``. The
    result is clipped to the domain of the forward conversion (LAB to
    ``[0, 255]``; HSV ``S``, ``V`` to ``[0, 255]``; HED densities at 0), hue is
    wrapped modulo 180 (it is circular), and the image is converted back to
    RGB and clipped. The output has the input's dtype.

    For uint8 LAB/HSV the affine map is applied through a 256-entry look-up
    table fused with the rescale to OpenCV's float units; everything else is
    float32 with the per-channel maps folded into one ``cv2.transform``.

    Args:
        image: ``(H, W, 3)`` RGB, uint8 or float32 in ``[0, 1]``.
        space: ``"LAB"``, ``"HSV"`` or ``"HED"``.
        target_mean: Three target channel means (8-bit convention).
        target_std: Three non-negative target channel stds.

    Returns:
        The transferred RGB image, same shape and dtype as ``image``.

    Raises:
        ValueError: On a bad image, unknown space or bad targets.
        TypeError: If the image dtype is not uint8 or float32.

    Examples:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> img = rng.integers(60, 200, (64, 64, 3)).astype(np.uint8)
        >>> out = reinhard_transfer(img, "LAB", [150.0, 140.0, 120.0], [20.0, 5.0, 5.0])
        >>> mean, std = channel_stats(rgb_to_colorspace(out, "LAB"))
        >>> bool(np.allclose(mean, [150, 140, 120], atol=1.0))
        True

    """
    space = _check_space(space)
    image = check_rgb_image(image)
    target_mean = _check_target(target_mean, "target_mean")
    target_std = _check_target(target_std, "target_std", non_negative=True)
    if image.dtype == np.uint8 and space != "HED":
        return _transfer_uint8_lut(image, space, target_mean, target_std)

    native = _rgb_to_native(image, space)
    mean, std = cv2.meanStdDev(native)
    scale, shift = _NATIVE_SCALE[space], _NATIVE_SHIFT[space]
    mean8, std8 = mean.reshape(3) * scale + shift, std.reshape(3) * scale
    gain, offset = _gain_offset(space, mean8, std8, target_mean, target_std)
    # y = native * scale + shift; y' = y * gain + offset; native' = (y' - shift) / scale
    matrix = np.zeros((3, 4), np.float64)
    matrix[:, :3] = np.diag(gain)
    matrix[:, 3] = (shift * gain + offset - shift) / scale
    native = cv2.transform(native, matrix)
    return _native_to_rgb(_clip_native(native, space), space, image.dtype)
