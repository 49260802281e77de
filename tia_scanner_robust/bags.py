"""Bag operations for multiple-instance learning: checks, masks, padding, subsampling.

A *bag* is the set of patch embeddings of one slide: a ``(N, D)`` array. A
batch of bags is a padded ``(B, N_max, D)`` float tensor with a ``(B, N_max)``
bool mask that is True for real instances. These helpers sit in the bottom
layer so that the data, loss and model packages can all use them without
importing each other.

Examples:
    >>> import torch
    >>> features, mask = pad_bags([torch.ones(2, 3), torch.ones(4, 3)])
    >>> tuple(features.shape), mask.sum(dim=1).tolist()
    ((2, 4, 3), [2, 4])
    >>> float(masked_mean(features, mask)[0, 0])
    1.0

"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "check_bags",
    "check_positive_int",
    "masked_mean",
    "masked_softmax",
    "pad_bags",
    "subsample_bags",
    "subsample_mask",
]


def check_positive_int(value: int, name: str) -> int:
    """Return ``value`` as an int; raise ``ValueError`` naming ``name`` unless it is >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        msg = f"{name} must be a positive integer, got {value!r}."
        raise ValueError(msg)
    return int(value)


def check_bags(
    features: torch.Tensor,
    mask: torch.Tensor | None = None,
    in_dim: int | None = None,
    *,
    check_empty: bool = True,
) -> torch.Tensor:
    """Validate a padded batch of bags and return its boolean mask.

    Args:
        features: ``(B, N, D)`` floating-point tensor.
        mask: ``(B, N)`` mask, True for real instances; ``None`` means all
            instances are real. Non-boolean masks are compared with zero.
        in_dim: Expected feature size ``D`` (not checked when ``None``).
        check_empty: Check that every bag has a real instance (this reads the
            mask back from the device: one synchronisation on a GPU).

    Returns:
        The mask as a ``torch.bool`` tensor on the features' device.

    Raises:
        TypeError: If ``features`` is not a floating-point tensor.
        ValueError: On a wrong shape, a feature size other than ``in_dim``, or
            a bag without any real instance.

    Examples:
        >>> check_bags(torch.zeros(2, 3, 4)).shape
        torch.Size([2, 3])

    """
    if not isinstance(features, torch.Tensor) or not features.dtype.is_floating_point:
        msg = f"features must be a floating-point torch tensor, got {type(features).__name__}"
        msg += f" of dtype {features.dtype}." if isinstance(features, torch.Tensor) else "."
        raise TypeError(msg)
    if features.ndim != 3:
        msg = f"features must have shape (B, N, D), got {tuple(features.shape)}."
        raise ValueError(msg)
    if in_dim is not None and features.shape[-1] != in_dim:
        msg = f"features have feature size {features.shape[-1]}, expected {in_dim}."
        raise ValueError(msg)
    batch, n_instances = features.shape[:2]
    if mask is None:
        mask = torch.ones(batch, n_instances, dtype=torch.bool, device=features.device)
        check_empty = False  # all real: nothing to read back
    else:
        if not isinstance(mask, torch.Tensor):
            mask = torch.as_tensor(mask)
        if tuple(mask.shape) != (batch, n_instances):
            msg = f"mask must have shape (B, N) = {(batch, n_instances)}, got {tuple(mask.shape)}."
            raise ValueError(msg)
        mask = mask.to(device=features.device)
        if mask.dtype != torch.bool:
            mask = mask != 0
    if n_instances == 0 or (check_empty and not bool(mask.any(dim=1).all())):
        msg = "every bag needs at least one real instance (mask has an all-False row)."
        raise ValueError(msg)
    return mask


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the instance axis of ``(B, N, D)`` values, ignoring padding.

    Examples:
        >>> x = torch.tensor([[[1.0], [3.0], [100.0]]])
        >>> masked_mean(x, torch.tensor([[True, True, False]])).item()
        2.0

    """
    weights = mask.to(values.dtype)
    total = (values * weights.unsqueeze(-1)).sum(dim=1)
    return total / weights.sum(dim=1, keepdim=True).clamp_min(1.0)


def masked_softmax(logits: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax over ``dim`` with masked-out entries at exactly zero weight.

    Rows without any True entry come back as zeros (never NaN).

    Examples:
        >>> w = masked_softmax(torch.tensor([[0.0, 0.0, 5.0]]), torch.tensor([[True, True, False]]))
        >>> w.tolist()
        [[0.5, 0.5, 0.0]]

    """
    filled = logits.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(filled, dim=dim)
    return torch.nan_to_num(weights, nan=0.0)


def _random_order(mask: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Random permutation of each row's instances with the real ones first."""
    device = generator.device if generator is not None else mask.device
    keys = torch.rand(mask.shape, generator=generator, device=device).to(mask.device)
    return keys.masked_fill(~mask, 2.0).argsort(dim=1)


def subsample_mask(
    mask: torch.Tensor,
    n_keep: int | torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Keep at most ``n_keep`` random real instances per bag (a new mask).

    Bags with fewer real instances keep all of them. Uniform without
    replacement; reproducible with a seeded ``generator`` (a CPU generator is
    fine for tensors on any device).

    Args:
        mask: ``(B, N)`` boolean mask of real instances.
        n_keep: One count for every bag, or a ``(B,)`` tensor of counts.
        generator: Optional torch generator.

    Returns:
        ``(B, N)`` boolean mask, a subset of ``mask``.

    Examples:
        >>> g = torch.Generator().manual_seed(0)
        >>> m = subsample_mask(torch.ones(2, 10, dtype=torch.bool), 3, g)
        >>> m.sum(dim=1).tolist()
        [3, 3]

    """
    if isinstance(n_keep, torch.Tensor):
        counts = n_keep.to(device=mask.device, dtype=torch.long).reshape(-1, 1)
        if counts.shape[0] != mask.shape[0] or bool((counts < 1).any()):
            msg = f"n_keep must hold {mask.shape[0]} positive counts, got {n_keep.tolist()}."
            raise ValueError(msg)
    else:
        counts = torch.full(
            (mask.shape[0], 1), check_positive_int(n_keep, "n_keep"), device=mask.device
        )
    ranks = _random_order(mask, generator).argsort(dim=1)
    return (ranks < counts) & mask


def subsample_bags(
    features: torch.Tensor,
    mask: torch.Tensor | None,
    n_keep: int,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gather at most ``n_keep`` random real instances per bag into a smaller batch.

    Unlike :func:`subsample_mask` the result is ``(B, k, D)`` with
    ``k = min(n_keep, N)``, so that later layers (e.g. the projection ``g``)
    only run on the kept instances.

    Returns:
        ``(features (B, k, D), mask (B, k))``.

    Examples:
        >>> f, m = subsample_bags(torch.randn(2, 10, 4), None, 3)
        >>> tuple(f.shape), m.sum(dim=1).tolist()
        ((2, 3, 4), [3, 3])

    """
    mask = check_bags(features, mask)
    n_keep = min(check_positive_int(n_keep, "n_keep"), features.shape[1])
    order = _random_order(mask, generator)[:, :n_keep]
    gathered = features.gather(1, order.unsqueeze(-1).expand(-1, -1, features.shape[-1]))
    return gathered, mask.gather(1, order)


def pad_bags(
    bags: Sequence[torch.Tensor | np.ndarray],
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack bags of different sizes into ``(B, N_max, D)`` plus a ``(B, N_max)`` mask.

    Padding rows are zeros and are False in the mask.

    Examples:
        >>> f, m = pad_bags([torch.ones(2, 3), torch.ones(4, 3)])
        >>> tuple(f.shape), m.sum(dim=1).tolist()
        ((2, 4, 3), [2, 4])

    """
    if len(bags) == 0:
        msg = "bags is empty."
        raise ValueError(msg)
    tensors = [torch.as_tensor(bag) for bag in bags]
    for index, bag in enumerate(tensors):
        if bag.ndim != 2 or bag.shape[0] == 0:
            msg = f"bag {index} must have shape (N, D) with N >= 1, got {tuple(bag.shape)}."
            raise ValueError(msg)
        if bag.shape[1] != tensors[0].shape[1]:
            msg = f"bag {index} has feature size {bag.shape[1]}, bag 0 has {tensors[0].shape[1]}."
            raise ValueError(msg)
    n_max = max(bag.shape[0] for bag in tensors)
    features = torch.zeros(len(tensors), n_max, tensors[0].shape[1], dtype=dtype)
    mask = torch.zeros(len(tensors), n_max, dtype=torch.bool)
    for index, bag in enumerate(tensors):
        features[index, : bag.shape[0]] = bag.to(dtype)
        mask[index, : bag.shape[0]] = True
    return features, mask
