"""Fit a scanner profile from registered pairs of real scans of the same tissue.

:func:`fit_scanner_profile` estimates the :class:`~.scanner.ScannerProfile`
that maps scanner A's images (the *reference*) to look like scanner B's (the
*target*), from pairs ``(A image, B image)`` of the same tissue region, e.g.
the regions ``build-paired wsis`` cuts from registered multi-scanner slides.
The fitted profile is the simulator's own model, so it can be applied to any
single-scanner data set (``simulate_scanner``, ``ScannerSimulator``,
``build-paired simulate --profile fitted.yaml``).

Real pairs are 1-3 px out of register, so every statistic is chosen to need
no pixel-exact correspondence:

1. **Alignment check**: phase correlation of the grey images gives each
   pair's residual shift (reported) and a correlation after that shift; a
   pair whose correlation is below ``min_correlation`` is not the same tissue
   and the fit is refused.
2. **Colour and tone** (colour matrix in linear light, white balance,
   per-channel gamma, black/white levels and saturation in sRGB-encoded
   values: exactly the simulator's stages 5-6) by robust least squares on
   two terms: (a) per-channel quantiles (1-99 %) of the low-passed images,
   which need no correspondence at all (histogram matching), and (b) local
   means (Gaussian ``sigma = 2`` px, after undoing the pair's shift), which a
   1-3 px error barely changes and which carry the cross-channel information
   that marginal quantiles lack. The matrix acts on linear light because
   illumination and sensor responses mix light linearly (Beer-Lambert
   transmission is multiplicative in linear light); the tone curve acts on
   encoded values, where scanners apply their rendering curves.
3. **Sharpness**: the ratio of the radially averaged power spectra of the
   target and of the colour-mapped reference, ``R(f) = P_B(f) / P_A'(f)``,
   is fitted by ``c |H(f)|^2 + n / P_A'(f)``, with ``H`` a Gaussian blur
   ``exp(-2 pi^2 sigma^2 f^2)`` (softer target) or an unsharp mask
   ``1 + a (1 - exp(-2 pi^2 f^2))`` (sharper target) and ``n`` a white noise
   floor. Power spectra ignore translation, so misalignment does not matter.
4. **Noise**: the read-noise level whose simulated scan has the same robust
   noise estimate (Immerkaer's Laplacian estimator) as the real target.
5. **JPEG** quality: given, or estimated from the target files' quantisation
   tables (:func:`estimate_jpeg_quality`) by the command line.

Examples:
    >>> import numpy as np
    >>> from tiatoolbox.data import stain_norm_target
    >>> from tia_scanner_robust.augmentations.scanner import ScannerProfile, simulate_scanner
    >>> image = stain_norm_target()[:384, :384]
    >>> truth = ScannerProfile("truth", gamma=(0.8, 0.85, 0.9), blur_sigma=0.8)
    >>> pairs = [
    ...     (image[y : y + 192], simulate_scanner(image, truth)[y : y + 192]) for y in (0, 192)
    ... ]
    >>> fit = fit_scanner_profile(pairs, name="B")
    >>> round(fit.profile.blur_sigma, 1)
    0.8

"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from tia_scanner_robust._validation import check_rgb_image, read_rgb_image
from tia_scanner_robust.augmentations.scanner import (
    _LUMA,
    ScannerProfile,
    save_scanner_profile,
    simulate_scanner,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "MIN_PAIR_SIDE",
    "ScannerProfileFit",
    "estimate_jpeg_quality",
    "estimate_noise",
    "fit_scanner_profile",
    "pair_alignment",
    "radial_power_spectrum",
]

#: Smallest side (px) of a pair's images: the spectra need some extent.
MIN_PAIR_SIDE = 64
#: Fewest pixels, over every pair, that a fit accepts.
MIN_TOTAL_PIXELS = 128 * 128
_QUANTILES = np.linspace(0.01, 0.99, 33)
_LOWPASS_SIGMA = 2.0
_BAND = (0.03, 0.35)  # cycles / px used by the sharpness fit
_N_BINS = 48

ImagePair = tuple[np.ndarray | str | Path, np.ndarray | str | Path]


@dataclass(frozen=True)
class ScannerProfileFit:
    """A fitted profile and what the fit saw.

    Attributes:
        profile: The fitted :class:`~.scanner.ScannerProfile`.
        diagnostics: Per-pair shift and correlation, the colour-fit residual,
            the spectral ratio and its model, the noise estimates.

    """

    profile: ScannerProfile
    diagnostics: dict[str, Any] = field(default_factory=dict)

    def save(self, path: str | Path, **provenance: Any) -> Path:
        """Write the profile as YAML with the diagnostics (and ``provenance``) under ``fit``.

        Examples:
            >>> import tempfile
            >>> fit = ScannerProfileFit(ScannerProfile("b"), {"n_pairs": 2})
            >>> fit.save(Path(tempfile.mkdtemp()) / "b.yaml", target="B").suffix
            '.yaml'

        """
        return save_scanner_profile(self.profile, path, fit={**provenance, **self.diagnostics})


# --------------------------------------------------------------------------- #
# Helpers
# --------------------------------------------------------------------------- #
def _load(image: np.ndarray | str | Path, where: str) -> np.ndarray:
    if isinstance(image, (str, Path)):
        image = read_rgb_image(image)
    check_rgb_image(image, where)
    if image.dtype != np.uint8:
        image = np.clip(np.rint(np.asarray(image, np.float32) * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image)


def _gray(image: np.ndarray) -> np.ndarray:
    values = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image
    return (values @ _LUMA).astype(np.float32)


def pair_alignment(reference: np.ndarray, target: np.ndarray) -> tuple[float, float, float]:
    """Residual shift ``(dx, dy)`` of ``target`` against ``reference`` and their correlation.

    Phase correlation of the standardised grey images (Hann window); the
    correlation is Pearson's between the low-passed grey images after the
    shift is undone (so contrast and colour differences do not lower it).

    Returns:
        ``(dx, dy, correlation)``: ``target(x) ~ reference(x - d)``.

    Examples:
        >>> import numpy as np
        >>> from tiatoolbox.data import stain_norm_target
        >>> image = stain_norm_target()
        >>> dx, dy, corr = pair_alignment(image[:200, :200], image[2:202, :200])
        >>> round(dx, 1), round(dy, 1), corr > 0.9
        (0.0, -2.0, True)

    """
    a, b = _gray(reference).astype(np.float64), _gray(target).astype(np.float64)
    # OpenCV pads to its optimal DFT size, which biases the peak by up to half a
    # pixel (e.g. 224 px is padded to 225): crop to a size that needs no padding.
    height, width = (_dft_size(n) for n in a.shape)
    a, b = a[:height, :width], b[:height, :width]
    a = (a - a.mean()) / (a.std() + 1e-6)
    b = (b - b.mean()) / (b.std() + 1e-6)
    window = cv2.createHanningWindow(a.shape[::-1], cv2.CV_64F)
    (dx, dy), _ = cv2.phaseCorrelate(a, b, window)
    aligned = _shift(b, -dx, -dy)
    margin = math.ceil(max(abs(dx), abs(dy))) + 4
    sa = cv2.GaussianBlur(a, (0, 0), _LOWPASS_SIGMA)[margin:-margin, margin:-margin]
    sb = cv2.GaussianBlur(aligned, (0, 0), _LOWPASS_SIGMA)[margin:-margin, margin:-margin]
    if sa.size < 16 or sa.std() < 1e-6 or sb.std() < 1e-6:
        return float(dx), float(dy), 0.0
    corr = float(np.corrcoef(sa.ravel(), sb.ravel())[0, 1])
    return float(dx), float(dy), corr


def _dft_size(n: int) -> int:
    """Largest size <= n that OpenCV's DFT uses without padding."""
    while n > 1 and cv2.getOptimalDFTSize(n) != n:
        n -= 1
    return n


def _shift(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    matrix = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])
    height, width = image.shape[:2]
    return cv2.warpAffine(
        image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    )


def radial_power_spectrum(gray: np.ndarray, n_bins: int = _N_BINS) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum of a grey image (Hann-windowed, mean removed).

    Returns:
        ``(frequencies, power)``: bin centres in cycles per pixel (``0..0.5``)
        and the mean ``|FFT|^2`` per bin, normalised by the pixel count.

    Examples:
        >>> import numpy as np
        >>> f, p = radial_power_spectrum(np.random.default_rng(0).random((64, 64)))
        >>> f.shape == p.shape, bool(f[0] > 0), bool(f[-1] < 0.5)
        (True, True, True)

    """
    gray = np.asarray(gray, dtype=np.float64)
    window = cv2.createHanningWindow(gray.shape[::-1], cv2.CV_64F)
    spectrum = np.abs(np.fft.fft2((gray - gray.mean()) * window)) ** 2 / gray.size
    fy = np.fft.fftfreq(gray.shape[0])[:, None]
    fx = np.fft.fftfreq(gray.shape[1])[None, :]
    radius = np.sqrt(fx**2 + fy**2).ravel()
    edges = np.linspace(0.0, 0.5, n_bins + 1)
    index = np.digitize(radius, edges) - 1
    keep = (index >= 0) & (index < n_bins)
    sums = np.bincount(index[keep], spectrum.ravel()[keep], minlength=n_bins)
    counts = np.bincount(index[keep], minlength=n_bins)
    return (edges[:-1] + edges[1:]) / 2, sums / np.maximum(counts, 1)


def estimate_noise(image: np.ndarray) -> float:
    """Immerkaer's fast noise estimate (grey, encoded ``[0, 1]`` units).

    ``sigma = sqrt(pi / 2) / (6 (W - 2) (H - 2)) * sum |I * N|`` with ``N`` the
    difference of two Laplacians; flat regions give ``0``.

    Examples:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> noisy = np.clip(0.5 + 0.02 * rng.standard_normal((128, 128, 3)), 0, 1)
        >>> round(estimate_noise(noisy.astype(np.float32)), 2)
        0.02

    """
    gray = _gray(image).astype(np.float64)
    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float64)
    response = cv2.filter2D(gray, -1, kernel)[1:-1, 1:-1]
    height, width = gray.shape
    return float(math.sqrt(math.pi / 2) * np.abs(response).sum() / (6 * (width - 2) * (height - 2)))


def estimate_jpeg_quality(path: str | Path) -> int | None:
    """IJG quality (1-100) whose luminance table best matches a JPEG file's, else ``None``.

    Examples:
        >>> import tempfile
        >>> import numpy as np
        >>> from tia_scanner_robust._io import atomic_write_image
        >>> path = Path(tempfile.mkdtemp()) / "x.jpg"
        >>> _ = atomic_write_image(path, np.full((16, 16, 3), 128, np.uint8), quality=80)
        >>> estimate_jpeg_quality(path)
        80

    """
    from PIL import Image  # noqa: PLC0415 - only JPEG files need it

    with Image.open(path) as image:
        tables = getattr(image, "quantization", None)
        if image.format != "JPEG" or not tables:
            return None
        luma = np.asarray(tables[min(tables)], dtype=np.float64)
    base = np.array(_IJG_LUMA, dtype=np.float64)
    best, best_error = None, math.inf
    for quality in range(1, 101):
        scale = 5000 / quality if quality < 50 else 200 - 2 * quality
        table = np.clip(np.floor((base * scale + 50) / 100), 1, 255)
        error = float(np.abs(np.sort(table) - np.sort(luma)).sum())
        if error < best_error:
            best, best_error = quality, error
    return best


_IJG_LUMA = (
    *(16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55),
    *(14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62),
    *(18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92),
    *(49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99),
)


# --------------------------------------------------------------------------- #
# Colour and tone
# --------------------------------------------------------------------------- #
_N_COLOUR = 15  # 9 matrix + 3 log-gamma + black + white + saturation
_THETA0 = np.array([1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 1, 1], dtype=np.float64)
_LOWER = np.array([-1.0] * 9 + [-1.5] * 3 + [0.0, 0.55, 0.0])
_UPPER = np.array([2.0] * 9 + [1.5] * 3 + [0.45, 1.0, 2.5])


def _decode64(values: np.ndarray) -> np.ndarray:
    values = np.clip(values, 0.0, 1.0)
    return np.where(values <= 0.04045, values / 12.92, ((values + 0.055) / 1.055) ** 2.4)


def _encode64(values: np.ndarray) -> np.ndarray:
    values = np.clip(values, 0.0, 1.0)
    return np.where(
        values <= 0.0031308,
        values * 12.92,
        1.055 * np.maximum(values, 0.0031308) ** (1 / 2.4) - 0.055,
    )


def _colour_map(encoded: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """The simulator's colour stages (5-6) on ``(N, 3)`` encoded values in ``[0, 1]``.

    float64 throughout, so that finite-difference derivatives are accurate.
    """
    matrix = theta[:9].reshape(3, 3)
    gamma = np.exp(theta[9:12])
    black, white, saturation = theta[12:15]
    linear = np.clip(_decode64(np.asarray(encoded, np.float64)) @ matrix.T, 0.0, 1.0)
    values = np.power(_encode64(linear), gamma)
    values = black + (white - black) * values
    luma = (values @ _LUMA.astype(np.float64))[..., None]
    return np.clip(luma + saturation * (values - luma), 0.0, 1.0)


def _theta_to_profile_fields(theta: np.ndarray) -> dict[str, Any]:
    matrix = theta[:9].reshape(3, 3)
    gains = matrix.sum(axis=1)
    if np.all(gains > 0.05):
        matrix = matrix / gains[:, None]
    else:  # a row that does not keep greys: store the raw matrix
        gains = np.ones(3)
    return {
        "color_matrix": tuple(tuple(round(float(v), 5) for v in row) for row in matrix),
        "white_balance": tuple(round(float(v), 5) for v in gains),
        "gamma": tuple(round(float(v), 5) for v in np.exp(theta[9:12])),
        "levels": (round(float(theta[12]), 5), round(float(theta[13]), 5)),
        "saturation": round(float(theta[14]), 5),
    }


def _colour_samples(
    pairs: list[tuple[np.ndarray, np.ndarray]],
    shifts: list[tuple[float, float]],
    max_samples: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Low-passed corresponding pixels (after undoing each pair's shift)."""
    refs, tgts = [], []
    per_pair = max(256, max_samples // len(pairs))
    for (reference, target), (dx, dy) in zip(pairs, shifts, strict=True):
        a = cv2.GaussianBlur(reference.astype(np.float32) / 255.0, (0, 0), _LOWPASS_SIGMA)
        b = _shift(target.astype(np.float32) / 255.0, -dx, -dy)
        b = cv2.GaussianBlur(b, (0, 0), _LOWPASS_SIGMA)
        margin = math.ceil(max(abs(dx), abs(dy)) + 3 * _LOWPASS_SIGMA)
        a = a[margin:-margin, margin:-margin].reshape(-1, 3)
        b = b[margin:-margin, margin:-margin].reshape(-1, 3)
        take = rng.choice(len(a), size=min(per_pair, len(a)), replace=False)
        refs.append(a[take])
        tgts.append(b[take])
    return np.concatenate(refs), np.concatenate(tgts)


def _fit_colour(
    ref: np.ndarray, tgt: np.ndarray, quantile_weight: float, regularisation: float
) -> tuple[np.ndarray, dict[str, float]]:
    from scipy.optimize import least_squares  # noqa: PLC0415 - scipy is heavy

    target_quantiles = np.quantile(tgt, _QUANTILES, axis=0)
    n_pix = math.sqrt(ref.size)
    n_q = math.sqrt(target_quantiles.size)

    def residuals(theta: np.ndarray) -> np.ndarray:
        mapped = _colour_map(ref, theta)
        pixel = (mapped - tgt).ravel() / n_pix
        quant = (np.quantile(mapped, _QUANTILES, axis=0) - target_quantiles).ravel() / n_q
        return np.concatenate([pixel, quantile_weight * quant, regularisation * (theta - _THETA0)])

    result = least_squares(
        residuals,
        _THETA0.copy(),
        bounds=(_LOWER, _UPPER),
        loss="soft_l1",
        f_scale=0.01,
        x_scale=0.1,
        max_nfev=400,
    )
    mapped = _colour_map(ref, result.x)
    return result.x, {
        "mean_abs_error_local_means": float(np.abs(mapped - tgt).mean() * 255.0),
        "mean_abs_error_identity": float(np.abs(ref - tgt).mean() * 255.0),
        "quantile_error": float(
            np.abs(np.quantile(mapped, _QUANTILES, axis=0) - target_quantiles).mean() * 255.0
        ),
        "evaluations": int(result.nfev),
    }


# --------------------------------------------------------------------------- #
# Sharpness and noise
# --------------------------------------------------------------------------- #
def _log_response(freq: np.ndarray, s: float) -> np.ndarray:
    """``log |H_s(f)|^2``: Gaussian blur ``sigma = s`` (s >= 0) or unsharp amount ``-s``."""
    if s >= 0:
        return -4.0 * math.pi**2 * s**2 * freq**2
    return 2.0 * np.log1p(-s * (1.0 - np.exp(-2.0 * math.pi**2 * freq**2)))


def _fit_sharpness(
    mapped_refs: list[np.ndarray], targets: list[np.ndarray]
) -> tuple[float, float, dict[str, Any]]:
    """Fit the blur sigma (>= 0) or sharpening amount from the spectral ratio."""
    from scipy.optimize import least_squares  # noqa: PLC0415 - scipy is heavy

    log_ratio, ref_power = [], []
    for mapped, target in zip(mapped_refs, targets, strict=True):
        freq, p_ref = radial_power_spectrum(_gray(mapped))
        _, p_tgt = radial_power_spectrum(_gray(target))
        log_ratio.append(np.log(np.maximum(p_tgt, 1e-20) / np.maximum(p_ref, 1e-20)))
        ref_power.append(p_ref)
    ratio = np.mean(log_ratio, axis=0)
    p_ref = np.exp(np.mean(np.log(np.maximum(ref_power, 1e-20)), axis=0))
    band = (freq >= _BAND[0]) & (freq <= _BAND[1])

    def residuals(x: np.ndarray) -> np.ndarray:
        c, s, log_n = x
        model = np.exp(c + _log_response(freq[band], s)) + np.exp(log_n) / p_ref[band]
        return np.log(model) - ratio[band]

    starts = [(0.0, s0, math.log(1e-9)) for s0 in (-0.5, 0.0, 0.7, 1.5)]
    fits = [
        least_squares(residuals, x0, bounds=([-2.0, -3.0, -40.0], [2.0, 4.0, 0.0])) for x0 in starts
    ]
    best = min(fits, key=lambda r: r.cost)
    c, s, _ = best.x
    blur_sigma, sharpen_amount = (float(s), 0.0) if s >= 0 else (0.0, float(-s))
    return (
        blur_sigma,
        sharpen_amount,
        {
            "frequencies": np.round(freq, 4).tolist(),
            "log_power_ratio": np.round(ratio, 4).tolist(),
            "band_cycles_per_px": list(_BAND),
            "gain": round(math.exp(c), 4),
            "rms_log_error": round(float(np.sqrt(np.mean(best.fun**2))), 4),
        },
    )


def _fit_noise(
    references: list[np.ndarray], targets: list[np.ndarray], profile: ScannerProfile
) -> tuple[float, dict[str, float]]:
    """Read noise (linear units) whose simulated noise estimate matches the targets'."""
    crops = [(r[:256, :256], t[:256, :256]) for r, t in zip(references, targets, strict=True)][:4]
    real = float(np.mean([estimate_noise(t) for _, t in crops]))

    def simulated(read: float) -> float:
        noisy = ScannerProfile(**{**profile.to_dict(), "noise_read": read, "jpeg_quality": None})
        return float(np.mean([estimate_noise(simulate_scanner(r, noisy)) for r, _ in crops]))

    clean = simulated(0.0)
    if real <= clean * 1.03:
        return 0.0, {"target_noise": real, "simulated_noise_without_noise": clean}
    low, high = 1e-4, 0.1
    for _ in range(12):  # bisection on a log scale
        middle = math.sqrt(low * high)
        if simulated(middle) < real:
            low = middle
        else:
            high = middle
    read = math.sqrt(low * high)
    return read, {"target_noise": real, "simulated_noise_without_noise": clean}


# --------------------------------------------------------------------------- #
# The fit
# --------------------------------------------------------------------------- #
def _check_pairs(pairs: Sequence[ImagePair]) -> list[tuple[np.ndarray, np.ndarray]]:
    if isinstance(pairs, (str, Path, np.ndarray)) or not len(pairs):
        msg = "fit_scanner_profile needs a non-empty sequence of (reference, target) image pairs."
        raise ValueError(msg)
    loaded = []
    for k, pair in enumerate(pairs):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            msg = f"pair {k}: expected (reference, target), got {type(pair).__name__}."
            raise ValueError(msg)
        reference = _load(pair[0], f"pair {k} reference")
        target = _load(pair[1], f"pair {k} target")
        if reference.shape != target.shape:
            msg = (
                f"pair {k}: reference {reference.shape[:2]} and target {target.shape[:2]} differ "
                "in size; the pairs must be registered regions of the same tissue (e.g. from "
                "'build-paired wsis')."
            )
            raise ValueError(msg)
        if min(reference.shape[:2]) < MIN_PAIR_SIDE:
            msg = (
                f"pair {k}: {reference.shape[1]}x{reference.shape[0]} px is too small; "
                f"each image needs at least {MIN_PAIR_SIDE} px per side."
            )
            raise ValueError(msg)
        loaded.append((reference, target))
    total = sum(r.shape[0] * r.shape[1] for r, _ in loaded)
    if total < MIN_TOTAL_PIXELS:
        msg = (
            f"too little data: {len(loaded)} pair(s) with {total} pixels in all; a fit needs "
            f"at least {MIN_TOTAL_PIXELS} pixels (e.g. two 128x128 pairs)."
        )
        raise ValueError(msg)
    return loaded


def fit_scanner_profile(
    pairs: Sequence[ImagePair],
    *,
    name: str = "fitted",
    description: str | None = None,
    jpeg_quality: int | None = None,
    fit_sharpness: bool = True,
    fit_noise: bool = True,
    min_correlation: float = 0.5,
    max_samples: int = 6000,
    quantile_weight: float = 1.0,
    regularisation: float = 1e-3,
    seed: int = 0,
) -> ScannerProfileFit:
    """Fit the profile mapping the pairs' reference images to their targets.

    See the module docstring for the method.

    Args:
        pairs: ``(reference, target)`` pairs of the same tissue region: RGB
            arrays (uint8, or float32 in ``[0, 1]``) or image files; the two
            images of a pair have the same size (at least ``MIN_PAIR_SIDE``
            px per side) and are registered to within a few pixels.
        name: Name of the fitted profile.
        description: Its one-line description (default: says it was fitted).
        jpeg_quality: JPEG quality of the profile (``None``: no JPEG stage).
        fit_sharpness: Fit the blur / sharpening (else none).
        fit_noise: Fit the read noise (else none).
        min_correlation: Refuse a pair whose grey images correlate less after
            alignment (not the same tissue, or not registered).
        max_samples: Pixels (over every pair) used by the colour fit.
        quantile_weight: Weight of the quantile (histogram) term against the
            local-mean term in the colour fit.
        regularisation: Pull of the colour parameters towards neutral.
        seed: Seed of the pixel subsampling.

    Returns:
        The :class:`ScannerProfileFit`.

    Raises:
        ValueError: On unpaired, mismatched or too-small data (the message
            names the pair).

    """
    loaded = _check_pairs(pairs)
    alignment = [pair_alignment(r, t) for r, t in loaded]
    bad = [(k, c) for k, (_, _, c) in enumerate(alignment) if not c >= min_correlation]
    if bad:
        listing = ", ".join(f"pair {k} ({c:.2f})" for k, c in bad[:5])
        msg = (
            f"{len(bad)} of {len(loaded)} pair(s) do not show the same tissue: grey-level "
            f"correlation after alignment below {min_correlation}: {listing}. The fit needs "
            "registered pairs of the same region (e.g. from 'build-paired wsis')."
        )
        raise ValueError(msg)
    shifts = [(dx, dy) for dx, dy, _ in alignment]
    rng = np.random.default_rng(seed)
    ref_samples, tgt_samples = _colour_samples(loaded, shifts, max_samples, rng)
    theta, colour_info = _fit_colour(ref_samples, tgt_samples, quantile_weight, regularisation)
    fields = _theta_to_profile_fields(theta)

    diagnostics: dict[str, Any] = {
        "n_pairs": len(loaded),
        "n_pixels": int(sum(r.shape[0] * r.shape[1] for r, _ in loaded)),
        "pair_shift_px": [[round(dx, 3), round(dy, 3)] for dx, dy in shifts],
        "pair_correlation": [round(c, 4) for _, _, c in alignment],
        "colour": colour_info,
    }
    blur_sigma = sharpen_amount = 0.0
    if fit_sharpness:
        mapped = [
            _colour_map(r.reshape(-1, 3) / 255.0, theta).reshape(r.shape).astype(np.float32)
            for r, _ in loaded
        ]
        blur_sigma, sharpen_amount, diagnostics["sharpness"] = _fit_sharpness(
            mapped, [t for _, t in loaded]
        )
    profile = ScannerProfile(
        name=name,
        description=description or f"Fitted from {len(loaded)} registered pair(s).",
        blur_sigma=round(blur_sigma, 4),
        sharpen_amount=round(sharpen_amount, 4),
        **fields,
    )
    if fit_noise:
        read, diagnostics["noise"] = _fit_noise(
            [r for r, _ in loaded], [t for _, t in loaded], profile
        )
        profile = ScannerProfile(**{**profile.to_dict(), "noise_read": round(read, 6)})
    if jpeg_quality is not None:
        profile = ScannerProfile(**{**profile.to_dict(), "jpeg_quality": int(jpeg_quality)})
    return ScannerProfileFit(profile, diagnostics)
