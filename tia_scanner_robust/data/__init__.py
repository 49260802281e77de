"""Scanner-paired data: the data model, readers and builders.

- :mod:`~tia_scanner_robust.data.paired`: :class:`PairedSample`,
  :class:`PairedCollection` and the torch datasets :class:`PairedImageDataset`
  (one item per sample) and :class:`PairedGroupDataset` (one item per
  specimen, every scanner stacked).
- :mod:`~tia_scanner_robust.data.scorpion`: :func:`read_scorpion` for the
  ``root/slide_i/sample_j/{scanner}.jpg`` layout.
- :mod:`~tia_scanner_robust.data.manifest`: :func:`read_manifest` for CSV
  manifests of patches or whole-slide regions.
- :mod:`~tia_scanner_robust.data.registration`: :func:`build_paired_from_wsis`
  (ORB + RANSAC affine registration of multi-scanner WSIs, aligned regions).
- :mod:`~tia_scanner_robust.data.demo`: :func:`build_paired_from_images`
  (simulated scanners) and :func:`build_demo_dataset` (offline demo set).

Examples:
    >>> import tempfile
    >>> from tia_scanner_robust.data import build_demo_dataset, read_scorpion
    >>> d = tempfile.mkdtemp()
    >>> _ = build_demo_dataset(d, tile_size=128, n_tiles=2)
    >>> read_scorpion(d, scanners=None).specimens
    ['he/sample_1', 'he/sample_2']

"""

from __future__ import annotations

from tia_scanner_robust._lazy import lazy_exports
from tia_scanner_robust.data.demo import (
    build_demo_dataset,
    build_paired_from_images,
    tissue_fraction,
)
from tia_scanner_robust.data.manifest import detect_kind, read_manifest
from tia_scanner_robust.data.paired import (
    INCOMPLETE_POLICIES,
    MANIFEST_COLUMNS,
    PairedCollection,
    PairedGroupDataset,
    PairedImageDataset,
    PairedSample,
    load_sample_image,
    load_sample_mask,
    verify_images,
)
from tia_scanner_robust.data.registration import (
    AffineRegistration,
    RegistrationError,
    WSIScan,
    build_paired_from_wsis,
    estimate_affine,
    read_wsi_listing,
)
from tia_scanner_robust.data.scorpion import read_scorpion

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
    "read_manifest",
    "read_scorpion",
    "read_wsi_listing",
    "split_specimens",
    "tissue_fraction",
    "verify_images",
]

# The feature store and synthetic features (ScanGen) resolve lazily: they
# import zarr and torch, which the paired-data readers do not need.
_LAZY: dict[str, str] = {
    "FeatureStore": "features",
    "SlideInfo": "features",
    "SlideFeatures": "features",
    "BagDataset": "features",
    "collate_bags": "features",
    "ScanGenBatchSampler": "features",
    "split_specimens": "features",
    "MISSING_LABEL": "features",
    "SyntheticFeatureWorld": "synthetic_features",
    "SyntheticFeatureSet": "synthetic_features",
    "generate_synthetic_features": "synthetic_features",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
