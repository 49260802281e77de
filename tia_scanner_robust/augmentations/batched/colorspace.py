"""Colour conversions in torch with OpenCV's 8-bit LAB/HSV scaling and skimage's HED.

Batched counterparts of :mod:`tia_scanner_robust.augmentations.colorspace`,
on float32 RGB *levels* ``(B, 3, H, W)`` in ``[0, 255]``:

- LAB: CIE L*a*b* (D65, sRGB; OpenCV's constants), scaled as OpenCV's 8-bit
  images, ``L * 255 / 100``, ``a + 128``, ``b + 128``. With ``quantize=True``
  (uint8 input) the values are exactly ``cv2.cvtColor(uint8, COLOR_RGB2LAB)``:
  OpenCV's 8-bit path interpolates a table and differs from the rounded
  formula by up to 2 levels on about 10% of colours, so the conversion looks
  the colours up in a ``2**24``-entry table built once with OpenCV (48 MB per
  device, cached; :func:`clear_tables` frees it).
- HSV: OpenCV's 8-bit HSV, ``H`` in degrees / 2 (``[0, 180)``), ``S`` and
  ``V`` in ``[0, 255]``. With ``quantize=True`` the conversion is OpenCV's
  integer algorithm exactly (``COLOR_RGB2HSV`` on uint8 images).
- HED: :func:`skimage.color.rgb2hed` optical densities (negative densities
  clipped at 0).

The inverse conversions follow OpenCV's float ``Lab2RGB`` / ``HSV2RGB`` and
skimage's ``hed2rgb`` and return float levels clipped to ``[0, 255]``
(not rounded).

Examples:
    >>> import torch
    >>> white = torch.full((1, 3, 1, 1), 255.0)
    >>> rgb_to_lab(white).flatten().round().tolist()
    [255.0, 128.0, 128.0]
    >>> lab_to_rgb(rgb_to_lab(white)).flatten().round().tolist()
    [255.0, 255.0, 255.0]

"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np
import torch

__all__ = [
    "clear_tables",
    "hed_to_rgb",
    "hsv8_to_rgb",
    "hsv_to_rgb",
    "lab_to_rgb",
    "rgb_to_gray",
    "rgb_to_hed",
    "rgb_to_hsv",
    "rgb_to_lab",
]

# OpenCV's sRGB <-> XYZ (D65) matrices and white point (color_lab.cpp).
_RGB2XYZ = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
_XYZ2RGB = (
    (3.240479, -1.53715, -0.498535),
    (-0.969256, 1.875991, 0.041556),
    (0.055648, -0.204043, 1.057311),
)
_WHITE = (0.950456, 1.0, 1.088754)
_LAB_T = 0.008856
_LAB_K = 903.3
# skimage.color.rgb2hed / hed2rgb
_RGB_FROM_HED = ((0.65, 0.70, 0.29), (0.07, 0.99, 0.11), (0.27, 0.57, 0.78))
_LOG_ADJUST = math.log(1e-6)


def _matrix(rows: tuple[tuple[float, ...], ...], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64).to(device=like.device, dtype=torch.float32)


def _mix(matrix: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``out[:, i] = sum_j matrix[i, j] * values[:, j]`` on ``(B, 3, H, W)``."""
    return torch.einsum("ij,bjhw->bihw", matrix, values)


def srgb_decode(encoded: torch.Tensor) -> torch.Tensor:
    """SRGB transfer function: encoded ``[0, 1]`` -> linear ``[0, 1]``."""
    encoded = encoded.clamp(0.0, 1.0)
    high = ((encoded + 0.055) / 1.055).pow(2.4)
    return torch.where(encoded <= 0.04045, encoded / 12.92, high)


def srgb_encode(linear: torch.Tensor) -> torch.Tensor:
    """Inverse sRGB transfer function: linear ``[0, 1]`` -> encoded ``[0, 1]``."""
    linear = linear.clamp(0.0, 1.0)
    high = 1.055 * linear.clamp_min(0.0031308).pow(1.0 / 2.4) - 0.055
    return torch.where(linear <= 0.0031308, linear * 12.92, high)


@functools.cache
def _table_cpu(name: str) -> torch.Tensor:
    """OpenCV's 8-bit conversion of every input triple (index ``c0 * 65536 + c1 * 256 + c2``).

    ``"RGB2LAB"``, ``"RGB2GRAY"``: every RGB colour (``2**24`` entries);
    ``"HSV2RGB"``: every 8-bit HSV triple with ``H < 180`` (``180 * 2**16`` entries).
    """
    first = 180 if name == "HSV2RGB" else 256
    grid = np.empty((first, 256, 256, 3), np.uint8)
    levels = np.arange(256, dtype=np.uint8)
    grid[..., 0] = levels[:first, None, None]
    grid[..., 1] = levels[None, :, None]
    grid[..., 2] = levels[None, None, :]
    code = {"RGB2LAB": cv2.COLOR_RGB2LAB, "RGB2GRAY": cv2.COLOR_RGB2GRAY}.get(
        name, cv2.COLOR_HSV2RGB
    )
    out = cv2.cvtColor(grid.reshape(first * 256, 256, 3), code)
    return torch.from_numpy(out.reshape(first * 65536, -1))


_TABLES: dict[tuple[str, str], torch.Tensor] = {}


def _table(name: str, device: torch.device) -> torch.Tensor:
    key = (name, str(device))
    if key not in _TABLES:
        _TABLES[key] = _table_cpu(name).to(device)
    return _TABLES[key]


def _look_up(values: torch.Tensor, name: str) -> torch.Tensor:
    """Look integer ``(B, 3, H, W)`` triples up in an OpenCV table; float32 result."""
    ints = values.round().clamp(0, 255).to(torch.int64)
    code = (ints[:, 0] << 16) | (ints[:, 1] << 8) | ints[:, 2]
    return _table(name, values.device)[code].permute(0, 3, 1, 2).to(torch.float32)


def clear_tables() -> None:
    """Free the cached 8-bit conversion tables (CPU and every device)."""
    _TABLES.clear()
    _table_cpu.cache_clear()


def rgb_to_lab(levels: torch.Tensor, *, quantize: bool = False) -> torch.Tensor:
    """RGB levels -> LAB in OpenCV's 8-bit scaling (float32).

    Examples:
        >>> import torch
        >>> red = torch.tensor([255.0, 0.0, 0.0]).view(1, 3, 1, 1)
        >>> rgb_to_lab(red, quantize=True).flatten().tolist()  # cv2: [136, 208, 195]
        [136.0, 208.0, 195.0]

    """
    if quantize:
        return _look_up(levels, "RGB2LAB")
    linear = srgb_decode(levels / 255.0)
    white = torch.tensor(_WHITE, dtype=torch.float32, device=levels.device).view(1, 3, 1, 1)
    xyz = _mix(_matrix(_RGB2XYZ, levels), linear) / white
    f = torch.where(xyz > _LAB_T, xyz.clamp_min(0.0).pow(1.0 / 3.0), 7.787 * xyz + 16.0 / 116.0)
    y = xyz[:, 1:2]
    lightness = torch.where(y > _LAB_T, 116.0 * f[:, 1:2] - 16.0, _LAB_K * y)
    a = 500.0 * (f[:, 0:1] - f[:, 1:2])
    b = 200.0 * (f[:, 1:2] - f[:, 2:3])
    return torch.cat([lightness * (255.0 / 100.0), a + 128.0, b + 128.0], dim=1)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """LAB in OpenCV's 8-bit scaling -> RGB levels in ``[0, 255]`` (OpenCV's ``Lab2RGB``)."""
    lightness = lab[:, 0:1] * (100.0 / 255.0)
    a, b = lab[:, 1:2] - 128.0, lab[:, 2:3] - 128.0
    low = lightness <= _LAB_T * _LAB_K
    y = torch.where(low, lightness / _LAB_K, ((lightness + 16.0) / 116.0).pow(3))
    fy = torch.where(low, 7.787 * y + 16.0 / 116.0, (lightness + 16.0) / 116.0)
    fxz = torch.cat([a / 500.0 + fy, fy - b / 200.0], dim=1)
    threshold = 7.787 * _LAB_T + 16.0 / 116.0
    xz = torch.where(fxz <= threshold, (fxz - 16.0 / 116.0) / 7.787, fxz.pow(3))
    white = torch.tensor(_WHITE, dtype=torch.float32, device=lab.device).view(1, 3, 1, 1)
    xyz = torch.cat([xz[:, 0:1], y, xz[:, 1:2]], dim=1) * white
    linear = _mix(_matrix(_XYZ2RGB, lab), xyz)
    return srgb_encode(linear) * 255.0


def _hsv_u8(levels: torch.Tensor) -> torch.Tensor:
    """OpenCV's integer ``RGB2HSV`` for 8-bit images (``hsv_shift = 12``, rounded tables)."""
    rgb = levels.round().to(torch.int32)
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    v = torch.maximum(torch.maximum(r, g), b)
    diff = v - torch.minimum(torch.minimum(r, g), b)
    steps = torch.arange(256, device=levels.device, dtype=torch.float64)
    sdiv = torch.where(steps > 0, torch.round(255.0 * 4096.0 / steps.clamp_min(1)), 0.0)
    hdiv = torch.where(steps > 0, torch.round(180.0 * 4096.0 / (6.0 * steps.clamp_min(1))), 0.0)
    sdiv, hdiv = sdiv.to(torch.int32), hdiv.to(torch.int32)
    s = (diff * sdiv[v.long()] + 2048) >> 12
    raw = torch.where(v == r, g - b, torch.where(v == g, b - r + 2 * diff, r - g + 4 * diff))
    h = (raw * hdiv[diff.long()] + 2048) >> 12
    h = torch.where(h < 0, h + 180, h)
    return torch.stack([h, s, v], dim=1).to(torch.float32)


def rgb_to_hsv(levels: torch.Tensor, *, quantize: bool = False) -> torch.Tensor:
    """RGB levels -> HSV in OpenCV's 8-bit scaling (``H`` in ``[0, 180)``), float32.

    ``quantize=True`` reproduces ``cv2.cvtColor(uint8, COLOR_RGB2HSV)`` exactly
    (the levels must be integers); otherwise OpenCV's float formula.

    Examples:
        >>> import torch
        >>> px = torch.tensor([200.0, 120.0, 180.0]).view(1, 3, 1, 1)
        >>> rgb_to_hsv(px, quantize=True).flatten().tolist()  # cv2: [158, 102, 200]
        [158.0, 102.0, 200.0]

    """
    if quantize:
        return _hsv_u8(levels)
    rgb = levels / 255.0
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    v = rgb.amax(dim=1)
    diff = v - rgb.amin(dim=1)
    eps = torch.finfo(torch.float32).eps
    s = diff / (v.abs() + eps)
    scale = 60.0 / (diff + eps)
    h = torch.where(
        v == r,
        (g - b) * scale,
        torch.where(v == g, (b - r) * scale + 120.0, (r - g) * scale + 240.0),
    )
    h = torch.where(h < 0, h + 360.0, h)
    return torch.stack([h * 0.5, s * 255.0, v * 255.0], dim=1)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """HSV in OpenCV's 8-bit scaling -> RGB levels (OpenCV's float ``HSV2RGB``; hue wraps)."""
    h = torch.remainder(hsv[:, 0] / 30.0, 6.0)  # sector units, H in degrees / 2
    s = hsv[:, 1] / 255.0
    v = hsv[:, 2] / 255.0
    sector = torch.floor(h).clamp_(0, 5)
    frac = h - sector
    p = v * (1.0 - s)
    q = v * (1.0 - s * frac)
    t = v * (1.0 - s * (1.0 - frac))
    # (r, g, b) per sector 0..5: (v,t,p) (q,v,p) (p,v,t) (p,q,v) (t,p,v) (v,p,q)
    table = torch.stack([v, q, p, p, t, v, t, v, v, q, p, p, p, p, t, v, v, q], dim=1)
    table = table.view(hsv.shape[0], 3, 6, *hsv.shape[2:])
    index = sector.long().unsqueeze(1).unsqueeze(2).expand(-1, 3, 1, -1, -1)
    rgb = torch.gather(table, 2, index).squeeze(2)
    return (rgb * 255.0).clamp_(0.0, 255.0)


def hsv8_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """Integer 8-bit HSV (``H < 180``) -> RGB levels exactly as OpenCV's uint8 ``HSV2RGB``.

    OpenCV's 8-bit path differs from the rounded float formula by one level
    on about 30% of the colours, so this looks the triples up in a table
    built once with OpenCV (35 MB per device, cached).
    """
    return _look_up(hsv, "HSV2RGB")


def rgb_to_hed(levels: torch.Tensor) -> torch.Tensor:
    """RGB levels -> HED optical densities (:func:`skimage.color.rgb2hed`)."""
    od = torch.log((levels / 255.0).clamp_min(1e-6)) / _LOG_ADJUST
    hed_from_rgb = torch.linalg.inv(torch.tensor(_RGB_FROM_HED, dtype=torch.float64))
    matrix = hed_from_rgb.T.to(device=levels.device, dtype=torch.float32)
    return _mix(matrix, od).clamp_min_(0.0)


def hed_to_rgb(hed: torch.Tensor) -> torch.Tensor:
    """HED densities -> RGB levels clipped to ``[0, 255]`` (:func:`skimage.color.hed2rgb`)."""
    matrix = torch.tensor(_RGB_FROM_HED, dtype=torch.float64).T * _LOG_ADJUST
    rgb = torch.exp(_mix(matrix.to(device=hed.device, dtype=torch.float32), hed))
    return (rgb * 255.0).clamp_(0.0, 255.0)


def rgb_to_gray(levels: torch.Tensor, *, quantize: bool = False) -> torch.Tensor:
    """Rec. 601 luma ``(B, 1, H, W)`` as ``cv2.COLOR_RGB2GRAY``.

    With ``quantize=True`` (integer levels) it is OpenCV's 8-bit result
    exactly (a ``2**24``-entry table built once with OpenCV, 16 MB per device).
    """
    if quantize:
        return _look_up(levels, "RGB2GRAY")
    return 0.299 * levels[:, 0:1] + 0.587 * levels[:, 1:2] + 0.114 * levels[:, 2:3]
