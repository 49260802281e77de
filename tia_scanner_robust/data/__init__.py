"""Scanner-paired data: the data model, readers and builders.

- :mod:`~tia_scanner_robust.data.collection`: the data model,
  :class:`PairedSample` and :class:`PairedCollection`.
- :mod:`~tia_scanner_robust.data.readers`: the pixels,
  :func:`load_sample_image`, :func:`read_mask` (the one mask reader) and
  :func:`open_wsi`.
- :mod:`~tia_scanner_robust.data.datasets`: the torch datasets
  :class:`PairedImageDataset` (one item per sample) and
  :class:`PairedGroupDataset` (one item per specimen, every scanner stacked).
  (:mod:`~tia_scanner_robust.data.paired` re-exports all three.)
- :mod:`~tia_scanner_robust.data.scorpion`: :func:`read_scorpion` for the
  ``root/slide_i/sample_j/{scanner}.jpg`` layout.
- :mod:`~tia_scanner_robust.data.manifest`: :func:`read_manifest` for CSV
  manifests of patches or whole-slide regions.
- :mod:`~tia_scanner_robust.data.registration`: ORB + RANSAC affine
  registration on thumbnails, refined by phase correlation at the target
  resolution; :mod:`~tia_scanner_robust.data.build_paired`:
  :func:`build_paired_from_wsis` (aligned regions of multi-scanner WSIs).
- :mod:`~tia_scanner_robust.data.demo`: :func:`build_paired_from_images`
  (simulated scanners) and :func:`build_demo_dataset` (offline demo set).
- :mod:`~tia_scanner_robust.data.feature_store`: the zarr
  :class:`FeatureStore` of patch features;
  :mod:`~tia_scanner_robust.data.bag_datasets`: :class:`BagDataset` and
  :func:`collate_bags`; :mod:`~tia_scanner_robust.data.bag_sampling`:
  :class:`ScanGenBatchSampler` and :func:`split_specimens`
  (:mod:`~tia_scanner_robust.data.features` re-exports all three).

Only the torch datasets, the bag datasets and the sampler import torch; they
resolve lazily, so ``import tia_scanner_robust.data`` does not import torch.

Examples:
    >>> import tempfile
    >>> from tia_scanner_robust.data import build_demo_dataset, read_scorpion
    >>> d = tempfile.mkdtemp()
    >>> _ = build_demo_dataset(d, tile_size=128, n_tiles=2)
    >>> read_scorpion(d, scanners=None).specimens
    ['he/sample_1', 'he/sample_2']

"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tia_scanner_robust._lazy import lazy_exports
from tia_scanner_robust.data.build_paired import (
    WSIScan,
    build_paired_from_wsis,
    read_wsi_listing,
)
from tia_scanner_robust.data.collection import (
    INCOMPLETE_POLICIES,
    MANIFEST_COLUMNS,
    PairedCollection,
    PairedSample,
)
from tia_scanner_robust.data.demo import (
    build_demo_dataset,
    build_paired_from_images,
    tissue_fraction,
)
from tia_scanner_robust.data.manifest import detect_kind, read_manifest
from tia_scanner_robust.data.readers import (
    load_sample_image,
    load_sample_mask,
    open_wsi,
    read_mask,
    verify_images,
)
from tia_scanner_robust.data.registration import (
    AffineRegistration,
    RegistrationError,
    estimate_affine,
)
from tia_scanner_robust.data.scorpion import read_scorpion

if TYPE_CHECKING:  # the lazy exports below, for type checkers
    from tia_scanner_robust.data.bag_datasets import MISSING_LABEL, BagDataset, collate_bags
    from tia_scanner_robust.data.bag_sampling import ScanGenBatchSampler, split_specimens
    from tia_scanner_robust.data.datasets import PairedGroupDataset, PairedImageDataset
    from tia_scanner_robust.data.feature_store import FeatureStore, SlideFeatures, SlideInfo
    from tia_scanner_robust.data.synthetic_features import (
        SyntheticFeatureSet,
        SyntheticFeatureWorld,
        generate_synthetic_features,
    )

__all__ = [
    "INCOMPLETE_POLICIES",
    "MANIFEST_COLUMNS",
    "MISSING_LABEL",
    "AffineRegistration",
    "BagDataset",
    "FeatureStore",
    "PairedCollection",
    "PairedGroupDataset",
    "PairedImageDataset",
    "PairedSample",
    "RegistrationError",
    "ScanGenBatchSampler",
    "SlideFeatures",
    "SlideInfo",
    "SyntheticFeatureSet",
    "SyntheticFeatureWorld",
    "WSIScan",
    "build_demo_dataset",
    "build_paired_from_images",
    "build_paired_from_wsis",
    "collate_bags",
    "detect_kind",
    "estimate_affine",
    "generate_synthetic_features",
    "load_sample_image",
    "load_sample_mask",
    "open_wsi",
    "read_manifest",
    "read_mask",
    "read_scorpion",
    "read_wsi_listing",
    "split_specimens",
    "tissue_fraction",
    "verify_images",
]

# The torch datasets, the feature store, the bag datasets and sampler, and the
# synthetic features (ScanGen) resolve lazily: they import torch or zarr, which
# the data model and the readers do not need.
_LAZY: dict[str, str] = {
    "PairedImageDataset": "datasets",
    "PairedGroupDataset": "datasets",
    "FeatureStore": "feature_store",
    "SlideInfo": "feature_store",
    "SlideFeatures": "feature_store",
    "BagDataset": "bag_datasets",
    "collate_bags": "bag_datasets",
    "MISSING_LABEL": "bag_datasets",
    "ScanGenBatchSampler": "bag_sampling",
    "split_specimens": "bag_sampling",
    "SyntheticFeatureWorld": "synthetic_features",
    "SyntheticFeatureSet": "synthetic_features",
    "generate_synthetic_features": "synthetic_features",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
