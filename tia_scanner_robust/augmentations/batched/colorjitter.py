"""ColorJitter on a batch, in torch, reproducing ``A.ColorJitter`` (albumentations 2.0.8).

Per sample: brightness, contrast and saturation factors and a hue shift are
drawn uniformly from their ranges and the four operations are applied in a
random order (a random permutation per sample), as ``A.ColorJitter`` does:

- brightness ``x * f``;
- contrast ``x * f + mean(gray) * (1 - f)`` (``gray``: OpenCV's Rec. 601 luma);
- saturation ``x * f + gray * (1 - f)``;
- hue: the HSV hue is shifted by ``f`` of the hue circle.

Each step clips to the value range. For uint8 batches every step is
quantised as albumentations does on uint8 images (brightness and contrast
through truncating look-up tables, saturation rounded, hue through OpenCV's
8-bit HSV with the shifted hue truncated), so for the same parameters the
output matches ``A.ColorJitter`` within one grey level; float batches follow
albumentations' float32 path. The defaults are the H&E ranges of
:func:`~tia_scanner_robust.augmentations.presets.he_color_jitter`.

Examples:
    >>> import torch
    >>> x = torch.full((2, 3, 8, 8), 128, dtype=torch.uint8)
    >>> params = {
    ...     "brightness": torch.tensor([1.0, 1.2]),
    ...     "contrast": torch.ones(2),
    ...     "saturation": torch.ones(2),
    ...     "hue": torch.zeros(2),
    ...     "order": torch.tensor([[0, 1, 2, 3]] * 2),
    ... }
    >>> color_jitter_batch(x, **params)[:, 0, 0, 0].tolist()  # trunc(128 * 1.2) = 153
    [128, 153]

"""

from __future__ import annotations

import numpy as np
import torch
from albumentations.augmentations.pixel import functional as fpixel

from tia_scanner_robust.augmentations.batched._backend import check_backend, map_images, use_opencv
from tia_scanner_robust.augmentations.batched._common import (
    check_batch,
    from_levels,
    rand,
    select_rows,
    to_levels,
)
from tia_scanner_robust.augmentations.batched.colorspace import (
    hsv8_to_rgb,
    hsv_to_rgb,
    rgb_to_gray,
    rgb_to_hsv,
)
from tia_scanner_robust.augmentations.presets import HE_COLOR_JITTER_DEFAULTS

__all__ = ["BatchColorJitter", "color_jitter_batch"]

_BRIGHTNESS, _CONTRAST, _SATURATION, _HUE = range(4)


def _column(values: torch.Tensor) -> torch.Tensor:
    return values.to(torch.float32)[:, None, None, None]


def _brightness(x: torch.Tensor, f: torch.Tensor, quantize: bool) -> torch.Tensor:
    out = (x * _column(f)).clamp_(0.0, 255.0)
    return out.trunc_() if quantize else out


def _contrast(x: torch.Tensor, f: torch.Tensor, quantize: bool) -> torch.Tensor:
    mean = rgb_to_gray(x, quantize=quantize).double().mean(dim=(1, 2, 3))
    out = (x * _column(f) + _column(mean * (1.0 - f.double()))).clamp_(0.0, 255.0)
    return out.trunc_() if quantize else out


def _saturation(x: torch.Tensor, f: torch.Tensor, quantize: bool) -> torch.Tensor:
    gray = rgb_to_gray(x, quantize=quantize)
    out = (x * _column(f) + gray * _column(1.0 - f)).clamp_(0.0, 255.0)
    return out.round_() if quantize else out


def _hue(x: torch.Tensor, f: torch.Tensor, quantize: bool) -> torch.Tensor:
    hsv = rgb_to_hsv(x, quantize=quantize)
    if quantize:
        # albumentations truncates the shifted 8-bit hue (a uint8 look-up table)
        hue = torch.remainder(hsv[:, 0:1].double() + 180.0 * _column(f).double(), 180.0).trunc()
        return hsv8_to_rgb(torch.cat([hue.float(), hsv[:, 1:]], dim=1))
    hue = torch.remainder(hsv[:, 0:1] + 180.0 * _column(f), 180.0)
    return hsv_to_rgb(torch.cat([hue, hsv[:, 1:]], dim=1))


_OPERATIONS = (_brightness, _contrast, _saturation, _hue)
# A.ColorJitter's own per-image functions (the OpenCV backend)
_ALBUMENTATIONS = (
    fpixel.adjust_brightness_torchvision,
    fpixel.adjust_contrast_torchvision,
    fpixel.adjust_saturation_torchvision,
    fpixel.adjust_hue_torchvision,
)


def color_jitter_batch(
    images: torch.Tensor,
    *,
    brightness: torch.Tensor,
    contrast: torch.Tensor,
    saturation: torch.Tensor,
    hue: torch.Tensor,
    order: torch.Tensor,
) -> torch.Tensor:
    """Apply per-sample ColorJitter parameters to a batch.

    Args:
        images: ``(B, 3, H, W)`` uint8 or float in ``[0, 1]``.
        brightness: ``(B,)`` brightness factors.
        contrast: ``(B,)`` contrast factors.
        saturation: ``(B,)`` saturation factors.
        hue: ``(B,)`` hue shifts (fraction of the hue circle).
        order: ``(B, 4)`` permutations of ``0..3`` (brightness, contrast,
            saturation, hue): the order of the operations per sample.

    Returns:
        The jittered batch, same dtype and device as ``images``.

    """
    images = check_batch(images)
    quantize = images.dtype == torch.uint8
    device = images.device
    factors = [v.to(device) for v in (brightness, contrast, saturation, hue)]
    order = order.to(device)
    x = to_levels(images)
    for position in range(4):
        for op, operation in enumerate(_OPERATIONS):
            rows = select_rows(order[:, position] == op)
            if rows.numel():
                x[rows] = operation(x[rows], factors[op][rows], quantize)
    return from_levels(x, images)


def _as_range(
    value: float | tuple[float, float], name: str, *, centre: float
) -> tuple[float, float]:
    if isinstance(value, (int, float)):
        value = float(value)
        if value < 0:
            msg = f"{name} must be >= 0 (or a (min, max) range), got {value}."
            raise ValueError(msg)
        return (max(centre - value, 0.0) if centre else -value, centre + value)
    low, high = (float(v) for v in value)
    if low > high:
        msg = f"{name} range must satisfy min <= max, got {(low, high)}."
        raise ValueError(msg)
    return low, high


class BatchColorJitter:
    """``A.ColorJitter`` on a batch with per-sample parameters (H&E ranges by default).

    Args:
        brightness: Factor range ``(min, max)``, or ``x`` for ``[max(0, 1 - x), 1 + x]``.
        contrast: Same form as ``brightness``.
        saturation: Same form as ``brightness``.
        hue: Shift range within ``[-0.5, 0.5]``, or ``x`` for ``[-x, x]``.
        backend: ``"auto"`` (OpenCV per sample on a CPU batch, torch
            otherwise), ``"torch"`` or ``"opencv"``; see :mod:`._backend`.

    Examples:
        >>> import torch
        >>> jitter = BatchColorJitter()
        >>> jitter.brightness, jitter.hue
        ((0.75, 1.25), (-0.04, 0.04))
        >>> x = torch.rand(2, 3, 8, 8)
        >>> jitter(x, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([2, 3, 8, 8])

    """

    def __init__(
        self,
        brightness: float | tuple[float, float] = HE_COLOR_JITTER_DEFAULTS["brightness"],
        contrast: float | tuple[float, float] = HE_COLOR_JITTER_DEFAULTS["contrast"],
        saturation: float | tuple[float, float] = HE_COLOR_JITTER_DEFAULTS["saturation"],
        hue: float | tuple[float, float] = HE_COLOR_JITTER_DEFAULTS["hue"],
        backend: str = "auto",
    ) -> None:
        self.backend = check_backend(backend)
        self.brightness = _as_range(brightness, "brightness", centre=1.0)
        self.contrast = _as_range(contrast, "contrast", centre=1.0)
        self.saturation = _as_range(saturation, "saturation", centre=1.0)
        self.hue = _as_range(hue, "hue", centre=0.0)
        if not -0.5 <= self.hue[0] <= self.hue[1] <= 0.5:
            msg = f"hue must lie within [-0.5, 0.5], got {self.hue}."
            raise ValueError(msg)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(brightness={self.brightness}, contrast={self.contrast}, "
            f"saturation={self.saturation}, hue={self.hue})"
        )

    def sample(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Draw the four factors ``(B,)`` and the operation order ``(B, 4)`` (on the CPU)."""
        cpu = torch.device("cpu")
        draws = rand((batch_size, 8), generator, cpu).double()
        params = {}
        for k, name in enumerate(("brightness", "contrast", "saturation", "hue")):
            low, high = getattr(self, name)
            params[name] = low + (high - low) * draws[:, k]
        params["order"] = torch.argsort(draws[:, 4:], dim=1)
        return params

    def apply(self, images: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """Apply given parameters (from :meth:`sample`); same dtype and device."""
        images = check_batch(images)
        if not use_opencv(self.backend, images):
            return color_jitter_batch(images, **params)
        factors = np.stack(
            [params[k].double().numpy() for k in ("brightness", "contrast", "saturation", "hue")]
        )
        order = params["order"].numpy()

        def jitter(i: int, image: np.ndarray) -> np.ndarray:
            for op in order[i]:
                image = _ALBUMENTATIONS[op](image, float(factors[op, i]))
            return image

        return map_images(images, jitter)

    def __call__(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Augment a ``(B, 3, H, W)`` batch (uint8, or float in ``[0, 1]``)."""
        images = check_batch(images)
        return self.apply(images, self.sample(images.shape[0], generator))
