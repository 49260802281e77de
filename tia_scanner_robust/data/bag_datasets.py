"""MIL bags from a :class:`~tia_scanner_robust.data.feature_store.FeatureStore`.

:class:`BagDataset` serves each stored slide as a bag of patch features and
:func:`collate_bags` pads a list of bags into one batch (with a mask of the
real instances), using :func:`tia_scanner_robust.bags.pad_bags`.

Examples:
    >>> import tempfile, numpy as np
    >>> store = FeatureStore(tempfile.mkdtemp() + "/f.zarr")
    >>> _ = store.write_slide("P1", "AT2", np.ones((2, 4)))
    >>> BagDataset(store)[0]["label"] == MISSING_LABEL
    True

"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset

from tia_scanner_robust.bags import pad_bags
from tia_scanner_robust.data.feature_store import FeatureStore
from tia_scanner_robust.seeding import make_rng

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from pathlib import Path

__all__ = ["MISSING_LABEL", "BagDataset", "collate_bags"]

#: Label given to slides without one; ``F.cross_entropy`` ignores it by default.
MISSING_LABEL = -100


class BagDataset(Dataset):
    """Slides of a :class:`FeatureStore` as MIL bags.

    Items are dicts: ``features`` ``(N, D)`` float32 tensor, ``label`` (int
    class index, float, or :data:`MISSING_LABEL` when the slide has none),
    ``specimen_id``, ``scanner``, ``magnification``, ``key`` and ``index``.

    Args:
        store: A store or the path of one (opened read-only).
        split: Keep slides of this split (or these splits); ``None``: all.
        scanners: Keep slides of these scanners.
        specimens: Keep slides of these specimens.
        magnifications: Keep slides at these magnifications.
        max_instances: If set, bags larger than this are subsampled (uniform
            without replacement, a new draw per access) to this size.
        label_key: Attribute holding the label (``"label"`` or an extra one).
        require_label: Raise if a selected slide has no label.
        seed: Seed (or NumPy generator) of the subsampling.

    Raises:
        ValueError: If nothing matches, or a label is missing while required.

    Examples:
        >>> import tempfile, numpy as np
        >>> store = FeatureStore(tempfile.mkdtemp() + "/f.zarr")
        >>> for i in range(3):
        ...     _ = store.write_slide(
        ...         f"P{i}", "AT2", np.ones((i + 1, 4)), label=i % 2, split="train"
        ...     )
        >>> batch = collate_bags([item for item in BagDataset(store, split="train")])
        >>> (
        ...     tuple(batch["features"].shape),
        ...     batch["mask"].sum(dim=1).tolist(),
        ...     batch["label"].tolist(),
        ... )
        ((3, 3, 4), [1, 2, 3], [0, 1, 0])

    """

    def __init__(
        self,
        store: FeatureStore | str | Path,
        split: str | Iterable[str] | None = None,
        *,
        scanners: str | Iterable[str] | None = None,
        specimens: str | Iterable[str] | None = None,
        magnifications: str | Iterable[str] | None = None,
        max_instances: int | None = None,
        label_key: str = "label",
        require_label: bool = False,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        self.store = store if isinstance(store, FeatureStore) else FeatureStore(store, mode="r")
        self.slides = self.store.filter(
            split=split, scanner=scanners, specimen_id=specimens, magnification=magnifications
        )
        if not self.slides:
            msg = (
                f"No complete slide in {self.store.path} matches split={split!r}, "
                f"scanners={scanners!r}, specimens={specimens!r}, "
                f"magnifications={magnifications!r}."
            )
            raise ValueError(msg)
        if max_instances is not None and (isinstance(max_instances, bool) or max_instances < 1):
            msg = f"max_instances must be None or a positive int, got {max_instances!r}."
            raise ValueError(msg)
        self.max_instances = max_instances
        self.label_key = label_key
        self._labels = [info.get(label_key) for info in self.slides]
        if require_label:
            missing = [
                info.key
                for info, label in zip(self.slides, self._labels, strict=True)
                if label is None
            ]
            if missing:
                msg = f"{len(missing)} slide(s) have no {label_key!r}: {missing[:5]}..."
                raise ValueError(msg)
        self._rng = make_rng(seed)

    def __len__(self) -> int:
        return len(self.slides)

    @property
    def specimen_ids(self) -> list[str]:
        """Specimen id of every item (for :class:`ScanGenBatchSampler`)."""
        return [info.specimen_id for info in self.slides]

    @property
    def scanner_ids(self) -> list[str]:
        """Scanner of every item."""
        return [info.scanner for info in self.slides]

    @property
    def labels(self) -> list[Any]:
        """Label of every item (:data:`MISSING_LABEL` where absent)."""
        return [MISSING_LABEL if label is None else label for label in self._labels]

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            msg = f"index {index} out of range for {len(self)} bags."
            raise IndexError(msg)
        info = self.slides[index]
        features = self.store.read_features(info.key)
        if self.max_instances is not None and features.shape[0] > self.max_instances:
            keep = np.sort(self._rng.choice(features.shape[0], self.max_instances, replace=False))
            features = features[keep]
        label = self._labels[index]
        return {
            "features": torch.from_numpy(features),
            "label": MISSING_LABEL if label is None else label,
            "specimen_id": info.specimen_id,
            "scanner": info.scanner,
            "magnification": info.magnification,
            "key": info.key,
            "index": index % len(self),
        }


def collate_bags(batch: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Pad a list of :class:`BagDataset` items into one batch.

    Returns:
        Dict with ``features`` ``(B, N_max, D)``, ``mask`` ``(B, N_max)``
        (True = real instance), ``n_instances`` ``(B,)``, ``label`` ``(B,)``
        tensor (int64 for class indices, float32 if any label is a float), and
        lists ``specimen_id``, ``scanner``, ``magnification``, ``key``,
        ``index``.

    Examples:
        >>> items = [
        ...     {"features": torch.ones(2, 3), "label": 1},
        ...     {"features": torch.ones(4, 3), "label": 0},
        ... ]
        >>> batch = collate_bags(items)
        >>> (
        ...     tuple(batch["features"].shape),
        ...     batch["mask"].sum(dim=1).tolist(),
        ...     batch["label"].tolist(),
        ... )
        ((2, 4, 3), [2, 4], [1, 0])

    """
    if not batch:
        msg = "batch is empty."
        raise ValueError(msg)
    features, mask = pad_bags([item["features"] for item in batch])
    labels = [item.get("label", MISSING_LABEL) for item in batch]
    is_float = any(isinstance(label, float) for label in labels)
    out: dict[str, Any] = {
        "features": features,
        "mask": mask,
        "n_instances": mask.sum(dim=1),
        "label": torch.tensor(labels, dtype=torch.float32 if is_float else torch.int64),
    }
    for name in ("specimen_id", "scanner", "magnification", "key", "index"):
        out[name] = [item.get(name) for item in batch]
    return out
