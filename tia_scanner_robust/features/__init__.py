"""Feature extraction: foundation-model (or any backbone) patch features into a FeatureStore.

See :mod:`tia_scanner_robust.features.extract`.

Examples:
    >>> from tia_scanner_robust.features import FM_NORMALIZATION
    >>> "UNI" in FM_NORMALIZATION
    True

"""

from __future__ import annotations

from tia_scanner_robust._constants import IMAGENET_NORMALIZATION
from tia_scanner_robust.features.extract import (
    FM_NORMALIZATION,
    ExtractionSummary,
    extract_features,
    make_preproc,
    resolve_feature_model,
    tile_image,
)

__all__ = [
    "FM_NORMALIZATION",
    "IMAGENET_NORMALIZATION",
    "ExtractionSummary",
    "extract_features",
    "make_preproc",
    "resolve_feature_model",
    "tile_image",
]
