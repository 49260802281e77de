"""Fourier Domain Adaptation (FDA) as an albumentations 2.x transform.

FDA (Yang and Soatto, CVPR 2020) transfers the *style* of a reference image
to a source image by swapping the low-frequency part of the amplitude
spectrum and keeping the source phase (which carries the content):

.. code-block:: text

    F_s = DFT(x_s),  F_t = DFT(x_t)                       (per channel)
    A = |F_s| outside the window, |F_t| inside;  phi = angle(F_s)
    x_out = clip( IDFT(A * exp(i * phi)) )

The window is the centred low-frequency square of half-width
``b = floor(min(H, W) * beta)``: the frequencies ``(ky, kx)`` with
``|ky| <= b`` and ``|kx| <= b`` (``2b + 1`` per side, as in the NumPy
version of the authors' code, ``low_freq_mutate_np``), and ``beta = 0``
leaves the image unchanged.
``window="albumentations"`` reproduces ``A.FDA`` 2.0.8 exactly instead (its
window is off-centre by one or two bins, see :func:`fda_window`).

Only the window coefficients change, so the implementation computes them
(a real FFT along the width, then a short FFT along the height for the few
kept columns), and adds the inverse transform of the change to the source:
``x_out = x_s + IDFT(w * (|F_t| - |F_s|) * exp(i * phi))``. Everything runs in
float32 with :mod:`scipy.fft` on all channels at once; the reference
amplitudes of a bank are cached. The FFTs use :mod:`scipy.fft`'s default
number of threads (one, which suits data-loader worker processes); use
``with scipy.fft.set_workers(n):`` around the call for more.

Examples:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> source = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    >>> reference = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    >>> out = fda_swap(source, reference, beta=0.05)
    >>> out.shape, out.dtype
    ((64, 64, 3), dtype('uint8'))
    >>> bool((fda_swap(source, reference, beta=0.0) == source).all())
    True

"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np
import scipy.fft
from albumentations.core.transforms_interface import BaseTransformInitSchema, ImageOnlyTransform
from pydantic import field_validator

from tia_scanner_robust._validation import check_in_choices, check_range, check_rgb_image

__all__ = [
    "FDA_WINDOWS",
    "FDAWindow",
    "FourierDomainAdaptation",
    "fda_swap",
    "fda_window",
    "low_frequency_coefficients",
]

FDAWindow = Literal["centered", "albumentations"]
FDA_WINDOWS: tuple[str, ...] = ("centered", "albumentations")
MAX_BETA = 0.5


# --------------------------------------------------------------------------- #
# Pure functions
# --------------------------------------------------------------------------- #
def _axis_mask(n: int, half_width: int, window: str) -> np.ndarray:
    """Boolean mask over the unshifted DFT indices ``0..n-1`` of one axis."""
    mask = np.zeros(n, dtype=bool)
    if window == "centered":
        # signed frequencies -b..b, folded modulo n (b <= n / 2, so this is
        # the whole axis at most; frequency n/2 == -n/2 counts once)
        mask[np.arange(-half_width, half_width + 1) % n] = True
    else:
        # A.FDA 2.0.8 (low_freq_mutate in albumentations' domain_adaptation_functional)
        # slices the fftshift-ed axis from int(c - b) up to int(c + b), c = n / 2 - 0.5
        centre = n / 2 - 0.5
        lo, hi = max(0, int(centre - half_width)), min(int(centre + half_width), n)
        shifted = np.arange(lo, hi)
        mask[np.fft.fftshift(np.arange(n))[shifted]] = True  # unshifted index at each position
    return mask


def fda_window(
    shape: tuple[int, ...],
    beta: float,
    *,
    window: FDAWindow = "centered",
) -> tuple[np.ndarray, int, np.ndarray]:
    """The swapped frequencies of an ``(H, W)`` image, on the half plane ``kx >= 0``.

    With ``b = floor(min(H, W) * beta)``:

    - ``"centered"`` (default; ``low_freq_mutate_np`` of Yang and Soatto's
      code, and the project's METHODS.md): ``|ky| <= b`` and ``|kx| <= b`` in signed
      frequencies, a ``(2b + 1)``-wide square centred on the zero frequency.
    - ``"albumentations"``: ``A.FDA`` 2.0.8's window. It slices the
      ``fftshift``-ed spectrum with ``[int(c - b), int(c + b))``,
      ``c = n / 2 - 0.5`` per axis: ``2b`` bins, signed ``-b-1 .. b-2`` for even
      ``n`` and ``-b .. b-1`` for odd ``n`` (the zero frequency is outside the
      window when ``b = 1`` and ``n`` is even). That window is not symmetric,
      so the modified spectrum is not Hermitian and ``A.FDA`` keeps the real
      part of the inverse FFT: that equals weighting each frequency ``k`` by
      ``(M(k) + M(-k)) / 2`` with ``M`` the window, which is what the weights
      returned here hold (values 0, 0.5 or 1).

    ``beta = 0`` gives an empty window in both conventions.

    Args:
        shape: Image shape; only ``(H, W)`` is used.
        beta: Window size relative to ``min(H, W)``, in ``[0, 0.5]``.
        window: ``"centered"`` or ``"albumentations"``.

    Returns:
        ``(rows, n_cols, weights)``: the unshifted row indices (into the
        length-``H`` FFT) that the window touches, the number of leading
        columns of the length-``W`` real FFT it touches (``kx = 0 .. n_cols-1``),
        and the ``(len(rows), n_cols)`` float32 weights. ``n_cols`` is 0 for an
        empty window.

    Raises:
        ValueError: If ``beta`` is outside ``[0, 0.5]`` or ``window`` is unknown.

    Examples:
        >>> rows, n_cols, weights = fda_window((8, 8), 0.25)
        >>> rows.tolist(), n_cols
        ([0, 1, 2, 6, 7], 3)
        >>> float(weights.sum())  # 5 x 3 half-plane bins of the 5 x 5 square
        15.0
        >>> fda_window((8, 8), 0.0)[1]
        0

    """
    check_in_choices(window, FDA_WINDOWS, "window")
    beta = float(beta)
    if not 0.0 <= beta <= MAX_BETA:
        msg = f"beta must be in [0, {MAX_BETA}], got {beta}."
        raise ValueError(msg)
    height, width = int(shape[0]), int(shape[1])
    half_width = math.floor(min(height, width) * beta)
    if beta == 0.0 or (window == "albumentations" and half_width == 0):
        return np.zeros(0, dtype=np.intp), 0, np.zeros((0, 0), dtype=np.float32)

    row_mask = _axis_mask(height, half_width, window)
    col_mask = _axis_mask(width, half_width, window)
    neg_rows = (-np.arange(height)) % height
    neg_cols = (-np.arange(width)) % width
    # weight on the full plane: (M(k) + M(-k)) / 2 with M = row_mask x col_mask
    half_cols = np.arange(width // 2 + 1)
    rows = np.flatnonzero(row_mask | row_mask[neg_rows])
    col_any = col_mask[half_cols] | col_mask[neg_cols[half_cols]]
    n_cols = int(np.flatnonzero(col_any).max()) + 1
    cols = half_cols[:n_cols]
    direct = np.outer(row_mask[rows], col_mask[cols])
    mirrored = np.outer(row_mask[neg_rows[rows]], col_mask[neg_cols[cols]])
    weights = (direct.astype(np.float32) + mirrored.astype(np.float32)) * np.float32(0.5)
    return rows, n_cols, weights


def low_frequency_coefficients(image: np.ndarray, rows: np.ndarray, n_cols: int) -> np.ndarray:
    """DFT coefficients of a float image at the given rows and leading columns.

    Computes ``DFT2(image)[rows, :n_cols]`` per channel (unnormalised, NumPy's
    sign convention) with a real FFT along the width, keeping ``n_cols``
    columns, then an FFT along the height of those columns only.

    Args:
        image: ``(H, W, C)`` float array.
        rows: Unshifted row indices (from :func:`fda_window`).
        n_cols: Number of leading columns ``kx = 0 .. n_cols - 1``.

    Returns:
        ``(len(rows), n_cols, C)`` complex array (complex64 for float32 input).

    Examples:
        >>> import numpy as np
        >>> x = np.random.default_rng(0).random((6, 8, 3)).astype(np.float32)
        >>> coef = low_frequency_coefficients(x, np.array([0, 1, 5]), 2)
        >>> full = np.fft.fft2(x.astype(np.float64), axes=(0, 1))
        >>> bool(np.allclose(coef, full[[0, 1, 5], :2], atol=1e-4))
        True

    """
    along_width = scipy.fft.rfft(image, axis=1)[:, :n_cols]
    return scipy.fft.fft(along_width, axis=0)[rows]


def _as_float(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) if image.dtype == np.uint8 else image


def _match_size(reference: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize ``reference`` to ``(height, width)`` (area when shrinking, bilinear otherwise)."""
    if reference.shape[:2] == (height, width):
        return reference
    shrinking = reference.shape[0] >= height and reference.shape[1] >= width
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(reference, (width, height), interpolation=interpolation)


def _max_value(dtype: np.dtype) -> float:
    return 255.0 if dtype == np.uint8 else 1.0


def _swap_with_amplitude(
    image: np.ndarray,
    reference_amplitude: np.ndarray,
    rows: np.ndarray,
    n_cols: int,
    weights: np.ndarray,
    *,
    clip: bool,
) -> np.ndarray:
    """The FDA core once the reference amplitude on the window is known."""
    source = _as_float(image)
    height, width = source.shape[:2]
    coefficients = low_frequency_coefficients(source, rows, n_cols)
    amplitude = np.abs(coefficients)
    nonzero = amplitude > 0
    # delta = w * (|F_t| - |F_s|) * exp(i * angle(F_s)); angle(0) = 0 as in np.angle
    ratio = np.divide(reference_amplitude, amplitude, out=np.zeros_like(amplitude), where=nonzero)
    delta = np.where(
        nonzero, coefficients * (ratio - 1), reference_amplitude.astype(coefficients.dtype)
    )
    delta *= weights[:, :, None]
    # inverse: short IFFT along the height for the kept columns, then a real
    # IFFT along the width (zero-padding explicitly is faster than irfft's own)
    spectrum = np.zeros((height, n_cols, source.shape[2]), dtype=delta.dtype)
    spectrum[rows] = delta
    half = np.zeros((height, width // 2 + 1, source.shape[2]), dtype=delta.dtype)
    half[:, :n_cols] = scipy.fft.ifft(spectrum, axis=0)
    change = scipy.fft.irfft(half, n=width, axis=1)
    if not clip:
        return np.add(source, change, out=change)
    if image.dtype == np.uint8:
        # add, round half to even and saturate to [0, 255] in one OpenCV pass
        return cv2.add(source, change, dtype=cv2.CV_8U)
    return np.clip(np.add(source, change, out=change), 0.0, 1.0, out=change)


def _prepare_reference(
    reference: np.ndarray,
    height: int,
    width: int,
    dtype: np.dtype,
    name: str,
) -> np.ndarray:
    """Validate and resize ``reference``; return it as float in ``dtype``'s value scale."""
    reference = check_rgb_image(reference, name)
    reference = _match_size(reference, height, width)
    scale = _max_value(dtype) / _max_value(reference.dtype)
    reference = _as_float(reference)
    return reference * np.float32(scale) if scale != 1.0 else reference


def fda_swap(
    image: np.ndarray,
    reference: np.ndarray,
    beta: float,
    *,
    window: FDAWindow = "centered",
    clip: bool = True,
) -> np.ndarray:
    """Swap the low-frequency amplitude of ``image`` with that of ``reference``.

    ``out = IDFT(A * exp(i * angle(DFT(image))))`` per channel, where ``A`` is
    ``|DFT(reference)|`` inside the window of :func:`fda_window` and
    ``|DFT(image)|`` outside; the result is rounded (uint8) and clipped to the
    dtype's range.

    Args:
        image: Source ``(H, W, 3)`` RGB image, uint8 or float32 in ``[0, 1]``.
        reference: Style reference, RGB uint8 or float32. Resized to the
            source size when it differs (``cv2.INTER_AREA`` when shrinking,
            bilinear otherwise; ``A.FDA`` always uses bilinear) and brought to
            the source's value scale (a uint8 reference for a float32 source
            is divided by 255 and vice versa).
        beta: Window half-width relative to ``min(H, W)``, in ``[0, 0.5]``;
            ``b = floor(min(H, W) * beta)``. ``0`` returns a copy of ``image``.
        window: ``"centered"`` (default, the paper's centred square
            ``|k| <= b``) or ``"albumentations"`` (``A.FDA`` 2.0.8's window,
            to reproduce its output).
        clip: If False, return the float32 result before rounding and
            clipping (same value scale as ``image``).

    Returns:
        The adapted image, same shape and dtype as ``image`` (float32 when
        ``clip=False``).

    Raises:
        TypeError: If an image is not a NumPy array or has an unsupported dtype.
        ValueError: If an image is not ``(H, W, 3)``, is empty or holds
            NaN/inf, if ``beta`` is outside ``[0, 0.5]`` or ``window`` is unknown.

    Examples:
        >>> import numpy as np
        >>> from tiatoolbox.data import stain_norm_target
        >>> image = stain_norm_target()[:256, :256]
        >>> reference = stain_norm_target()[-256:, -256:]
        >>> out = fda_swap(image, reference, beta=0.02)
        >>> out.shape, out.dtype
        ((256, 256, 3), dtype('uint8'))
        >>> bool((fda_swap(image, image, beta=0.02) == image).all())
        True

    """
    image = check_rgb_image(image, "image")
    rows, n_cols, weights = fda_window(image.shape, beta, window=window)
    if n_cols == 0:
        return image.copy() if clip else _as_float(image).astype(np.float32, copy=True)
    reference = _prepare_reference(reference, *image.shape[:2], image.dtype, "reference")
    reference_amplitude = np.abs(low_frequency_coefficients(reference, rows, n_cols))
    return _swap_with_amplitude(image, reference_amplitude, rows, n_cols, weights, clip=clip)


# --------------------------------------------------------------------------- #
# Transform
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class _CachedAmplitude:
    """Low-frequency amplitude of one bank reference at one image size."""

    bound: int  # largest |ky| and kx held
    position: np.ndarray  # (H,) row index -> row of ``amplitude`` (-1: not held)
    amplitude: np.ndarray  # (rows held, bound + 1, 3) float32
    max_value: float  # 255 for a uint8 reference, 1 for float32


class FourierDomainAdaptation(ImageOnlyTransform):
    """Fourier Domain Adaptation (Yang and Soatto, 2020) with a paired scan or a style bank.

    Per call, samples ``beta ~ U(beta_range)`` and one reference image, then
    applies :func:`fda_swap`. References come from the call's metadata
    (``transform(image=x, fda_reference=[r1, r2])``: e.g. a paired scan of
    the same tissue, or other training images as in SimCons) or, when the call
    carries none, from the bank given at construction
    (``reference_images=[...]``). A reference of a different size is resized
    to the image's size.

    Much faster than ``A.FDA`` (float32 real FFTs, only the window's
    coefficients, cached bank amplitudes). With ``window="albumentations"``
    its output matches ``A.FDA`` 2.0.8 (within one grey level, from rounding
    instead of truncation); the default ``"centered"`` window follows the
    NumPy version of the authors' code (see :func:`fda_window`).

    Serialisation: ``A.to_dict``/``A.from_dict`` work in metadata mode
    (``reference_images=None``); a bank of arrays is not serialisable and
    ``to_dict`` raises ``NotImplementedError``.

    Args:
        reference_images: Optional bank of RGB reference images (uint8 or
            float32), used when the call carries no metadata references.
            Their low-frequency amplitudes are computed once per reference
            and image size, on first use.
        beta_range: Range of ``beta`` (window half-width relative to
            ``min(H, W)``), within ``[0, 0.5]``. Default ``(0.01, 0.05)``.
        metadata_key: Name of the call argument that carries references (a
            sequence of arrays, or one array). Default ``"fda_reference"``.
        window: ``"centered"`` (default) or ``"albumentations"``.
        p: Probability of applying the transform.

    Targets:
        image

    Image types:
        uint8, float32

    Examples:
        >>> import albumentations as A
        >>> from tiatoolbox.data import stain_norm_target
        >>> he = stain_norm_target()
        >>> image, other = he[:256, :256], he[-256:, -256:]
        >>> aug = A.Compose([FourierDomainAdaptation(p=1.0)], seed=0)
        >>> out = aug(image=image, fda_reference=[other])["image"]
        >>> out.shape, out.dtype
        ((256, 256, 3), dtype('uint8'))
        >>> bank = A.Compose([FourierDomainAdaptation(reference_images=[other], p=1.0)], seed=0)
        >>> bank(image=image)["image"].shape
        (256, 256, 3)

    """

    class InitSchema(BaseTransformInitSchema):
        """Arguments of :class:`FourierDomainAdaptation` (validated by pydantic)."""

        reference_images: Sequence[Any] | None
        beta_range: tuple[float, float]
        metadata_key: str
        window: FDAWindow

        @field_validator("beta_range")
        @classmethod
        def _check_beta_range(cls, value: tuple[float, float]) -> tuple[float, float]:
            return check_range(value, "beta_range", low=0.0, high=MAX_BETA)

        @field_validator("metadata_key")
        @classmethod
        def _check_metadata_key(cls, value: str) -> str:
            if not value:
                msg = "metadata_key must be a non-empty string."
                raise ValueError(msg)
            return value

    def __init__(
        self,
        reference_images: Sequence[np.ndarray] | None = None,
        beta_range: tuple[float, float] = (0.01, 0.05),
        metadata_key: str = "fda_reference",
        window: FDAWindow = "centered",
        p: float = 0.5,
    ) -> None:
        super().__init__(p=p)
        if reference_images is not None:
            if isinstance(reference_images, np.ndarray) or len(reference_images) == 0:
                msg = "reference_images must be a non-empty sequence of RGB arrays (or None)."
                raise ValueError(msg)
            reference_images = list(reference_images)
            for index, reference in enumerate(reference_images):
                check_rgb_image(reference, f"reference_images[{index}]")
        self.reference_images = reference_images
        self.beta_range = beta_range
        self.metadata_key = metadata_key
        self.window = window
        # (reference index, H, W) -> low-frequency amplitude of that reference at that size
        self._amplitude_cache: dict[tuple[int, int, int], _CachedAmplitude] = {}
        # the metadata key is an accepted input of a strict A.Compose
        self._available_keys.add(metadata_key)

    def to_dict_private(self) -> dict[str, Any]:
        """Serialise the arguments; a bank of reference arrays cannot be serialised.

        Raises:
            NotImplementedError: If ``reference_images`` is set.

        """
        if self.reference_images is not None:
            msg = (
                f"{self.__class__.__name__} with a reference_images bank cannot be serialised "
                "(arrays are not JSON). Pass references per call via metadata_key "
                f"({self.metadata_key!r}) to serialise the transform, and rebuild the bank in code."
            )
            raise NotImplementedError(msg)
        return super().to_dict_private()

    def _metadata_references(self, data: dict[str, Any]) -> list[np.ndarray] | None:
        value = data.get(self.metadata_key)
        if value is None:
            return None
        references = [value] if isinstance(value, np.ndarray) else value
        if not isinstance(references, Sequence) or isinstance(references, str) or not references:
            msg = (
                f"{self.metadata_key!r} must be an RGB array or a non-empty sequence of "
                "RGB arrays, "
                f"got {type(value).__name__}."
            )
            raise ValueError(msg)
        return list(references)

    def get_params_dependent_on_data(
        self,
        params: dict[str, Any],  # noqa: ARG002 - albumentations' signature
        data: dict[str, Any],
    ) -> dict[str, Any]:
        """Sample ``beta`` and choose a reference (metadata first, then the bank).

        Raises:
            ValueError: If neither the call nor the bank provides a reference.

        """
        references = self._metadata_references(data)
        if references is None and self.reference_images is None:
            msg = (
                f"{self.__class__.__name__} needs reference images: pass them in the call "
                f"(transform(image=..., {self.metadata_key}=[reference, ...])) or build it with "
                "reference_images=[...]."
            )
            raise ValueError(msg)
        beta = self.py_random.uniform(*self.beta_range)
        if references is not None:
            index = self.py_random.randrange(len(references))
            return {"beta": beta, "reference": references[index], "reference_index": None}
        index = self.py_random.randrange(len(self.reference_images))
        return {"beta": beta, "reference": None, "reference_index": index}

    def _bank_amplitude(
        self, index: int, image: np.ndarray, rows: np.ndarray, n_cols: int
    ) -> np.ndarray:
        """Low-frequency reference amplitude on ``rows x n_cols``, cached per reference and size.

        The cache keeps, per ``(reference, H, W)``, the amplitudes of every
        frequency with ``|ky|, kx <= bound`` where ``bound`` covers any window
        for ``beta <= beta_range[1]`` (both conventions), in the reference's
        own value scale.
        """
        height, width = image.shape[:2]
        signed_rows = np.minimum(rows, height - rows)
        needed = max(int(signed_rows.max()), int(n_cols) - 1)
        key = (index, height, width)
        cached = self._amplitude_cache.get(key)
        if cached is None or cached.bound < needed:
            bound = max(needed, math.floor(min(height, width) * self.beta_range[1]) + 1)
            all_rows = np.arange(height)
            cache_rows = np.flatnonzero(np.minimum(all_rows, height - all_rows) <= bound)
            cache_cols = min(bound + 1, width // 2 + 1)
            reference = self.reference_images[index]
            ref = _prepare_reference(
                reference, height, width, reference.dtype, f"reference_images[{index}]"
            )
            position = np.full(height, -1, dtype=np.intp)
            position[cache_rows] = np.arange(cache_rows.size)
            cached = _CachedAmplitude(
                bound=bound,
                position=position,
                amplitude=np.abs(low_frequency_coefficients(ref, cache_rows, cache_cols)),
                max_value=_max_value(reference.dtype),
            )
            self._amplitude_cache[key] = cached
        amplitude = cached.amplitude[cached.position[rows], :n_cols]
        scale = _max_value(image.dtype) / cached.max_value
        return amplitude * np.float32(scale) if scale != 1.0 else amplitude

    def apply(
        self,
        img: np.ndarray,
        beta: float,
        reference: np.ndarray | None,
        reference_index: int | None,
        **params: Any,  # noqa: ARG002 - albumentations' signature
    ) -> np.ndarray:
        """Apply :func:`fda_swap` with the sampled ``beta`` and reference."""
        img = check_rgb_image(img, "image")
        rows, n_cols, weights = fda_window(img.shape, beta, window=self.window)
        if n_cols == 0:
            return img.copy()
        if reference is not None:
            ref = _prepare_reference(reference, *img.shape[:2], img.dtype, self.metadata_key)
            amplitude = np.abs(low_frequency_coefficients(ref, rows, n_cols))
        else:
            amplitude = self._bank_amplitude(int(reference_index), img, rows, n_cols)
        return _swap_with_amplitude(img, amplitude, rows, n_cols, weights, clip=True)
