"""The pure functions behind every style augmentation, in one namespace.

Each transform keeps its maths at the top of its own module, next to the
class that samples its parameters (albumentations' layout); this module
gathers those deterministic functions so that users can call them without the
transform machinery, e.g. inside a torch ``Dataset`` or a benchmark.

Examples:
    >>> import numpy as np
    >>> from tia_scanner_robust.augmentations import functional as F
    >>> img = np.full((32, 32, 3), 200, np.uint8)
    >>> np.array_equal(F.fda_swap(img, img, 0.05), img)
    True
    >>> F.rgb_to_colorspace(img, "LAB").dtype
    dtype('float32')

"""

from __future__ import annotations

from tia_scanner_robust.augmentations.colorspace import (
    channel_stats,
    colorspace_to_rgb,
    reinhard_transfer,
    rgb_to_colorspace,
)
from tia_scanner_robust.augmentations.fda import fda_swap, fda_window, low_frequency_coefficients
from tia_scanner_robust.augmentations.randstainna import sample_virtual_template
from tia_scanner_robust.augmentations.scanner import simulate_paired_scans, simulate_scanner

__all__ = [
    "channel_stats",
    "colorspace_to_rgb",
    "fda_swap",
    "fda_window",
    "low_frequency_coefficients",
    "reinhard_transfer",
    "rgb_to_colorspace",
    "sample_virtual_template",
    "simulate_paired_scans",
    "simulate_scanner",
]
