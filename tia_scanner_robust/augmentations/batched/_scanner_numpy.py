"""The scanner simulator's stages with OpenCV, per image, noise from a given generator.

The CPU backend of :class:`~.batched.scanner.BatchScannerSimulator`: the
pipeline of :func:`~tia_scanner_robust.augmentations.scanner.simulate_scanner`
stage for stage (it reuses that module's stage functions), except that the
sensor noise comes from ``rng`` (an augmentation) instead of a seed made from
the image content.

Examples:
    >>> import numpy as np
    >>> from tia_scanner_robust.augmentations.scanner import ScannerProfile, simulate_scanner
    >>> tile = np.full((16, 16, 3), 150, np.uint8)
    >>> quiet = ScannerProfile("soft", blur_sigma=1.0, gamma=(1.1, 1.0, 0.9))
    >>> rng = np.random.default_rng(0)
    >>> bool((scan_numpy(tile, quiet, rng) == simulate_scanner(tile, quiet)).all())
    True

"""

from __future__ import annotations

import numpy as np

from tia_scanner_robust.augmentations.scanner import (
    _DECODE_LUT,
    _LUMA,
    ScannerProfile,
    _gaussian,
    _jpeg,
    _shift,
    _srgb_decode,
    _srgb_encode,
)

__all__ = ["scan_numpy"]


def scan_numpy(
    image: np.ndarray, profile: ScannerProfile, rng: np.random.Generator, *, jpeg: bool = False
) -> np.ndarray:
    """One image through ``profile`` (uint8 or float32 in ``[0, 1]``); same dtype out."""
    is_uint8 = image.dtype == np.uint8
    linear = _DECODE_LUT[image] if is_uint8 else _srgb_decode(image)
    dx, dy = profile.shift
    if dx or dy:
        linear = _shift(linear, dx, dy)
    if profile.blur_sigma > 0:
        linear = _gaussian(linear, profile.blur_sigma)
    if profile.noise_shot > 0 or profile.noise_read > 0:
        std = np.sqrt(profile.noise_shot * np.clip(linear, 0.0, None) + profile.noise_read**2)
        linear = linear + std * rng.standard_normal(linear.shape, dtype=np.float32)
    matrix = np.asarray(profile.color_matrix, dtype=np.float32)
    gains = np.asarray(profile.white_balance, dtype=np.float32)
    if not (np.array_equal(matrix, np.eye(3)) and np.all(gains == 1)):
        linear = (linear * gains) @ matrix.T
    encoded = _srgb_encode(linear)
    gamma = np.asarray(profile.gamma, dtype=np.float32)
    if np.any(gamma != 1):
        encoded = np.power(encoded, gamma)
    black, white = profile.levels
    if black != 0 or white != 1:
        encoded = black + (white - black) * encoded
    if profile.saturation != 1:
        luma = (encoded @ _LUMA)[..., None]
        encoded = luma + profile.saturation * (encoded - luma)
    if profile.sharpen_amount > 0:
        encoded = encoded + profile.sharpen_amount * (
            encoded - _gaussian(encoded, profile.sharpen_sigma)
        )
    encoded = np.clip(encoded, 0.0, 1.0).astype(np.float32, copy=False)
    with_jpeg = jpeg and profile.jpeg_quality is not None
    if is_uint8 or with_jpeg:
        scan = np.rint(encoded * 255.0).astype(np.uint8)
        if with_jpeg:
            scan = _jpeg(scan, profile.jpeg_quality)
        return scan if is_uint8 else scan.astype(np.float32) / np.float32(255.0)
    return encoded
