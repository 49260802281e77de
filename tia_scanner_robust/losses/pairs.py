"""Pair masks for contrastive losses over grouped embeddings.

A batch of ``B`` embeddings carries two group labels per element, a specimen
id and a scanner id. The ScanGen loss (METHODS.md section 1.1) looks at
ordered pairs ``(i, j)``, ``i != j``:

- attraction pairs ``P``: same specimen, different scanner;
- repulsion pairs ``N``: same scanner, different specimen.

Both masks are built at once from two ``B x B`` equality matrices, without a
Python loop over pairs. Ids may be integer tensors or any sequence of
hashable values (str or int), which :func:`encode_ids` maps to integers.

Examples:
    >>> a, r = scangen_pair_masks(["p1", "p1", "p2"], ["s1", "s2", "s1"])
    >>> a.int().tolist()
    [[0, 1, 0], [1, 0, 0], [0, 0, 0]]
    >>> r.int().tolist()
    [[0, 0, 1], [0, 0, 0], [1, 0, 0]]

"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["IdsLike", "count_pairs", "encode_ids", "scangen_pair_masks"]

#: Accepted id containers: an integer tensor or array, or a sequence of str/int.
IdsLike = torch.Tensor | np.ndarray | Sequence[str] | Sequence[int]


def encode_ids(
    ids: IdsLike | Iterable[str | int],
    name: str = "ids",
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Map group ids to a 1-D ``int64`` tensor (equal ids -> equal integers).

    Integer tensors and integer arrays are used as they are. Any other
    sequence (str, int, or a mix) is encoded by equality of the values, in
    order of first appearance, so ``["b", "a", "b"]`` becomes ``[0, 1, 0]``.

    Args:
        ids: Integer tensor/array of shape ``(B,)``, or a sequence of ``B``
            hashable ids.
        name: Argument name used in error messages.
        device: Device of the returned tensor (default: the tensor's own
            device, else CPU).

    Returns:
        ``int64`` tensor of shape ``(B,)``.

    Raises:
        TypeError: If a tensor/array holds floating-point or boolean values.
        ValueError: If a tensor/array is not one-dimensional.

    Examples:
        >>> encode_ids(["b", "a", "b"]).tolist()
        [0, 1, 0]
        >>> encode_ids(torch.tensor([7, 7, 3])).tolist()
        [7, 7, 3]

    """
    if isinstance(ids, np.ndarray) and ids.dtype.kind in "iu":
        ids = torch.from_numpy(ids.astype(np.int64, copy=False))
    if isinstance(ids, torch.Tensor):
        if ids.dtype.is_floating_point or ids.dtype == torch.bool or ids.is_complex():
            msg = (
                f"{name} must hold integer ids (or be a sequence of str/int), "
                f"got dtype {ids.dtype}."
            )
            raise TypeError(msg)
        if ids.ndim != 1:
            msg = f"{name} must be one-dimensional, got shape {tuple(ids.shape)}."
            raise ValueError(msg)
        return ids.to(device=device if device is not None else ids.device, dtype=torch.int64)
    if isinstance(ids, np.ndarray):
        if ids.ndim != 1:
            msg = f"{name} must be one-dimensional, got shape {ids.shape}."
            raise ValueError(msg)
        if ids.dtype.kind in "fcb":
            msg = f"{name} must hold integer or string ids, got dtype {ids.dtype}."
            raise TypeError(msg)
        values = ids.tolist()
    elif isinstance(ids, str):
        msg = f"{name} must be a sequence of ids, not a single string ({ids!r})."
        raise TypeError(msg)
    else:
        values = list(ids)
    codes: dict[object, int] = {}
    encoded = [codes.setdefault(value, len(codes)) for value in values]
    return torch.tensor(encoded, dtype=torch.int64, device=device)


def scangen_pair_masks(
    specimen_ids: IdsLike,
    scanner_ids: IdsLike,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean ``(B, B)`` masks of ScanGen attraction and repulsion pairs.

    ``attract[i, j]`` is True when ``i != j``, ``p_i == p_j`` and
    ``s_i != s_j``; ``repel[i, j]`` when ``i != j``, ``s_i == s_j`` and
    ``p_i != p_j``. Both masks are symmetric (ordered pairs: ``(i, j)`` and
    ``(j, i)`` are both True) and disjoint; the diagonal is False (the
    ``i != j`` condition is already implied by the "different" part).

    Args:
        specimen_ids: ``B`` specimen ids (see :func:`encode_ids`).
        scanner_ids: ``B`` scanner ids.
        device: Device of the masks (default: that of the id tensors, else CPU).

    Returns:
        ``(attract, repel)``, two ``torch.bool`` tensors of shape ``(B, B)``.

    Raises:
        ValueError: If the two id sequences differ in length.

    Examples:
        >>> a, r = scangen_pair_masks(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 0, 1]))
        >>> int(a.sum()), int(r.sum())
        (4, 4)

    """
    specimens = encode_ids(specimen_ids, "specimen_ids", device)
    scanners = encode_ids(scanner_ids, "scanner_ids", specimens.device)
    if specimens.shape != scanners.shape:
        msg = (
            "specimen_ids and scanner_ids must have the same length, got "
            f"{specimens.shape[0]} and {scanners.shape[0]}."
        )
        raise ValueError(msg)
    same_specimen = specimens[:, None] == specimens[None, :]
    same_scanner = scanners[:, None] == scanners[None, :]
    attract = same_specimen & ~same_scanner
    repel = same_scanner & ~same_specimen
    return attract, repel


def count_pairs(specimen_ids: IdsLike, scanner_ids: IdsLike) -> tuple[int, int]:
    """Numbers of ordered attraction and repulsion pairs ``(|P|, |N|)`` in a batch.

    Computed from group counts (no ``B x B`` matrix), so it is cheap enough to
    check a sampler's batches.

    Examples:
        >>> count_pairs(["p1", "p1", "p2", "p2"], ["s1", "s2", "s1", "s2"])
        (4, 4)
        >>> count_pairs(["p1", "p2"], ["s1", "s2"])
        (0, 0)

    """
    specimens = encode_ids(specimen_ids, "specimen_ids", "cpu")
    scanners = encode_ids(scanner_ids, "scanner_ids", "cpu")
    if specimens.shape != scanners.shape:
        msg = (
            "specimen_ids and scanner_ids must have the same length, got "
            f"{specimens.shape[0]} and {scanners.shape[0]}."
        )
        raise ValueError(msg)
    if specimens.numel() == 0:
        return 0, 0

    def ordered_pairs(*keys: torch.Tensor) -> int:
        _, counts = torch.unique(torch.stack(keys, dim=1), dim=0, return_counts=True)
        return int((counts * (counts - 1)).sum())

    same_specimen = ordered_pairs(specimens)
    same_scanner = ordered_pairs(scanners)
    same_both = ordered_pairs(specimens, scanners)
    return same_specimen - same_both, same_scanner - same_both
