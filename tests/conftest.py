"""Shared fixtures: the H&E image that TIAToolbox ships, crops of it, one torch thread."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np
import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def he_image() -> np.ndarray:
    """TIAToolbox's bundled 1000x1000 RGB uint8 H&E image (real tissue)."""
    from tiatoolbox.data import stain_norm_target  # noqa: PLC0415 - import only when used

    image = stain_norm_target()
    assert image.shape == (1000, 1000, 3)
    return np.ascontiguousarray(image)


@pytest.fixture(scope="session")
def he_tile(he_image: np.ndarray) -> np.ndarray:
    """A 256x256 crop of the bundled H&E image (fast tests)."""
    return np.ascontiguousarray(he_image[200:456, 300:556])


@pytest.fixture(scope="session")
def he_tiles(he_image: np.ndarray) -> list[np.ndarray]:
    """Sixteen 250x250 tiles of the bundled H&E image."""
    return [
        np.ascontiguousarray(he_image[i : i + 250, j : j + 250])
        for i in range(0, 1000, 250)
        for j in range(0, 1000, 250)
    ]


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One intra-op torch thread for the test (tiny models on a shared 2-core machine).

    Training modules use it for every test with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.
    """
    import torch  # noqa: PLC0415 - import only when used

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
