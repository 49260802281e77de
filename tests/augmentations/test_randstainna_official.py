"""RandStainNA's ``official`` switch reproduces the official code's transfer choices."""

from __future__ import annotations

import albumentations as A  # noqa: N812
import cv2
import numpy as np
import pytest
from skimage.color import hed2rgb, rgb2hed

from tia_scanner_robust.augmentations.colorspace import reinhard_transfer, rgb_to_colorspace
from tia_scanner_robust.augmentations.randstainna import (
    RandStainNA,
    default_randstainna_template,
    official_reinhard_transfer,
    sample_virtual_template,
)

TARGETS = {
    "LAB": ([150.0, 135.0, 125.0], [12.0, 5.0, 5.0]),
    "HSV": ([140.0, 60.0, 180.0], [8.0, 20.0, 20.0]),
    "HED": ([0.12, 0.10, 0.04], [0.03, 0.02, 0.01]),
}


def official_code(image_rgb: np.ndarray, space: str, tar_avgs: list, tar_stds: list) -> np.ndarray:
    """The official RandStainNA ``augment`` transcribed (BGR in, BGR out; RGB at the edges)."""
    image = np.ascontiguousarray(image_rgb[..., ::-1])  # the official code reads BGR
    if space == "LAB":
        image = cv2.cvtColor(image, cv2.COLOR_BGR2LAB)
    elif space == "HSV":
        image = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
    else:
        image = rgb2hed(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    avgs = np.array([np.mean(image[:, :, i]) for i in range(3)])
    stds = np.clip(np.array([np.std(image[:, :, i]) for i in range(3)]), 0.0001, 255)
    image = (image - avgs) * (np.array(tar_stds) / stds) + np.array(tar_avgs)
    if space in ("LAB", "HSV"):
        image = np.clip(image, 0, 255).astype(np.uint8)
    if space == "LAB":
        image = cv2.cvtColor(image, cv2.COLOR_LAB2BGR)
    elif space == "HSV":
        image = cv2.cvtColor(image, cv2.COLOR_HSV2BGR)
    else:
        nimg = hed2rgb(image)
        imin, imax = nimg.min(), nimg.max()
        image = cv2.cvtColor(
            (255 * (nimg - imin) / (imax - imin)).astype("uint8"), cv2.COLOR_RGB2BGR
        )
    return image[..., ::-1]


@pytest.mark.parametrize("space", ["LAB", "HSV", "HED"])
def test_official_transfer_matches_the_official_algorithm(he_tile: np.ndarray, space: str) -> None:
    mean, std = TARGETS[space]
    expected = official_code(he_tile, space, mean, std).astype(np.int16)
    got = official_reinhard_transfer(he_tile, space, mean, std).astype(np.int16)
    diff = np.abs(got - expected)
    assert diff.max() <= 1  # HED: float32 vs float64 densities before truncation
    assert (diff > 0).mean() < 0.01
    default = reinhard_transfer(he_tile, space, mean, std).astype(np.int16)
    if space == "HED":  # the min-max stretch moves the whole distribution
        assert np.abs(default - got).mean() > 3
    else:  # truncation vs rounding: about half a level on average
        assert 0.1 < np.abs(default - got).mean() < 1.5


def test_official_hed_is_stretched_to_the_full_range(he_tile: np.ndarray) -> None:
    mean, std = TARGETS["HED"]
    out = official_reinhard_transfer(he_tile, "HED", mean, std)
    assert out.min() == 0
    assert out.max() >= 254
    as_float = official_reinhard_transfer(he_tile.astype(np.float32) / 255, "HED", mean, std)
    assert as_float.dtype == np.float32
    assert np.abs(as_float * 255 - out).max() < 1e-3


def test_negative_target_std_inverts_the_channel_in_official_mode(he_tile: np.ndarray) -> None:
    lightness = rgb_to_colorspace(he_tile, "LAB")[..., 0].ravel()
    out = official_reinhard_transfer(he_tile, "LAB", [150, 128, 128], [-12.0, 5.0, 5.0])
    inverted = rgb_to_colorspace(out, "LAB")[..., 0].ravel()
    assert np.corrcoef(lightness, inverted)[0, 1] < -0.9
    # default mode: negative targets are refused, and draws are clipped at a floor
    with pytest.raises(ValueError, match="non-negative"):
        reinhard_transfer(he_tile, "LAB", [150, 128, 128], [-12.0, 5.0, 5.0])


def test_clip_std_false_keeps_negative_draws() -> None:
    template = default_randstainna_template("HED")
    rng = np.random.default_rng(0)
    raw = np.array(
        [
            sample_virtual_template(template, rng, std_hyper=3.0, clip_std=False)[1]
            for _ in range(400)
        ]
    )
    rng = np.random.default_rng(0)
    clipped = np.array(
        [sample_virtual_template(template, rng, std_hyper=3.0)[1] for _ in range(400)]
    )
    assert (raw < 0).any()
    assert (clipped > 0).all()


def test_official_switch_in_the_transform(he_tile: np.ndarray) -> None:
    aug = RandStainNA(color_spaces=["HED"], official=True, p=1.0)
    out = A.Compose([aug], seed=0)(image=he_tile)["image"]
    assert out.min() == 0  # stretched
    restored = A.from_dict(A.to_dict(A.Compose([aug])))
    assert restored.transforms[0].official is True
    assert RandStainNA().official is False
