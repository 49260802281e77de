"""Fourier Domain Adaptation on a batch, in torch (``torch.fft``), with per-sample ``beta``.

The same algorithm and windows as :mod:`tia_scanner_robust.augmentations.fda`
(see :func:`~tia_scanner_robust.augmentations.fda.fda_window`): per image
and channel, the low-frequency amplitude inside the window of half-width
``b = floor(min(H, W) * beta)`` is replaced by the reference's, the phase is
kept, and ``x_out = x + IDFT(w * (|F_ref| - |F_x|) * exp(i * angle(F_x)))``
is rounded (uint8) and clipped. ``window="centered"`` is the authors'
``|ky|, |kx| <= b`` square; ``"albumentations"`` reproduces ``A.FDA`` 2.0.8.

Only the columns the window touches are transformed along the height (a real
FFT along the width, keeping ``n_cols`` columns, then an FFT along the
height), as in the NumPy version; everything is float32 on the batch's
device. References are another image of the same batch (a random
derangement, as SimCons does) or a bank tensor whose low-frequency
amplitudes are cached per image size and device.

Examples:
    >>> import torch
    >>> x = torch.randint(
    ...     0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    ... )
    >>> out = fda_swap_batch(x, x.flip(0), torch.tensor([0.05, 0.1]))
    >>> out.shape, out.dtype
    (torch.Size([2, 3, 32, 32]), torch.uint8)
    >>> fda_swap_batch(x, x, torch.tensor([0.05, 0.1])).equal(x)
    True

"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import cv2
import torch
import torch.nn.functional as F  # noqa: N812

from tia_scanner_robust._validation import check_in_choices, check_range
from tia_scanner_robust.augmentations.batched._backend import check_backend, map_images, use_opencv
from tia_scanner_robust.augmentations.batched._common import (
    check_batch,
    from_levels,
    rand,
    randint,
    to_levels,
)
from tia_scanner_robust.augmentations.fda import FDA_WINDOWS, MAX_BETA, fda_swap

if TYPE_CHECKING:
    import numpy as np

__all__ = ["BatchFDA", "fda_swap_batch", "fda_weights"]


def _half_widths(beta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``floor(min(H, W) * beta)`` in float64, as :func:`math.floor` does it."""
    return torch.floor(beta.double() * min(height, width)).long()


def _axis_albumentations(n: int, half: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``A.FDA``'s per-axis window at unshifted indices ``index``; ``half`` is ``(B,)``."""
    centre = n / 2 - 0.5
    lo = torch.trunc(centre - half.double()).clamp_min(0)[:, None]
    hi = torch.trunc(centre + half.double()).clamp_max(n)[:, None]
    position = ((index + n // 2) % n)[None, :].double()
    return (position >= lo) & (position < hi)


def fda_weights(
    height: int, width: int, beta: torch.Tensor, window: str = "centered"
) -> torch.Tensor:
    """Per-sample window weights on the half plane ``(B, H, W // 2 + 1)`` (values 0, 0.5, 1).

    Equal, row for row, to the weights of
    :func:`~tia_scanner_robust.augmentations.fda.fda_window` placed on the
    real-FFT half plane; ``beta = 0`` gives an all-zero window.

    Examples:
        >>> import torch
        >>> w = fda_weights(8, 8, torch.tensor([0.25, 0.0]))
        >>> w.shape, float(w[0].sum()), float(w[1].sum())
        (torch.Size([2, 8, 5]), 15.0, 0.0)

    """
    check_in_choices(window, FDA_WINDOWS, "window")
    device = beta.device
    half = _half_widths(beta, height, width).to(device)
    rows = torch.arange(height, device=device)
    cols = torch.arange(width // 2 + 1, device=device)
    active = (beta > 0)[:, None, None]
    if window == "centered":
        row_in = torch.minimum(rows, height - rows)[None, :] <= half[:, None]
        col_in = torch.minimum(cols, width - cols)[None, :] <= half[:, None]
        weights = (row_in[:, :, None] & col_in[:, None, :]).float()
        return weights * active
    row_mask = _axis_albumentations(height, half, rows)
    col_mask = _axis_albumentations(width, half, cols)
    neg_rows = _axis_albumentations(height, half, (-rows) % height)
    neg_cols = _axis_albumentations(width, half, (-cols) % width)
    direct = (row_mask[:, :, None] & col_mask[:, None, :]).float()
    mirrored = (neg_rows[:, :, None] & neg_cols[:, None, :]).float()
    return 0.5 * (direct + mirrored) * (active & (half > 0)[:, None, None])


def _low_frequencies(levels: torch.Tensor, n_cols: int) -> torch.Tensor:
    """``DFT2(levels)[..., :, :n_cols]``: real FFT along the width, FFT along the height."""
    return torch.fft.fft(torch.fft.rfft(levels, dim=-1)[..., :n_cols], dim=-2)


def _match_size(reference: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize float levels to ``(height, width)``: area when shrinking, else bilinear."""
    if reference.shape[-2:] == (height, width):
        return reference
    shrinking = reference.shape[-2] >= height and reference.shape[-1] >= width
    if shrinking:
        return F.interpolate(reference, size=(height, width), mode="area")
    return F.interpolate(reference, size=(height, width), mode="bilinear", align_corners=False)


def _swap(
    levels: torch.Tensor, reference_amplitude: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """``levels + IDFT(w * (A_ref - |F|) * exp(i angle F))`` with ``n_cols`` window columns."""
    _height, width = levels.shape[-2:]
    n_cols = weights.shape[-1]
    coefficients = _low_frequencies(levels, n_cols)
    amplitude = coefficients.abs()
    nonzero = amplitude > 0
    ratio = torch.where(nonzero, reference_amplitude / amplitude.clamp_min(1e-30), 0.0)
    delta = torch.where(nonzero, coefficients * (ratio - 1), reference_amplitude.to(coefficients))
    delta = delta * weights[:, None]
    half = torch.fft.ifft(delta, dim=-2)
    half = F.pad(half, (0, width // 2 + 1 - n_cols))
    return levels + torch.fft.irfft(half, n=width, dim=-1)


def _window_columns(weights: torch.Tensor) -> int:
    used = torch.nonzero(weights.sum(dim=(0, 1)) > 0)
    return int(used.max()) + 1 if used.numel() else 0


def fda_swap_batch(
    images: torch.Tensor,
    references: torch.Tensor,
    beta: torch.Tensor | float,
    *,
    window: str = "centered",
) -> torch.Tensor:
    """FDA of every image with its own reference and ``beta``.

    Args:
        images: ``(B, 3, H, W)`` uint8 or float in ``[0, 1]``.
        references: ``(B, 3, h, w)`` references (uint8 or float in ``[0, 1]``,
            any size: resized to ``(H, W)``, area when shrinking, bilinear
            otherwise, as the NumPy version does with OpenCV).
        beta: ``(B,)`` window sizes (or one number) in ``[0, 0.5]``.
        window: ``"centered"`` or ``"albumentations"``.

    Returns:
        The adapted batch, same dtype and device as ``images``.

    Raises:
        ValueError: On a bad batch, a reference count that is not ``B``, or
            ``beta`` outside ``[0, 0.5]``.

    """
    images = check_batch(images)
    references = check_batch(references, "references")
    batch, _, height, width = images.shape
    if references.shape[0] != batch:
        msg = f"references must hold {batch} images (one per image), got {references.shape[0]}."
        raise ValueError(msg)
    beta = torch.as_tensor(beta, dtype=torch.float64, device=images.device).expand(batch)
    if bool(((beta < 0) | (beta > MAX_BETA)).any()):
        msg = f"beta must be in [0, {MAX_BETA}], got {beta.tolist()}."
        raise ValueError(msg)
    weights = fda_weights(height, width, beta, window)
    n_cols = _window_columns(weights)
    if n_cols == 0:
        return images.clone()
    reference_levels = _match_size(to_levels(references.to(images.device)), height, width)
    amplitude = _low_frequencies(reference_levels, n_cols).abs()
    out = _swap(to_levels(images), amplitude, weights[..., :n_cols])
    return from_levels(out, images)


class BatchFDA:
    """FDA (Yang and Soatto, 2020) on a batch: references from the batch or from a bank.

    Per sample: ``beta ~ U(beta_range)`` and a reference, either another image
    of the same batch (``reference_images=None``; a random derangement, so
    an image never references itself when ``B > 1``) or an image of the bank.
    The bank's low-frequency amplitudes are computed once per image size and
    device and cached (a bank image of another size is resized first).

    Args:
        reference_images: ``None`` (references from the batch) or a bank
            ``(N, 3, h, w)`` tensor (uint8, or float in ``[0, 1]``).
        beta_range: Range of ``beta`` within ``[0, 0.5]``.
        window: ``"centered"`` (default) or ``"albumentations"``.
        backend: ``"auto"`` (OpenCV/SciPy per sample on a CPU batch, torch
            otherwise), ``"torch"`` or ``"opencv"``.

    Examples:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=g)
        >>> BatchFDA()(x, generator=g).shape
        torch.Size([4, 3, 32, 32])
        >>> bank = BatchFDA(reference_images=x[:2])
        >>> bank(x.float() / 255, generator=g).dtype
        torch.float32

    """

    def __init__(
        self,
        reference_images: torch.Tensor | None = None,
        beta_range: tuple[float, float] = (0.01, 0.05),
        window: str = "centered",
        backend: str = "auto",
    ) -> None:
        self.backend = check_backend(backend)
        self.beta_range = check_range(tuple(beta_range), "beta_range", low=0.0, high=MAX_BETA)
        self.window = check_in_choices(window, FDA_WINDOWS, "window")
        if reference_images is not None:
            reference_images = check_batch(reference_images, "reference_images")
        self.reference_images = reference_images
        # (H, W, device) -> (bound, amplitude (N, 3, H, bound))
        self._cache: dict[tuple[int, int, str], tuple[int, torch.Tensor]] = {}

    def __repr__(self) -> str:
        bank = None if self.reference_images is None else int(self.reference_images.shape[0])
        name = type(self).__name__
        return f"{name}(bank={bank}, beta_range={self.beta_range}, window={self.window!r})"

    def sample(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        *,
        pool_size: int | None = None,
        positions: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Draw ``beta`` ``(B,)`` and reference indices ``(B,)``.

        Indices point into the bank, or (no bank) into a pool of
        ``pool_size`` images (default: the batch itself) in which the samples
        sit at ``positions`` (default ``0..B-1``): each sample gets another
        image of the pool (itself only when the pool holds one image).
        """
        cpu = torch.device("cpu")
        low, high = self.beta_range
        beta = low + (high - low) * rand((batch_size,), generator, cpu).double()
        if self.reference_images is not None:
            index = randint(int(self.reference_images.shape[0]), (batch_size,), generator, cpu)
            return {"beta": beta, "reference_index": index}
        pool = batch_size if pool_size is None else int(pool_size)
        positions = torch.arange(batch_size) if positions is None else positions.cpu()
        if pool > 1:
            offset = randint(pool - 1, (batch_size,), generator, cpu) + 1
            index = (positions + offset) % pool
        else:
            index = positions.clone()
        return {"beta": beta, "reference_index": index}

    def _bank_amplitude(
        self, height: int, width: int, device: torch.device, n_cols: int
    ) -> torch.Tensor:
        key = (height, width, str(device))
        cached = self._cache.get(key)
        if cached is None or cached[0] < n_cols:
            bound = max(
                n_cols, min(math.floor(min(height, width) * self.beta_range[1]) + 2, width // 2 + 1)
            )
            bank = _match_size(to_levels(self.reference_images.to(device)), height, width)
            cached = (bound, _low_frequencies(bank, bound).abs())
            self._cache[key] = cached
        return cached[1][..., :n_cols]

    def apply(
        self,
        images: torch.Tensor,
        params: dict[str, torch.Tensor],
        pool: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Apply given parameters (from :meth:`sample`); same dtype and device.

        ``pool`` holds the images that batch references index (default: ``images``).
        """
        images = check_batch(images)
        _, _, height, width = images.shape
        if use_opencv(self.backend, images):
            return self._apply_numpy(images, params, pool)
        beta = params["beta"].to(images.device)
        index = params["reference_index"].to(images.device)
        if self.reference_images is None:
            pool = images if pool is None else pool
            return fda_swap_batch(images, pool[index], beta, window=self.window)
        weights = fda_weights(height, width, beta, self.window)
        n_cols = _window_columns(weights)
        if n_cols == 0:
            return images.clone()
        amplitude = self._bank_amplitude(height, width, images.device, n_cols)[index]
        return from_levels(_swap(to_levels(images), amplitude, weights[..., :n_cols]), images)

    def _apply_numpy(
        self, images: torch.Tensor, params: dict[str, torch.Tensor], pool: torch.Tensor | None
    ) -> torch.Tensor:
        """Per-sample :func:`~tia_scanner_robust.augmentations.fda.fda_swap` (CPU batch)."""
        source = self.reference_images if self.reference_images is not None else pool
        source = images if source is None else source
        source = source.cpu()
        if source.dtype != torch.uint8:
            source = source.to(torch.float32).clamp(0.0, 1.0)
        channels_last = source.permute(0, 2, 3, 1)
        stored_hwc = channels_last.is_contiguous()
        arrays = channels_last.numpy() if stored_hwc else source.contiguous().numpy()
        betas = params["beta"].double().tolist()
        index = params["reference_index"].tolist()

        def swap(i: int, image: np.ndarray) -> np.ndarray:
            reference = arrays[index[i]]
            if not stored_hwc:
                reference = cv2.merge(list(reference))  # (H, W, 3), contiguous
            return fda_swap(image, reference, betas[i], window=self.window)

        return map_images(images, swap)

    def __call__(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Augment a ``(B, 3, H, W)`` batch (uint8, or float in ``[0, 1]``)."""
        images = check_batch(images)
        return self.apply(images, self.sample(images.shape[0], generator))
