"""Compatibility module: the paired data, re-exported from its three homes.

The scanner-paired data now lives in three modules:

- :mod:`~tia_scanner_robust.data.collection`: the data model
  (:class:`~tia_scanner_robust.data.collection.PairedSample`,
  :class:`~tia_scanner_robust.data.collection.PairedCollection`);
- :mod:`~tia_scanner_robust.data.readers`: the pixels
  (:func:`~tia_scanner_robust.data.readers.load_sample_image`,
  :func:`~tia_scanner_robust.data.readers.read_mask`,
  :func:`~tia_scanner_robust.data.readers.open_wsi`...);
- :mod:`~tia_scanner_robust.data.datasets`: the torch datasets
  (:class:`~tia_scanner_robust.data.datasets.PairedImageDataset`,
  :class:`~tia_scanner_robust.data.datasets.PairedGroupDataset`).

Every name this module held stays importable from it. The torch datasets
resolve lazily, so ``import tia_scanner_robust.data.paired`` does not import
torch.

Examples:
    >>> from tia_scanner_robust.data.paired import PairedCollection, PairedSample
    >>> PairedCollection([PairedSample("slide_1/sample_1", "AT2")]).scanners
    ['AT2']
    >>> from tia_scanner_robust.data.paired import PairedImageDataset
    >>> PairedImageDataset.__module__
    'tia_scanner_robust.data.datasets'

"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tia_scanner_robust.data.collection import (
    INCOMPLETE_POLICIES,
    MANIFEST_COLUMNS,
    PairedCollection,
    PairedSample,
    natural_key,
)
from tia_scanner_robust.data.readers import (
    MAX_WHOLE_SLIDE_PIXELS,
    existing_image_path,
    load_sample_image,
    load_sample_mask,
    open_wsi,
    read_mask,
    verify_images,
)

if TYPE_CHECKING:
    from tia_scanner_robust.data.datasets import PairedGroupDataset, PairedImageDataset

__all__ = [
    "INCOMPLETE_POLICIES",
    "MANIFEST_COLUMNS",
    "MAX_WHOLE_SLIDE_PIXELS",
    "PairedCollection",
    "PairedGroupDataset",
    "PairedImageDataset",
    "PairedSample",
    "existing_image_path",
    "load_sample_image",
    "load_sample_mask",
    "natural_key",
    "open_wsi",
    "read_mask",
    "verify_images",
]

#: Names that import torch: resolved from the datasets module on first use.
_TORCH_NAMES = frozenset({"PairedGroupDataset", "PairedImageDataset"})


def __getattr__(name: str) -> Any:
    """Resolve the torch datasets lazily (PEP 562)."""
    if name in _TORCH_NAMES:
        return getattr(importlib.import_module("tia_scanner_robust.data.datasets"), name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__() -> list[str]:
    """The module's names, the lazy ones included."""
    return sorted(set(globals()) | set(__all__))
