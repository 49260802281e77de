"""RandStainNA on a batch, in torch: per-sample colour space and virtual template.

Same templates (:class:`~tia_scanner_robust.augmentations.randstainna.RandStainNATemplate`,
the shipped defaults or your YAML files), same sampling law and same
Reinhard transfer as :class:`~tia_scanner_robust.augmentations.randstainna.RandStainNA`
(the default, non-``official`` behaviour):

- per sample, a colour space drawn uniformly among the active ones;
- ``mu_hat_c ~ D(m_c, s_c * (1 + std_hyper))``, ``sigma_hat_c`` likewise and
  clipped below at ``MIN_STD_FRACTION`` of the template's mean std;
- ``x' = (x - mu_c) / sigma_c * sigma_hat_c + mu_hat_c`` per channel (gain 0
  for a constant channel), clipped to the colour space's domain (hue wrapped),
  converted back to RGB.

uint8 batches use OpenCV's 8-bit LAB/HSV values (see
:mod:`.batched.colorspace`), so for the same targets the output matches
:func:`~tia_scanner_robust.augmentations.colorspace.reinhard_transfer` within
one grey level. Only the random stream differs (torch instead of NumPy): the
distribution of outputs is the same.

Examples:
    >>> import torch
    >>> from tiatoolbox.data import stain_norm_target
    >>> tile = torch.from_numpy(stain_norm_target()[:64, :64]).permute(2, 0, 1)
    >>> batch = tile.expand(4, -1, -1, -1)
    >>> aug = BatchRandStainNA()
    >>> out = aug(batch, generator=torch.Generator().manual_seed(0))
    >>> out.shape, out.dtype
    (torch.Size([4, 3, 64, 64]), torch.uint8)

"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from tia_scanner_robust._validation import check_in_choices
from tia_scanner_robust.augmentations.batched._backend import check_backend, map_images, use_opencv
from tia_scanner_robust.augmentations.batched._common import (
    check_batch,
    draw_family,
    family_code,
    from_levels,
    randint,
    select_rows,
    to_levels,
)
from tia_scanner_robust.augmentations.batched.colorspace import (
    hed_to_rgb,
    hsv_to_rgb,
    lab_to_rgb,
    rgb_to_hed,
    rgb_to_hsv,
    rgb_to_lab,
)
from tia_scanner_robust.augmentations.colorspace import (
    COLOR_SPACES,
    MIN_IMAGE_STD,
    reinhard_transfer,
)
from tia_scanner_robust.augmentations.randstainna import (
    MIN_STD_FRACTION,
    RandStainNA,
    TemplateSource,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["BatchRandStainNA", "reinhard_transfer_batch"]

_HUE_PERIOD = 180.0


def _to_space(levels: torch.Tensor, space: str, *, quantize: bool) -> torch.Tensor:
    if space == "LAB":
        return rgb_to_lab(levels, quantize=quantize)
    if space == "HSV":
        return rgb_to_hsv(levels, quantize=quantize)
    return rgb_to_hed(levels)


def _from_space(values: torch.Tensor, space: str) -> torch.Tensor:
    """Clip to the domain of ``space`` (hue wraps), then back to RGB levels."""
    if space == "LAB":
        return lab_to_rgb(values.clamp(0.0, 255.0))
    if space == "HSV":
        hue = torch.remainder(values[:, 0:1], _HUE_PERIOD)
        return hsv_to_rgb(torch.cat([hue, values[:, 1:].clamp(0.0, 255.0)], dim=1))
    return hed_to_rgb(values.clamp_min(0.0))


def reinhard_transfer_batch(
    levels: torch.Tensor,
    space: str,
    target_mean: torch.Tensor,
    target_std: torch.Tensor,
    *,
    quantize: bool = False,
) -> torch.Tensor:
    """Reinhard transfer of every image of a batch to its own target statistics.

    Args:
        levels: ``(B, 3, H, W)`` float RGB levels in ``[0, 255]``.
        space: ``"LAB"``, ``"HSV"`` or ``"HED"``.
        target_mean: ``(B, 3)`` target channel means (8-bit convention).
        target_std: ``(B, 3)`` non-negative target channel stds.
        quantize: The levels are integers of a uint8 image: use OpenCV's
            8-bit LAB/HSV values (as the NumPy version does for uint8).

    Returns:
        ``(B, 3, H, W)`` float RGB levels in ``[0, 255]`` (not rounded).

    Examples:
        >>> import torch
        >>> x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 255
        >>> mean = torch.tensor([[150.0, 135.0, 125.0]] * 2)
        >>> std = torch.tensor([[10.0, 4.0, 4.0]] * 2)
        >>> y = reinhard_transfer_batch(x, "LAB", mean, std)
        >>> y.shape, bool((y >= 0).all() and (y <= 255).all())
        (torch.Size([2, 3, 16, 16]), True)

    """
    space = check_in_choices(str(space).upper(), COLOR_SPACES, "colour space")
    values = _to_space(levels, space, quantize=quantize)
    var, mean = torch.var_mean(values.double(), dim=(2, 3), correction=0)
    std = var.sqrt()
    target_mean = target_mean.to(device=levels.device, dtype=torch.float64)
    target_std = target_std.to(device=levels.device, dtype=torch.float64)
    constant = std < MIN_IMAGE_STD[space]
    gain = torch.where(
        constant, torch.zeros_like(std), target_std / torch.where(constant, 1.0, std)
    )
    offset = target_mean - mean * gain
    moved = values * gain.float()[:, :, None, None] + offset.float()[:, :, None, None]
    return _from_space(moved, space)


class BatchRandStainNA:
    """RandStainNA (Shen et al., 2022) applied to a whole ``(B, 3, H, W)`` batch in torch.

    Args:
        templates: As :class:`~tia_scanner_robust.augmentations.randstainna.RandStainNA`:
            ``None`` (shipped templates), a YAML path, a dict, a template or a
            list of them (one per colour space).
        color_spaces: Colour spaces drawn from per sample (``None``: all of
            ``templates``).
        std_hyper: Spread adjustment of the virtual templates (``>= -1``).
        distribution: ``None`` (fitted family) or ``"normal"``,
            ``"laplace"``, ``"uniform"``.
        backend: ``"auto"`` (OpenCV per sample on a CPU batch, torch
            otherwise), ``"torch"`` or ``"opencv"``.

    Examples:
        >>> import torch
        >>> aug = BatchRandStainNA(color_spaces=["LAB", "HED"])
        >>> params = aug.sample(3, torch.Generator().manual_seed(0))
        >>> params["target_mean"].shape, sorted(set(params["space_index"].tolist())) <= [0, 1]
        (torch.Size([3, 3]), True)

    """

    def __init__(
        self,
        templates: TemplateSource = None,
        color_spaces: Sequence[str] | str | None = None,
        std_hyper: float = -0.3,
        distribution: str | None = None,
        backend: str = "auto",
    ) -> None:
        self.backend = check_backend(backend)
        reference = RandStainNA(
            templates=templates,
            color_spaces=color_spaces,
            std_hyper=std_hyper,
            distribution=distribution,
            p=1.0,
        )
        self.std_hyper = reference.std_hyper
        self.distribution = reference.distribution
        self.templates = reference.active_templates
        self.spaces: tuple[str, ...] = tuple(self.templates)
        factor = 1.0 + self.std_hyper
        self._series: dict[str, dict[str, torch.Tensor]] = {}
        for space, template in self.templates.items():
            series = (*template.channel_mean, *template.channel_std)
            families = [self.distribution or s.distribution for s in series]
            self._series[space] = {
                "family": torch.tensor([family_code(f) for f in families]),
                "mean": torch.tensor([s.mean for s in series], dtype=torch.float64),
                "std": torch.tensor([s.std * factor for s in series], dtype=torch.float64),
                "floor": torch.tensor(
                    [MIN_STD_FRACTION * s.mean for s in template.channel_std], dtype=torch.float64
                ),
            }

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(color_spaces={list(self.spaces)}, std_hyper={self.std_hyper}, "
            f"distribution={self.distribution!r})"
        )

    def sample(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Draw per-sample colour spaces and virtual templates (on the CPU).

        Returns:
            The draws
            ``{"space_index": (B,) long (into self.spaces), "target_mean": (B, 3),
            "target_std": (B, 3)}`` (float64).

        """
        cpu = torch.device("cpu")
        if len(self.spaces) > 1:
            space_index = randint(len(self.spaces), (batch_size,), generator, cpu)
        else:
            space_index = torch.zeros(batch_size, dtype=torch.long)
        target_mean = torch.zeros(batch_size, 3, dtype=torch.float64)
        target_std = torch.zeros(batch_size, 3, dtype=torch.float64)
        for k, space in enumerate(self.spaces):
            rows = select_rows(space_index == k)
            if rows.numel() == 0:
                continue
            series = self._series[space]
            shape = (rows.numel(), 6)
            draws = draw_family(
                series["family"].expand(shape),
                series["mean"].expand(shape),
                series["std"].expand(shape),
                generator,
            )
            target_mean[rows] = draws[:, :3]
            target_std[rows] = torch.maximum(draws[:, 3:], series["floor"])
        return {"space_index": space_index, "target_mean": target_mean, "target_std": target_std}

    def apply(self, images: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Apply given parameters (from :meth:`sample`) to a batch; same dtype and device."""
        images = check_batch(images)
        if use_opencv(self.backend, images):
            spaces = [self.spaces[int(k)] for k in params["space_index"]]
            means = params["target_mean"].double().numpy()
            stds = params["target_std"].double().numpy()
            return map_images(
                images, lambda i, image: reinhard_transfer(image, spaces[i], means[i], stds[i])
            )
        levels = to_levels(images)
        out = levels.clone()
        quantize = images.dtype == torch.uint8
        space_index = params["space_index"].to(images.device)
        for k, space in enumerate(self.spaces):
            rows = select_rows(space_index == k)
            if rows.numel() == 0:
                continue
            out[rows] = reinhard_transfer_batch(
                levels[rows],
                space,
                params["target_mean"].to(images.device)[rows],
                params["target_std"].to(images.device)[rows],
                quantize=quantize,
            )
        return from_levels(out, images)

    def __call__(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Augment a ``(B, 3, H, W)`` batch (uint8, or float in ``[0, 1]``)."""
        images = check_batch(images)
        return self.apply(images, self.sample(images.shape[0], generator))
