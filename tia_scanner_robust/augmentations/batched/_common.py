"""Shared helpers of the batched style augmentations: batch checks, value scales, sampling.

Every batched function takes a ``(B, 3, H, W)`` RGB batch, ``uint8`` (values
``0..255``) or floating point (values in ``[0, 1]``), on any device, and
works internally on float32 *levels* in ``[0, 255]``; :func:`to_levels` and
:func:`from_levels` convert in and out (uint8 results are rounded half to
even and saturated, like OpenCV; float results are clipped to ``[0, 1]``).

Random parameters are drawn with a :class:`torch.Generator` (``None``: the
global generator) on the generator's own device and then moved to the
batch's device; per-pixel noise uses a device generator seeded from it, so a
CPU generator gives reproducible draws for a batch on any device.

Examples:
    >>> import torch
    >>> x = torch.tensor([[[[0, 128, 255]]]], dtype=torch.uint8).expand(1, 3, 1, 3)
    >>> from_levels(to_levels(x), x).equal(x)
    True
    >>> y = x.float() / 255
    >>> bool(torch.allclose(from_levels(to_levels(y), y), y))
    True

"""

from __future__ import annotations

import math

import torch

__all__ = [
    "check_batch",
    "device_generator",
    "draw_family",
    "from_levels",
    "rand",
    "randint",
    "randn",
    "select_rows",
    "to_levels",
]

_FAMILY_CODES = {"normal": 0, "laplace": 1, "uniform": 2}


def check_batch(images: object, name: str = "images") -> torch.Tensor:
    """Check an ``(B, 3, H, W)`` uint8 or floating RGB batch; return it unchanged.

    Raises:
        TypeError: If ``images`` is not a tensor or has another dtype.
        ValueError: If the shape is not ``(B, 3, H, W)`` with ``B, H, W >= 1``.

    Examples:
        >>> import torch
        >>> check_batch(torch.zeros(2, 3, 4, 4, dtype=torch.uint8)).shape
        torch.Size([2, 3, 4, 4])
        >>> check_batch(torch.zeros(2, 4, 4, 3))
        Traceback (most recent call last):
        ...
        ValueError: images must have shape (B, 3, H, W) (channels first); got (2, 4, 4, 3).

    """
    if not isinstance(images, torch.Tensor):
        msg = f"{name} must be a torch.Tensor of shape (B, 3, H, W), got {type(images).__name__}."
        raise TypeError(msg)
    if images.dtype != torch.uint8 and not images.is_floating_point():
        msg = f"{name} must be uint8 (0..255) or floating point ([0, 1]); got {images.dtype}."
        raise TypeError(msg)
    if images.ndim != 4 or images.shape[1] != 3 or min(images.shape) < 1:
        msg = f"{name} must have shape (B, 3, H, W) (channels first); got {tuple(images.shape)}."
        raise ValueError(msg)
    return images


def to_levels(images: torch.Tensor) -> torch.Tensor:
    """Float32 copy of a batch in grey levels ``[0, 255]`` (uint8 as is, float times 255)."""
    if images.dtype == torch.uint8:
        return images.to(torch.float32)
    return images.to(torch.float32) * 255.0


def from_levels(levels: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Float levels back to ``like``'s dtype: uint8 rounded and saturated, float in ``[0, 1]``."""
    if like.dtype == torch.uint8:
        return levels.round().clamp_(0.0, 255.0).to(torch.uint8)
    return (levels / 255.0).clamp_(0.0, 1.0).to(like.dtype)


def select_rows(mask: torch.Tensor) -> torch.Tensor:
    """Indices of the ``True`` rows of a ``(B,)`` bool tensor."""
    return torch.nonzero(mask, as_tuple=False).flatten()


def _gen_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def rand(
    shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """Uniform ``[0, 1)`` float32 draws on ``generator``'s device, moved to ``device``."""
    return torch.rand(shape, generator=generator, device=_gen_device(generator)).to(device)


def randn(
    shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """Standard normal float32 draws on ``generator``'s device, moved to ``device``."""
    return torch.randn(shape, generator=generator, device=_gen_device(generator)).to(device)


def randint(
    high: int, shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """Integers in ``[0, high)`` drawn on ``generator``'s device, moved to ``device``."""
    values = torch.randint(high, shape, generator=generator, device=_gen_device(generator))
    return values.to(device)


def device_generator(generator: torch.Generator | None, device: torch.device) -> torch.Generator:
    """A generator on ``device`` seeded by one draw from ``generator`` (for per-pixel noise).

    Examples:
        >>> import torch
        >>> g = device_generator(torch.Generator().manual_seed(0), torch.device("cpu"))
        >>> a = torch.randn(3, generator=g)
        >>> g2 = device_generator(torch.Generator().manual_seed(0), torch.device("cpu"))
        >>> bool(torch.equal(a, torch.randn(3, generator=g2)))
        True

    """
    seed = int(
        torch.randint(0, 2**62, (1,), generator=generator, device=_gen_device(generator)).item()
    )
    out = torch.Generator(device=device)
    out.manual_seed(seed)
    return out


def draw_family(
    family: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Draws from normal / Laplace / uniform laws given by their mean and std (float64).

    Args:
        family: Integer codes, ``0`` normal, ``1`` Laplace, ``2`` uniform,
            broadcastable to ``mean``.
        mean: Means, shape ``(B, K)`` (the output shape).
        std: Standard deviations (same shape, ``>= 0``).
        generator: CPU-side generator (``None``: global).

    Returns:
        ``(B, K)`` float64 draws on ``mean``'s device. The Laplace scale is
        ``std / sqrt(2)`` and the uniform half-width ``sqrt(3) * std``, as in
        :func:`~tia_scanner_robust.augmentations.randstainna.sample_virtual_template`.

    Examples:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> x = draw_family(torch.tensor([1]), torch.zeros(20000, 1), torch.ones(20000, 1), g)
        >>> round(float(x.std()), 1), round(float(x.mean()), 1)
        (1.0, 0.0)

    """
    shape = tuple(mean.shape)
    device = mean.device
    normal = randn(shape, generator, device).double()
    uniform = rand(shape, generator, device).double()
    centred = uniform - 0.5  # in [-0.5, 0.5)
    laplace = -torch.sign(centred) * torch.log1p(-2.0 * centred.abs()) / math.sqrt(2.0)
    unit = torch.where(
        family == _FAMILY_CODES["normal"],
        normal,
        torch.where(family == _FAMILY_CODES["laplace"], laplace, 2.0 * math.sqrt(3.0) * centred),
    )
    return mean + std * unit


def family_code(name: str) -> int:
    """Integer code of a family name for :func:`draw_family`."""
    return _FAMILY_CODES[name]
