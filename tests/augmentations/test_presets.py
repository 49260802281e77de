"""Tests for the H&E presets (ColorJitter, HEStain) and the style_augmentation factory."""

from __future__ import annotations

import albumentations as A  # noqa: N812 - albumentations' conventional alias
import cv2
import numpy as np
import pytest

from tia_scanner_robust.augmentations.fda import FourierDomainAdaptation, fda_swap
from tia_scanner_robust.augmentations.presets import (
    HE_COLOR_JITTER_DEFAULTS,
    STYLE_AUGMENTATIONS,
    he_color_jitter,
    he_stain,
    style_augmentation,
)


@pytest.fixture(scope="module")
def tile(he_tile: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(he_tile[:96, :96])


def test_style_augmentation_names() -> None:
    assert STYLE_AUGMENTATIONS == ("colorjitter", "randstainna", "fda", "hestain", "scanner")


def test_he_color_jitter_defaults_and_overrides() -> None:
    jitter = he_color_jitter()
    assert isinstance(jitter, A.ColorJitter)
    assert jitter.brightness == (0.75, 1.25)
    assert jitter.contrast == (0.75, 1.25)
    assert jitter.saturation == (0.75, 1.25)
    assert jitter.hue == (-0.04, 0.04)
    assert jitter.p == 0.5
    assert HE_COLOR_JITTER_DEFAULTS["hue"] == 0.04
    custom = he_color_jitter(brightness=(0.9, 1.3), hue=0.02, p=1.0)
    assert custom.brightness == (0.9, 1.3)
    assert custom.hue == (-0.02, 0.02)
    assert custom.p == 1.0
    with pytest.raises(TypeError):
        he_color_jitter(gamma=0.2)


def test_he_color_jitter_hue_stays_small(tile: np.ndarray) -> None:
    """With hue in +-0.04 (of 180 OpenCV hue units: +-7.2), the hue of the pixels moves
    little, unlike A.ColorJitter's default full-circle hue range."""

    def hue_shift(transform: A.BasicTransform, seed: int) -> float:
        only_hue = transform
        only_hue.brightness = only_hue.contrast = only_hue.saturation = (1.0, 1.0)
        out = A.Compose([only_hue], seed=seed)(image=tile)["image"]
        h_in = cv2.cvtColor(tile, cv2.COLOR_RGB2HSV)[..., 0].astype(int)
        h_out = cv2.cvtColor(out, cv2.COLOR_RGB2HSV)[..., 0].astype(int)
        saturated = cv2.cvtColor(tile, cv2.COLOR_RGB2HSV)[..., 1] > 60
        diff = np.abs(h_out - h_in)[saturated]
        return float(np.median(np.minimum(diff, 180 - diff)))

    ours = max(hue_shift(he_color_jitter(p=1.0), seed) for seed in range(6))
    default = max(hue_shift(A.ColorJitter(p=1.0), seed) for seed in range(6))
    assert ours <= 8
    assert default > 20


def test_he_stain_defaults(tile: np.ndarray) -> None:
    stain = he_stain()
    assert isinstance(stain, A.HEStain)
    assert (stain.method, stain.preset) == ("preset", "macenko")
    assert stain.intensity_scale_range == (0.75, 1.25)
    assert stain.intensity_shift_range == (-0.05, 0.05)
    assert stain.augment_background is False
    assert he_stain(method="random_preset").preset is None


def test_he_stain_preset_is_realistic(tile: np.ndarray) -> None:
    """At unit scale and zero shift the Macenko preset reconstructs the tile closely,
    which the random presets do not; with the defaults the colours vary moderately."""
    identity = he_stain(intensity_scale_range=(1.0, 1.0), intensity_shift_range=(0.0, 0.0), p=1.0)
    out = A.Compose([identity], seed=0)(image=tile)["image"]
    assert np.abs(out.astype(int) - tile).mean() < 6
    standard = A.HEStain(
        method="preset",
        preset="standard",
        intensity_scale_range=(1.0, 1.0),
        intensity_shift_range=(0.0, 0.0),
        p=1.0,
    )
    far = A.Compose([standard], seed=0)(image=tile)["image"]
    assert np.abs(far.astype(int) - tile).mean() > 10
    outs = [A.Compose([he_stain(p=1.0)], seed=seed)(image=tile)["image"] for seed in range(5)]
    changes = [np.abs(o.astype(int) - tile).mean() for o in outs]
    assert max(changes) > 2  # it does augment
    assert max(changes) < 30  # ... without destroying the H&E look
    assert len({o.tobytes() for o in outs}) == 5


@pytest.mark.parametrize(
    ("name", "cls_name"),
    [
        ("colorjitter", "ColorJitter"),
        ("randstainna", "RandStainNA"),
        ("fda", "FourierDomainAdaptation"),
        ("hestain", "HEStain"),
        ("scanner", "ScannerSimulator"),
    ],
)
def test_single_names(name: str, cls_name: str, tile: np.ndarray) -> None:
    transform = style_augmentation(name, p=0.3)
    assert type(transform).__name__ == cls_name
    assert transform.p == 0.3
    seeded = style_augmentation(name.upper(), p=1.0, seed=1)
    assert isinstance(seeded, A.Compose)
    out = seeded(image=tile, fda_reference=[tile[::-1]])["image"]
    assert out.shape == tile.shape
    assert out.dtype == tile.dtype


def test_kwargs_are_routed_to_a_single_component(tile: np.ndarray) -> None:
    fda = style_augmentation("fda", beta_range=(0.03, 0.03), p=1.0)
    assert fda.beta_range == (0.03, 0.03)
    reference = np.ascontiguousarray(tile[::-1, ::-1])
    out = A.Compose([fda], seed=0)(image=tile, fda_reference=[reference])["image"]
    np.testing.assert_array_equal(out, fda_swap(tile, reference, 0.03))
    same = style_augmentation("fda", fda={"beta_range": (0.03, 0.03)})
    assert same.beta_range == (0.03, 0.03)
    jitter = style_augmentation("colorjitter", hue=0.01)
    assert jitter.hue == (-0.01, 0.01)
    scanner = style_augmentation("scanner", profiles=["warm-soft"])
    assert scanner.profile_names == ["warm-soft"]


def test_sequence_combination(tile: np.ndarray) -> None:
    combo = style_augmentation(
        "colorjitter + FDA",
        p=0.8,
        fda={"beta_range": (0.01, 0.02), "p": 0.4},
        colorjitter={"hue": 0.02},
    )
    assert isinstance(combo, A.Compose)
    jitter, fda = combo.transforms
    assert isinstance(jitter, A.ColorJitter)
    assert isinstance(fda, FourierDomainAdaptation)
    assert jitter.hue == (-0.02, 0.02)
    assert jitter.p == 0.8
    assert (fda.beta_range, fda.p) == ((0.01, 0.02), 0.4)
    first = style_augmentation("colorjitter+fda", p=1.0, seed=5)
    second = style_augmentation("colorjitter+fda", p=1.0, seed=5)
    refs = [np.ascontiguousarray(tile[::-1])]
    out1 = [first(image=tile, fda_reference=refs)["image"] for _ in range(3)]
    out2 = [second(image=tile, fda_reference=refs)["image"] for _ in range(3)]
    np.testing.assert_array_equal(np.stack(out1), np.stack(out2))
    assert not np.array_equal(out1[0], out1[1])


def test_oneof_combination(tile: np.ndarray) -> None:
    combo = style_augmentation("colorjitter+randstainna+scanner", combine="oneof", p=0.7, seed=2)
    assert isinstance(combo, A.Compose)
    (block,) = combo.transforms
    assert isinstance(block, A.OneOf)
    assert block.p == 0.7
    np.testing.assert_allclose(block.transforms_ps, [1 / 3] * 3)
    weighted = style_augmentation("colorjitter+scanner", combine="oneof", scanner={"p": 3.0 / 4})
    np.testing.assert_allclose(weighted.transforms[0].transforms_ps, [1 / 1.75, 0.75 / 1.75])
    assert combo(image=tile)["image"].shape == tile.shape


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: style_augmentation("cutmix"),
            ValueError,
            "valid values: colorjitter, randstainna, fda",
        ),
        (lambda: style_augmentation("fda+"), ValueError, "Empty component"),
        (lambda: style_augmentation("fda+fda"), ValueError, "more than once"),
        (lambda: style_augmentation(3), TypeError, "name must be a string"),
        (lambda: style_augmentation("colorjitter+fda", hue=0.1), ValueError, "per|dict named"),
        (lambda: style_augmentation("fda", colorjitter={"hue": 0.1}), ValueError, "not part of"),
        (lambda: style_augmentation("fda", fda=(0.1, 0.2)), TypeError, "must be a dict"),
        (lambda: style_augmentation("fda", beta=(0.1, 0.2)), TypeError, "Unknown argument.*beta"),
        (lambda: style_augmentation("fda", combine="all"), ValueError, "combine"),
        (lambda: style_augmentation("fda", p=1.5), ValueError, "p must be in"),
    ],
)
def test_factory_errors(call: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        call()


def test_loose_and_named_arguments_for_one_component() -> None:
    with pytest.raises(ValueError, match="given twice"):
        style_augmentation("fda", fda={"beta_range": (0.1, 0.2)}, beta_range=(0.1, 0.3))
    mixed = style_augmentation("fda", fda={"p": 0.2}, p=0.3, beta_range=(0.1, 0.2))
    assert (mixed.p, mixed.beta_range) == (0.2, (0.1, 0.2))  # the component's own p wins
