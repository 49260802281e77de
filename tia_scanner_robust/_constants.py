"""Constants shared across the package.

Examples:
    >>> IMAGENET_MEAN
    (0.485, 0.456, 0.406)

"""

from __future__ import annotations

__all__ = ["IMAGENET_MEAN", "IMAGENET_NORMALIZATION", "IMAGENET_STD"]

#: Per-channel RGB mean of ImageNet, for inputs scaled to [0, 1].
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
#: Per-channel RGB standard deviation of ImageNet, for inputs scaled to [0, 1].
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
#: ``(mean, std)`` as one pair, the form the feature extractor takes.
IMAGENET_NORMALIZATION: tuple[tuple[float, float, float], tuple[float, float, float]] = (
    IMAGENET_MEAN,
    IMAGENET_STD,
)
