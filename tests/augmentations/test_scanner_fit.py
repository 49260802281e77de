"""Fitting a scanner profile from pairs: known parameters are recovered, bad data refused."""

from __future__ import annotations

from typing import TYPE_CHECKING

import albumentations as A  # noqa: N812 - the library's documented alias
import numpy as np
import pytest

from tia_scanner_robust._io import atomic_write_image
from tia_scanner_robust.augmentations.scanner import (
    ScannerProfile,
    ScannerSimulator,
    get_scanner_profile,
    load_scanner_profile,
    simulate_scanner,
)
from tia_scanner_robust.augmentations.scanner_fit import (
    estimate_jpeg_quality,
    estimate_noise,
    fit_scanner_profile,
    pair_alignment,
)
from tia_scanner_robust.augmentations.scanner_realism import (
    realism_panel,
    save_realism_report,
    scanner_realism_report,
)

if TYPE_CHECKING:
    from pathlib import Path

#: A known scanner: bluer, lighter, less saturated, lower contrast, softer, noisy.
TRUTH = ScannerProfile(
    "truth",
    color_matrix=((0.95, 0.05, 0.0), (0.03, 0.92, 0.05), (0.0, 0.06, 0.94)),
    white_balance=(1.0, 1.02, 1.12),
    gamma=(0.8, 0.85, 0.9),
    levels=(0.08, 1.0),
    saturation=0.85,
    blur_sigma=0.9,
    noise_read=0.004,
)
COLOUR_FIELDS = ("color_matrix", "white_balance", "gamma", "levels", "saturation")
SIZE = 224
CORNERS = ((0, 0), (0, 520), (330, 260), (560, 0), (560, 520))


def _pairs(image: np.ndarray, target: np.ndarray, shift: int) -> list[tuple[np.ndarray, ...]]:
    """Reference crops and the target's crops ``shift`` px lower (a misregistration)."""
    return [
        (image[y : y + SIZE, x : x + SIZE], target[y + shift : y + shift + SIZE, x : x + SIZE])
        for y, x in CORNERS
    ]


def _colour_only(profile: ScannerProfile) -> ScannerProfile:
    return ScannerProfile("c", **{k: getattr(profile, k) for k in COLOUR_FIELDS})


@pytest.fixture(scope="module")
def truth_scan(he_image: np.ndarray) -> np.ndarray:
    return simulate_scanner(he_image, TRUTH)


@pytest.fixture(scope="module", params=[0, 2], ids=["aligned", "2px-misaligned"])
def fitted(request, he_image, truth_scan):
    pairs = _pairs(he_image, truth_scan, request.param)
    return request.param, pairs, fit_scanner_profile(pairs[:4], name="B")


def test_fit_recovers_colour_tone_blur_and_noise(fitted, he_image) -> None:
    shift, _, fit = fitted
    profile = fit.profile
    # the colour/tone function agrees with the truth on real tissue colours
    pixels = np.ascontiguousarray(he_image.reshape(1, -1, 3)[:, ::7])
    expected = simulate_scanner(pixels, _colour_only(TRUTH)).astype(float)
    got = simulate_scanner(pixels, _colour_only(profile)).astype(float)
    assert np.abs(expected - got).mean() < 1.5
    assert np.percentile(np.abs(expected - got), 99) < 6
    # and the parameters themselves are close
    np.testing.assert_allclose(profile.gamma, TRUTH.gamma, atol=0.06)
    assert profile.levels[0] == pytest.approx(TRUTH.levels[0], abs=0.04)
    assert profile.saturation == pytest.approx(TRUTH.saturation, abs=0.06)
    assert profile.blur_sigma == pytest.approx(TRUTH.blur_sigma, abs=0.15)
    assert profile.sharpen_amount == 0
    assert profile.noise_read == pytest.approx(TRUTH.noise_read, rel=0.35)
    assert profile.shift == (0.0, 0.0)
    # the misregistration was seen (target content lies `shift` px lower)
    dy = np.array(fit.diagnostics["pair_shift_px"])[:, 1]
    np.testing.assert_allclose(dy, -shift, atol=0.3)


def test_fit_without_colour_misfit_gives_identity(he_image) -> None:
    pairs = _pairs(he_image, he_image, 0)[:2]
    profile = fit_scanner_profile(pairs, fit_noise=False).profile
    np.testing.assert_allclose(profile.gamma, 1.0, atol=0.03)
    np.testing.assert_allclose(profile.color_matrix, np.eye(3), atol=0.05)
    assert profile.blur_sigma < 0.2
    assert profile.sharpen_amount < 0.1


def test_fit_recovers_sharpening(he_image) -> None:
    sharper = ScannerProfile("sharper", sharpen_amount=0.6, sharpen_sigma=1.0)
    pairs = _pairs(he_image, simulate_scanner(he_image, sharper), 1)[:3]
    profile = fit_scanner_profile(pairs, fit_noise=False).profile
    assert profile.blur_sigma == 0
    assert profile.sharpen_amount == pytest.approx(0.6, abs=0.2)


def test_realism_report_on_held_back_pairs(fitted, tmp_path: Path) -> None:
    _, pairs, fit = fitted
    held = pairs[4:]
    report = scanner_realism_report(fit.profile, held, names=["held"])
    summary = report["summary"]
    assert summary["mad_reference_vs_real"] > 10  # the scanners differ ...
    assert (
        summary["mad_simulated_vs_real"] < 0.3 * summary["mad_reference_vs_real"]
    )  # ... explained
    sim, real = summary["simulated"], summary["real"]
    np.testing.assert_allclose(sim["lab_mean"], real["lab_mean"], atol=1.5)
    np.testing.assert_allclose(sim["lab_std"], real["lab_std"], atol=1.0)
    assert sim["saturation"] == pytest.approx(real["saturation"], abs=0.02)
    assert sim["sharpness"] == pytest.approx(real["sharpness"], rel=0.25)
    assert summary["reference"]["sharpness"] > real["sharpness"]  # the target is softer
    png = realism_panel(fit.profile, held, report)
    json_path, png_path = save_realism_report(report, tmp_path / "r.json", png)
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json_path.is_file()


def test_yaml_profile_is_accepted_everywhere(fitted, he_tile, tmp_path: Path) -> None:
    _, _, fit = fitted
    path = fit.save(tmp_path / "fitted.yaml", reference="A", target="B")
    loaded = load_scanner_profile(path)
    assert loaded == fit.profile
    assert get_scanner_profile(str(path)) == fit.profile
    expected = simulate_scanner(he_tile, fit.profile)
    np.testing.assert_array_equal(simulate_scanner(he_tile, path), expected)
    np.testing.assert_array_equal(simulate_scanner(he_tile, str(path)), expected)
    transform = ScannerSimulator([str(path)], p=1.0)
    np.testing.assert_array_equal(transform(image=he_tile)["image"], expected)
    restored = A.from_dict(A.to_dict(A.Compose([transform])))  # stored as a parameter dict
    assert restored.transforms[0].profile_names == ["B"]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("profile: {name: x, blurr: 1}\n", r"unknown scanner profile field\(s\) \['blurr'\]"),
        ("profile: {name: x, gamma: [1, 2]}\n", "gamma must have 3 values"),
        ("profile: [1, 2]\n", "must be a mapping"),
        ("profile: {name: x}\nextra: 1\n", r"unknown top-level key\(s\) \['extra'\]"),
        ("profile: {name: x\n", "not a valid YAML"),
    ],
)
def test_bad_profile_files(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(ValueError, match=match) as info:
        simulate_scanner(np.zeros((8, 8, 3), np.uint8), path)
    assert "bad.yaml" in str(info.value)
    with pytest.raises(FileNotFoundError, match="not found"):
        get_scanner_profile(str(tmp_path / "missing.yaml"))


def test_refuses_unpaired_and_too_small_data(he_image) -> None:
    a, b = he_image[:256, :256], he_image[600:856, 600:856]
    with pytest.raises(ValueError, match="do not show the same tissue"):
        fit_scanner_profile([(a, b), (b, a)])
    with pytest.raises(ValueError, match="at least 64 px per side"):
        fit_scanner_profile([(a[:40, :40], a[:40, :40])])
    with pytest.raises(ValueError, match="differ in size"):
        fit_scanner_profile([(a, a[:200])])
    with pytest.raises(ValueError, match="too little data"):
        fit_scanner_profile([(a[:100, :100], a[:100, :100])])
    with pytest.raises(ValueError, match="non-empty sequence"):
        fit_scanner_profile([])


def test_alignment_noise_and_jpeg_helpers(he_image, tmp_path: Path) -> None:
    dx, dy, corr = pair_alignment(he_image[:200, :200], he_image[:200, 3:203])
    assert (round(dx), round(dy)) == (-3, 0)
    assert corr > 0.95
    rng = np.random.default_rng(0)
    flat = np.full((128, 128, 3), 0.5, np.float32)
    assert estimate_noise(flat) == 0
    assert estimate_noise(flat + 0.01 * rng.standard_normal((128, 128, 1)).astype(np.float32)) == (
        pytest.approx(0.01, rel=0.1)
    )
    for quality in (55, 90):
        path = atomic_write_image(tmp_path / f"q{quality}.jpg", he_image[:64, :64], quality)
        assert estimate_jpeg_quality(path) == quality
    assert estimate_jpeg_quality(atomic_write_image(tmp_path / "x.png", he_image[:8, :8])) is None


def test_shipped_profiles_follow_real_scanner_directions(he_image) -> None:
    from tia_scanner_robust.augmentations.scanner import SCANNER_PROFILES  # noqa: PLC0415
    from tia_scanner_robust.augmentations.scanner_legacy import SCANNER_PROFILES_V1  # noqa: PLC0415
    from tia_scanner_robust.augmentations.scanner_realism import image_statistics  # noqa: PLC0415

    tile = np.ascontiguousarray(he_image[200:584, 200:584])
    scans = {name: simulate_scanner(tile, name) for name in SCANNER_PROFILES}
    stats = {name: image_statistics(scan) for name, scan in scans.items()}
    ref = stats["reference"]

    def blue_minus_red(name: str) -> float:
        mean = scans[name].reshape(-1, 3).mean(axis=0)
        return float(mean[2] - mean[0])

    # the typical real direction: lighter, bluer, less saturated, lower contrast, softer
    pale = stats["pale-low-contrast"]
    assert pale["lab_mean"][0] > ref["lab_mean"][0] + 10
    assert blue_minus_red("pale-low-contrast") > blue_minus_red("reference") + 10
    assert pale["saturation"] < ref["saturation"] - 0.1
    assert pale["lab_std"][0] < 0.75 * ref["lab_std"][0]
    assert pale["sharpness"] < ref["sharpness"]
    assert blue_minus_red("cool-sharp") > blue_minus_red("reference") + 10
    # blur no stronger than real scans, sharpening mild
    for name, profile in SCANNER_PROFILES.items():
        assert profile.blur_sigma <= 0.35, name
        assert profile.sharpen_amount <= 0.2, name
        assert 0.8 < stats[name]["sharpness"] / ref["sharpness"] < 1.3, name
    # the version-1 parameters stay available under the same names
    assert list(SCANNER_PROFILES_V1) == list(SCANNER_PROFILES)
    assert SCANNER_PROFILES_V1["warm-soft"].blur_sigma == 1.0


def test_profile_file_in_paired_scans(he_tile, tmp_path: Path) -> None:
    from tia_scanner_robust.augmentations.scanner import (  # noqa: PLC0415
        save_scanner_profile,
        simulate_paired_scans,
    )

    path = save_scanner_profile(ScannerProfile("mine", levels=(0.2, 1.0)), tmp_path / "m.yml")
    scans = simulate_paired_scans(he_tile[:64, :64], ["reference", path])
    assert list(scans) == ["reference", "mine"]
    flat = tmp_path / "flat.yaml"
    flat.write_text("gamma: [0.9, 0.9, 0.9]\n")  # flat mapping, name from the file
    assert load_scanner_profile(flat).name == "flat"
