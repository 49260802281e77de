"""Batched torch style augmentations agree with the NumPy/OpenCV versions.

Fixed parameters: pixelwise within one grey level. Random draws: the same
distribution of output statistics (seeded two-sample Kolmogorov-Smirnov tests,
deterministic). Real tissue: crops of TIAToolbox's bundled H&E image.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import torch
from albumentations.augmentations.pixel import functional as fpixel
from skimage.color import rgb2hed

from tia_scanner_robust.augmentations.batched import colorspace as tc
from tia_scanner_robust.augmentations.batched._common import from_levels, to_levels
from tia_scanner_robust.augmentations.batched.colorjitter import color_jitter_batch
from tia_scanner_robust.augmentations.batched.fda import fda_swap_batch, fda_weights
from tia_scanner_robust.augmentations.batched.randstainna import reinhard_transfer_batch
from tia_scanner_robust.augmentations.batched.scanner import simulate_scanner_batch
from tia_scanner_robust.augmentations.colorspace import (
    colorspace_to_rgb,
    reinhard_transfer,
    rgb_to_colorspace,
)
from tia_scanner_robust.augmentations.fda import fda_swap, fda_window
from tia_scanner_robust.augmentations.scanner import SCANNER_PROFILES, simulate_scanner

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiles(he_image: np.ndarray) -> np.ndarray:
    """Four 128x128 crops of real H&E tissue (background, nuclei, stroma).

    128 px wide: OpenCV's vectorised uint8 HSV2RGB (what the batched tables
    hold) covers rows whose width is a multiple of 64; the scalar tail of
    other widths differs by one level on some pixels.
    """
    corners = [(0, 0), (300, 300), (872, 872), (100, 600)]
    return np.stack([he_image[i : i + 128, j : j + 128] for i, j in corners])


def as_batch(images: np.ndarray, dtype: str) -> torch.Tensor:
    batch = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    return batch if dtype == "uint8" else batch.float() / 255.0


def as_images(batch: torch.Tensor) -> np.ndarray:
    return batch.permute(0, 2, 3, 1).numpy()


def grey_levels(out: torch.Tensor, reference: np.ndarray) -> np.ndarray:
    """|difference| in grey levels (float outputs scaled by 255)."""
    scale = 1.0 if reference.dtype == np.uint8 else 255.0
    return np.abs(as_images(out).astype(np.float64) - reference.astype(np.float64)) * scale


def numpy_inputs(images: np.ndarray, dtype: str) -> np.ndarray:
    return images if dtype == "uint8" else images.astype(np.float32) / 255.0


# --------------------------------------------------------------------------- colour spaces
def test_colour_conversions_match_opencv_and_skimage(tiles: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    images = np.concatenate([tiles, rng.integers(0, 256, (2, 128, 128, 3), dtype=np.uint8)])
    levels = to_levels(as_batch(images, "uint8"))
    for code, convert in ((cv2.COLOR_RGB2HSV, tc.rgb_to_hsv), (cv2.COLOR_RGB2LAB, tc.rgb_to_lab)):
        expected = np.stack([cv2.cvtColor(x, code) for x in images]).astype(np.float32)
        assert np.array_equal(as_images(convert(levels, quantize=True)), expected)
    gray = np.stack([cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) for x in images])
    assert np.array_equal(tc.rgb_to_gray(levels, quantize=True)[:, 0].numpy(), gray)
    hsv8 = np.stack([cv2.cvtColor(x, cv2.COLOR_RGB2HSV) for x in images])
    back = np.stack([cv2.cvtColor(x, cv2.COLOR_HSV2RGB) for x in hsv8])
    assert np.array_equal(as_images(tc.hsv8_to_rgb(as_batch(hsv8, "uint8").float())), back)
    # float paths: OpenCV's float HSV formula; LAB to 0.5 of a level (OpenCV
    # interpolates its float LAB table); HED as skimage
    unit = images.astype(np.float32) / 255.0
    hsv = np.stack([cv2.cvtColor(x, cv2.COLOR_RGB2HSV) for x in unit]) * [0.5, 255, 255]
    assert np.abs(as_images(tc.rgb_to_hsv(levels)) - hsv).max() < 1e-3
    lab = np.stack([cv2.cvtColor(x, cv2.COLOR_RGB2Lab) for x in unit]) * [2.55, 1, 1] + [
        0,
        128,
        128,
    ]
    assert np.abs(as_images(tc.rgb_to_lab(levels)) - lab).max() < 0.5
    assert (
        np.abs(as_images(tc.rgb_to_hed(levels)) - np.stack([rgb2hed(x) for x in images])).max()
        < 1e-5
    )
    # inverses: LAB and HSV round trips; HED back as the NumPy version (which
    # clips negative densities, so off-stain random colours do not come back)
    assert float((tc.lab_to_rgb(tc.rgb_to_lab(levels)) - levels).abs().max()) < 0.05
    assert float((tc.hsv_to_rgb(tc.rgb_to_hsv(levels)) - levels).abs().max()) < 0.05
    hed_back = np.stack(
        [colorspace_to_rgb(rgb_to_colorspace(x, "HED"), "HED", np.float32) for x in images]
    )
    got = as_images(tc.hed_to_rgb(tc.rgb_to_hed(levels))) / 255.0
    assert np.abs(got - hed_back).max() < 1e-4


# --------------------------------------------------------------------------- FDA
@pytest.mark.parametrize("window", ["centered", "albumentations"])
def test_fda_weights_equal_numpy_window(window: str) -> None:
    for height, width in ((8, 8), (9, 7), (64, 48)):
        for beta in (0.0, 0.01, 0.05, 0.13, 0.25, 0.5):
            rows, n_cols, weights = fda_window((height, width), beta, window=window)
            expected = np.zeros((height, width // 2 + 1), np.float32)
            if n_cols:
                expected[rows, :n_cols] = weights
            got = fda_weights(height, width, torch.tensor([beta]), window)[0].numpy()
            assert np.array_equal(got, expected), (height, width, beta)


@pytest.mark.parametrize("window", ["centered", "albumentations"])
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_fda_matches_numpy_within_one_level(tiles: np.ndarray, window: str, dtype: str) -> None:
    images = numpy_inputs(tiles, dtype)
    references = images[[1, 2, 3, 0]]
    betas = [0.0, 0.01, 0.04, 0.1]
    expected = np.stack(
        [
            fda_swap(x, r, b, window=window)
            for x, r, b in zip(images, references, betas, strict=True)
        ]
    )
    out = fda_swap_batch(
        as_batch(tiles, dtype),
        as_batch(tiles[[1, 2, 3, 0]], dtype),
        torch.tensor(betas),
        window=window,
    )
    assert out.dtype == as_batch(tiles, dtype).dtype
    assert grey_levels(out, expected).max() <= 1.0
    assert np.array_equal(as_images(out[:1]), images[:1])  # beta = 0: unchanged


# --------------------------------------------------------------------------- RandStainNA
TARGETS = {
    "LAB": ([150.0, 135.0, 125.0], [12.0, 5.0, 5.0]),
    "HSV": ([140.0, 60.0, 180.0], [8.0, 20.0, 20.0]),
    "HED": ([0.12, 0.10, 0.04], [0.03, 0.02, 0.01]),
}


@pytest.mark.parametrize("space", ["LAB", "HSV", "HED"])
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_reinhard_transfer_matches_numpy(tiles: np.ndarray, space: str, dtype: str) -> None:
    mean, std = TARGETS[space]
    images = numpy_inputs(tiles, dtype)
    expected = np.stack([reinhard_transfer(x, space, mean, std) for x in images])
    batch = as_batch(tiles, dtype)
    n = len(tiles)
    levels = reinhard_transfer_batch(
        to_levels(batch),
        space,
        torch.tensor([mean] * n, dtype=torch.float64),
        torch.tensor([std] * n, dtype=torch.float64),
        quantize=dtype == "uint8",
    )
    diff = grey_levels(from_levels(levels, batch), expected)
    if space == "HSV" and dtype == "float32":
        # OpenCV's vectorised float HSV2RGB (the NumPy path) mishandles a
        # negative hue on a few pixels; the batched path wraps the hue first.
        assert (diff > 1.0).mean() < 1e-3
    else:
        assert diff.max() <= 1.0


# --------------------------------------------------------------------------- ColorJitter
_ALBU = [
    fpixel.adjust_brightness_torchvision,
    fpixel.adjust_contrast_torchvision,
    fpixel.adjust_saturation_torchvision,
    fpixel.adjust_hue_torchvision,
]


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_color_jitter_matches_albumentations(tiles: np.ndarray, dtype: str) -> None:
    rng = np.random.default_rng(1)
    images = numpy_inputs(tiles, dtype)
    n = len(tiles)
    for _ in range(3):
        factors = [rng.uniform(0.75, 1.25, n) for _ in range(3)] + [rng.uniform(-0.04, 0.04, n)]
        order = np.stack([rng.permutation(4) for _ in range(n)])
        expected = []
        for i in range(n):
            image = images[i]
            for op in order[i]:
                image = _ALBU[op](image, float(factors[op][i]))
            expected.append(image)
        out = color_jitter_batch(
            as_batch(tiles, dtype),
            brightness=torch.tensor(factors[0]),
            contrast=torch.tensor(factors[1]),
            saturation=torch.tensor(factors[2]),
            hue=torch.tensor(factors[3]),
            order=torch.from_numpy(order),
        )
        assert grey_levels(out, np.stack(expected)).max() <= 1.0


# --------------------------------------------------------------------------- scanner
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_scanner_profiles_match_numpy_without_noise_and_jpeg(tiles: np.ndarray, dtype: str) -> None:
    images = numpy_inputs(tiles[:2, :64, :64], dtype)
    batch = as_batch(tiles[:2, :64, :64], dtype)
    for profile in SCANNER_PROFILES.values():
        quiet = dataclasses.replace(profile, noise_shot=0.0, noise_read=0.0, jpeg_quality=None)
        expected = np.stack([simulate_scanner(x, quiet) for x in images])
        assert grey_levels(simulate_scanner_batch(batch, quiet), expected).max() <= 1.0, (
            profile.name
        )


def test_scanner_jpeg_on_cpu_matches_numpy(tiles: np.ndarray) -> None:
    quiet = dataclasses.replace(SCANNER_PROFILES["warm-soft"], noise_shot=0.0, noise_read=0.0)
    expected = np.stack([simulate_scanner(x, quiet) for x in tiles[:2]])
    out = simulate_scanner_batch(as_batch(tiles[:2], "uint8"), quiet, jpeg="cpu")
    # JPEG amplifies a one-level input difference on a few pixels
    diff = grey_levels(out, expected)
    assert np.median(diff) == 0.0
    assert (diff > 1).mean() < 0.01
