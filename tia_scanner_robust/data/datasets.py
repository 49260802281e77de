"""Torch datasets over a :class:`~tia_scanner_robust.data.collection.PairedCollection`.

:class:`PairedImageDataset` has one item per sample;
:class:`PairedGroupDataset` has one item per specimen, with every scanner's
image stacked (the unit of consistency training and evaluation). Pixels are
read with :mod:`~tia_scanner_robust.data.readers`. This is the only module of
:mod:`tia_scanner_robust.data`'s paired-data part that imports torch.

Examples:
    >>> import tempfile, pathlib, numpy as np
    >>> from tia_scanner_robust._io import atomic_write_image
    >>> from tia_scanner_robust.data.collection import PairedCollection, PairedSample
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = atomic_write_image(d / "A.png", np.zeros((4, 4, 3), np.uint8))
    >>> len(PairedImageDataset(PairedCollection([PairedSample("s/1", "A", path=d / "A.png")])))
    1

"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset

from tia_scanner_robust.data.collection import PairedCollection
from tia_scanner_robust.data.readers import load_sample_image, load_sample_mask

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["PairedGroupDataset", "PairedImageDataset"]


def _apply_transform(
    transform: Callable[..., dict[str, Any]] | None,
    image: np.ndarray,
    mask: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    if transform is None:
        return image, mask
    out = transform(image=image) if mask is None else transform(image=image, mask=mask)
    if not isinstance(out, dict) or "image" not in out:
        msg = (
            "transform must be an albumentations-style callable returning a dict with "
            f"'image' (called as transform(image=..., mask=...)); got {type(out).__name__}."
        )
        raise TypeError(msg)
    return out["image"], out.get("mask", mask)


def _check_collection(collection: object) -> PairedCollection:
    if not isinstance(collection, PairedCollection):
        msg = f"collection must be a PairedCollection, got {type(collection).__name__}."
        raise TypeError(msg)
    return collection


class PairedImageDataset(Dataset):
    """Torch dataset with one item per sample.

    Each item is a dict with ``image`` (``(H, W, 3)`` uint8 NumPy array, or
    whatever ``transform`` returns), ``specimen_id``, ``scanner``,
    ``scanner_index`` (position in ``collection.scanners``),
    ``magnification`` (``""`` when not given, so that batches collate),
    ``path`` (``str``), ``index``, plus ``label`` when the sample has one and
    ``mask`` (``(H, W)`` array) when it has a mask. A collection that mixes
    samples with and without labels/masks needs a custom ``collate_fn``.

    Args:
        collection: The samples.
        transform: Optional albumentations-style callable, called as
            ``transform(image=..., mask=...)`` (``mask`` only when present)
            and returning a dict with ``image`` (and ``mask``).

    Examples:
        >>> import tempfile, pathlib, numpy as np
        >>> from tia_scanner_robust._io import atomic_write_image
        >>> from tia_scanner_robust.data.collection import (
        ...     PairedCollection,
        ...     PairedSample,
        ... )
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> for s in ("A", "B"):
        ...     _ = atomic_write_image(d / f"{s}.png", np.zeros((4, 4, 3), np.uint8))
        >>> ds = PairedImageDataset(
        ...     PairedCollection(
        ...         PairedSample("s/1", s, path=d / f"{s}.png", label=1) for s in ("A", "B")
        ...     )
        ... )
        >>> item = ds[1]
        >>> item["scanner"], item["image"].shape, item["label"]
        ('B', (4, 4, 3), 1)

    """

    def __init__(
        self,
        collection: PairedCollection,
        transform: Callable[..., dict[str, Any]] | None = None,
    ) -> None:
        self.collection = _check_collection(collection)
        self.transform = transform
        self._scanner_index = {s: i for i, s in enumerate(collection.scanners)}

    def __len__(self) -> int:
        return len(self.collection)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.collection[index]
        image = load_sample_image(sample)
        mask = load_sample_mask(sample, image.shape) if sample.mask_path is not None else None
        image, mask = _apply_transform(self.transform, image, mask)
        item: dict[str, Any] = {
            "image": image,
            "specimen_id": sample.specimen_id,
            "scanner": sample.scanner,
            "scanner_index": self._scanner_index[sample.scanner],
            "magnification": sample.magnification or "",
            "path": str(sample.path),
            "index": int(index),
        }
        if sample.label is not None:
            item["label"] = sample.label
        if mask is not None:
            item["mask"] = mask
        return item


class PairedGroupDataset(Dataset):
    """Torch dataset with one item per specimen: every scanner's image of it.

    Items are dicts with ``image`` (``(S, H, W, 3)`` uint8 array stacked in
    ``collection.scanners`` order; with a ``transform`` whose outputs are
    tensors, a stacked tensor), ``scanners`` (list of ``S`` names),
    ``specimen_id``, ``magnification`` (``""`` when not given), ``paths``,
    ``index``, plus ``label`` (the specimen's label, which must agree across
    scanners) and ``mask`` (``(S, H, W)``) when present. A group's images
    must share one size.

    Args:
        collection: The samples (complete, as every collection is).
        transform: Optional albumentations-style callable applied to each
            scanner's image independently (as in :class:`PairedImageDataset`).

    Examples:
        Two tiles of the offline demo set, seen by two simulated scanners:

        >>> import tempfile
        >>> from tia_scanner_robust.data.demo import build_demo_dataset
        >>> demo = build_demo_dataset(
        ...     tempfile.mkdtemp(), tile_size=16, n_tiles=2, profiles=["reference", "cool-sharp"]
        ... )
        >>> ds = PairedGroupDataset(demo)
        >>> len(ds), ds[0]["image"].shape, ds[0]["scanners"]
        (2, (2, 16, 16, 3), ['reference', 'cool-sharp'])

    """

    def __init__(
        self,
        collection: PairedCollection,
        transform: Callable[..., dict[str, Any]] | None = None,
    ) -> None:
        self.collection = _check_collection(collection)
        self.transform = transform
        self.groups = collection.groups
        self._members = [
            [collection.get(specimen, scanner, magnification) for scanner in collection.scanners]
            for specimen, magnification in self.groups
        ]

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, index: int) -> dict[str, Any]:
        members = self._members[index]
        specimen, magnification = self.groups[index]
        images, masks = [], []
        for sample in members:
            image = load_sample_image(sample)
            mask = load_sample_mask(sample, image.shape) if sample.mask_path is not None else None
            image, mask = _apply_transform(self.transform, image, mask)
            images.append(image)
            masks.append(mask)
        shapes = {tuple(im.shape) for im in images}
        if len(shapes) > 1:
            sizes = ", ".join(
                f"{s.scanner}: {tuple(im.shape)}" for s, im in zip(members, images, strict=True)
            )
            msg = f"Images of specimen {specimen!r} have different sizes ({sizes}); cannot stack."
            raise ValueError(msg)
        item: dict[str, Any] = {
            "image": _stack(images),
            "scanners": [s.scanner for s in members],
            "specimen_id": specimen,
            "magnification": magnification or "",
            "paths": [str(s.path) for s in members],
            "index": int(index),
        }
        labels = [s.label for s in members if s.label is not None]
        if labels:
            if len(labels) != len(members) or len(set(labels)) > 1:
                msg = (
                    f"Specimen {specimen!r} has different labels across scanners "
                    f"{[s.label for s in members]}; PairedGroupDataset needs one label per "
                    "specimen."
                )
                raise ValueError(msg)
            item["label"] = labels[0]
        if any(m is not None for m in masks):
            if any(m is None for m in masks):
                msg = f"Specimen {specimen!r} has masks for some scanners only."
                raise ValueError(msg)
            item["mask"] = _stack(masks)
        return item


def _stack(arrays: list[Any]) -> Any:
    if all(isinstance(a, np.ndarray) for a in arrays):
        return np.stack(arrays)
    return torch.stack([torch.as_tensor(a) for a in arrays])
