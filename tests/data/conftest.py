"""Fixtures of the data tests: a small paired image tree and a feature store."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tia_scanner_robust._io import atomic_write_image
from tia_scanner_robust.data.collection import PairedCollection, PairedSample
from tia_scanner_robust.data.feature_store import FeatureStore

SCANNERS = ("AT2", "GT450", "P1000")


@pytest.fixture
def image_tree(tmp_path, he_tile):
    """Three specimens x three scanners of 32x40 tiles, each visibly distinct, plus masks."""
    samples = []
    for i, specimen in enumerate(("slide_1/sample_1", "slide_1/sample_2", "slide_2/sample_1")):
        mask = np.zeros((32, 40), np.uint8)
        mask[: 8 * (i + 1)] = 1
        mask_path = tmp_path / specimen / "mask.png"
        mask_path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(mask_path), mask)
        for j, scanner in enumerate(SCANNERS):
            image = np.ascontiguousarray(he_tile[i * 32 : i * 32 + 32, j * 40 : j * 40 + 40])
            path = atomic_write_image(tmp_path / specimen / f"{scanner}.png", image)
            samples.append(PairedSample(specimen, scanner, path=path, label=i, mask_path=mask_path))
    return PairedCollection(samples), tmp_path


@pytest.fixture(params=[2, 3], ids=["zarr-v2", "zarr-v3"])
def store(tmp_path, request):
    return FeatureStore(tmp_path / "features.zarr", mode="w", zarr_format=request.param)
