"""Demo-scale labels derived on the reference scan (:mod:`tia_scanner_robust.demo.labels`)."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.color import rgb2hed

from tia_scanner_robust.augmentations.scanner import SCANNER_PROFILES, simulate_scanner
from tia_scanner_robust.demo.labels import derive_labels, reference_rendering

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_labels_are_deterministic_and_follow_hematoxylin(he_image: np.ndarray) -> None:
    crop = np.ascontiguousarray(he_image[:256, :256])
    first = derive_labels(crop)
    second = derive_labels(crop.copy())
    assert first.dtype == np.uint8
    assert np.array_equal(first, second)
    assert set(np.unique(first).tolist()) == {0, 1}
    # nuclei are the hematoxylin-rich pixels of the reference rendering
    hema = rgb2hed(reference_rendering(crop))[..., 0]
    assert hema[first == 1].mean() > 2 * hema[first == 0].mean()
    # the binary scheme is the nuclei class of the three-class scheme
    three = derive_labels(crop, scheme="tissue")
    assert set(np.unique(three).tolist()) <= {0, 1, 2}
    assert np.array_equal(first, (three == 2).astype(np.uint8))
    # render=False labels the given image: same as rendering it first ourselves
    rendered = simulate_scanner(crop, next(iter(SCANNER_PROFILES.values())))
    assert np.array_equal(derive_labels(rendered, render=False), first)
    with pytest.raises(ValueError, match="scheme"):
        derive_labels(crop, scheme="cells")
