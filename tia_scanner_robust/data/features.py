"""Compatibility module: the patch-feature store, bag datasets and ScanGen sampler.

These now live in three modules:

- :mod:`~tia_scanner_robust.data.feature_store`: the zarr
  :class:`~tia_scanner_robust.data.feature_store.FeatureStore`;
- :mod:`~tia_scanner_robust.data.bag_datasets`:
  :class:`~tia_scanner_robust.data.bag_datasets.BagDataset` and
  :func:`~tia_scanner_robust.data.bag_datasets.collate_bags`;
- :mod:`~tia_scanner_robust.data.bag_sampling`:
  :class:`~tia_scanner_robust.data.bag_sampling.ScanGenBatchSampler` and
  :func:`~tia_scanner_robust.data.bag_sampling.split_specimens`.

Every name this module held stays importable from it. The names that need
torch resolve lazily, so importing the store from here does not import torch.

Examples:
    >>> from tia_scanner_robust.data.features import FeatureStore, ScanGenBatchSampler
    >>> FeatureStore.slide_key("P 1", "AT2")
    'P_1/AT2/na'
    >>> ScanGenBatchSampler.__module__
    'tia_scanner_robust.data.bag_sampling'

"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tia_scanner_robust.data.feature_store import (
    STORE_FORMAT,
    FeatureStore,
    SlideFeatures,
    SlideInfo,
    sanitize_key,
)

if TYPE_CHECKING:
    from tia_scanner_robust.data.bag_datasets import MISSING_LABEL, BagDataset, collate_bags
    from tia_scanner_robust.data.bag_sampling import ScanGenBatchSampler, split_specimens

__all__ = [
    "MISSING_LABEL",
    "STORE_FORMAT",
    "BagDataset",
    "FeatureStore",
    "ScanGenBatchSampler",
    "SlideFeatures",
    "SlideInfo",
    "collate_bags",
    "sanitize_key",
    "split_specimens",
]

#: Names that import torch, and the module that defines each.
_TORCH_NAMES = {
    "MISSING_LABEL": "bag_datasets",
    "BagDataset": "bag_datasets",
    "collate_bags": "bag_datasets",
    "ScanGenBatchSampler": "bag_sampling",
    "split_specimens": "bag_sampling",
}


def __getattr__(name: str) -> Any:
    """Resolve the torch-backed names lazily (PEP 562)."""
    if name in _TORCH_NAMES:
        module = importlib.import_module(f"tia_scanner_robust.data.{_TORCH_NAMES[name]}")
        return getattr(module, name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__() -> list[str]:
    """The module's names, the lazy ones included."""
    return sorted(set(globals()) | set(__all__))
