"""Refinement at the target resolution: regions agree within 1 target px; the affine alone not."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
from tiatoolbox.wsicore.wsireader import WSIReader

from tests.data.test_registration import synthetic_slide, write_pyramidal_tiff
from tia_scanner_robust.data.build_paired import (
    WSIScan,
    auto_thumb_mpp,
    build_paired_from_wsis,
    format_registration_report,
)
from tia_scanner_robust.data.registration import (
    RegistrationError,
    phase_shift,
    refine_region,
    region_residual,
)

MPP = 0.5
THUMB_MPP = 8.0  # 16 baseline px per thumbnail px
TARGET_MPP = 0.5
ANGLE_DEG = 5.0
SHIFT = (6.3, -4.7)  # baseline px: less than half a thumbnail pixel


def _affine() -> np.ndarray:
    theta = math.radians(ANGLE_DEG)
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s, SHIFT[0]], [s, c, SHIFT[1]]])


@pytest.fixture(scope="module")
def pair(he_image, tmp_path_factory) -> list[WSIScan]:
    """A slide of real tissue, and a rotated, sub-thumbnail-pixel shifted, recoloured copy."""
    folder = tmp_path_factory.mktemp("refine")
    reference = synthetic_slide(he_image)
    moving = cv2.warpAffine(
        reference, _affine(), (2000, 2000), flags=cv2.INTER_CUBIC, borderValue=(255, 255, 255)
    )
    levels = np.arange(256, dtype=np.float32)[:, None]
    lut = np.clip(levels * [0.93, 1.0, 1.06] + [5, 0, -3], 0, 255).astype(np.uint8)
    moving = cv2.LUT(moving, lut[:, None, :])
    return [
        WSIScan("s1", "AT2", write_pyramidal_tiff(folder / "AT2.tif", reference, MPP)),
        WSIScan("s1", "GT450", write_pyramidal_tiff(folder / "GT450.tif", moving, MPP)),
    ]


def _build(pair, out, **kwargs):
    kwargs = {
        "n_regions": 4,
        "region_um": 100.0,
        "target_mpp": TARGET_MPP,
        "thumb_mpp": THUMB_MPP,
        "progress": False,
        **kwargs,
    }
    return build_paired_from_wsis(pair, out, **kwargs)


def _centre_errors(report) -> list[float]:
    """Distance (target px) of each region's moving centre from where the known affine puts it."""
    matrix = _affine()
    errors = []
    for region in report["slides"]["s1"]["regions"]:
        ref_c = np.array(region["centres_baseline"]["AT2"])
        mov_c = np.array(region["centres_baseline"]["GT450"])
        expected = (ref_c - 0.5) @ matrix[:, :2].T + matrix[:, 2] + 0.5
        errors.append(float(np.linalg.norm(mov_c - expected)) * MPP / TARGET_MPP)
    return errors


def _image_errors(collection) -> list[float]:
    errors = []
    for specimen in collection.specimens:
        scans = collection.by_specimen(specimen)
        a, b = (cv2.imread(str(scans[s].path))[..., ::-1] for s in ("AT2", "GT450"))
        dx, dy, _ = phase_shift(np.ascontiguousarray(a), np.ascontiguousarray(b))
        errors.append(math.hypot(dx, dy))
    return errors


def test_refined_regions_agree_within_one_target_pixel(pair, tmp_path) -> None:
    collection, report = _build(pair, tmp_path / "refined")
    assert len(collection.specimens) == 4
    assert max(_centre_errors(report)) < 1.0  # against the known transform
    assert max(_image_errors(collection)) < 1.0  # and in the written pixels
    for region in report["slides"]["s1"]["regions"]:
        scan = region["scans"]["GT450"]
        assert scan["applied"] is True
        assert scan["residual_px"] < 1.0
        assert scan["residual_um"] == pytest.approx(scan["residual_px"] * TARGET_MPP, abs=1e-3)
    saved = json.loads((tmp_path / "refined" / "registration.json").read_text())
    assert saved["slides"]["s1"]["scans"]["GT450"]["median_region_residual_px"] < 1.0
    assert "reg_px" in format_registration_report(saved)


def test_without_refinement_the_regions_disagree(pair, tmp_path) -> None:
    # the thumbnail affine alone misses the sub-thumbnail-pixel shift: > 1 target px
    collection, report = _build(pair, tmp_path / "plain", refine=False, max_region_residual_px=50)
    assert max(_centre_errors(report)) > 1.0
    assert max(_image_errors(collection)) > 1.0
    residuals = [r["scans"]["GT450"]["residual_px"] for r in report["slides"]["s1"]["regions"]]
    assert max(residuals) > 1.0  # and the report says so
    assert all(not r["scans"]["GT450"]["applied"] for r in report["slides"]["s1"]["regions"])


def test_residual_failure_rule(pair, tmp_path) -> None:
    with pytest.raises(RegistrationError, match=r"median region residual above 0\.5 target px"):
        _build(pair, tmp_path / "strict", refine=False, max_region_residual_px=0.5)
    assert not list((tmp_path / "strict").rglob("*.png"))
    report = json.loads((tmp_path / "strict" / "registration.json").read_text())
    assert report["slides"]["s1"]["status"] == "failed"
    with pytest.warns(UserWarning, match="Skipping slide s1"), pytest.raises(RegistrationError):
        _build(pair, tmp_path / "skip", refine=False, max_region_residual_px=0.5, on_failure="skip")


def test_defaults_on_a_small_slide_choose_the_thumbnail_and_name_the_option(pair, tmp_path) -> None:
    reader = WSIReader.open(pair[0].path)
    # a 1 mm slide: 2048 px on the long side would be finer than the scan, so baseline
    assert auto_thumb_mpp(reader) == MPP
    # SCORPION defaults (10 regions of 800 um) cannot fit on a 1 mm slide: the message
    # says which option to change, and the suggested value works
    with (
        pytest.warns(UserWarning, match=r"pass region_um=(\d+) \(--region-um \1\)"),
        pytest.raises(RegistrationError, match="lower region_um / --region-um"),
    ):
        build_paired_from_wsis(pair, tmp_path / "defaults", progress=False)
    collection, report = build_paired_from_wsis(
        pair, tmp_path / "small", n_regions=3, region_um=200, target_mpp=1.0, progress=False
    )
    assert len(collection.specimens) == 3
    assert report["slides"]["s1"]["thumb_mpp"] == MPP
    assert max(_centre_errors(report)) < 1.0 * 1.0 / MPP


def test_refine_region_recovers_a_known_offset(pair) -> None:
    ref_reader, mov_reader = WSIReader.open(pair[0].path), WSIReader.open(pair[1].path)
    from tia_scanner_robust.data.registration import extract_aligned_region  # noqa: PLC0415

    centre = np.array([1000.0, 950.0])
    reference, _ = extract_aligned_region(ref_reader, tuple(centre), 160, TARGET_MPP)
    matrix = _affine()
    truth = (centre - 0.5) @ matrix[:, :2].T + matrix[:, 2] + 0.5
    start = truth + np.array([3.4, -2.2])  # a wrong start, as from a coarse thumbnail
    image, refined, info = refine_region(
        mov_reader, reference, tuple(start), 160, target_mpp=TARGET_MPP, linear=matrix[:, :2]
    )
    assert np.linalg.norm(np.array(refined) - truth) < 0.5
    assert info.residual_px < 0.5
    assert np.hypot(*info.correction_px) == pytest.approx(np.hypot(3.4, -2.2), abs=0.5)
    assert region_residual(reference, image) < 0.5


def test_cli_refinement_options(pair, tmp_path) -> None:
    from click.testing import CliRunner  # noqa: PLC0415

    from tia_scanner_robust.cli.build_paired import build_paired  # noqa: PLC0415

    listing = tmp_path / "listing.csv"
    listing.write_text(
        f"slide_id,scanner,path\ns1,AT2,{pair[0].path}\ns1,GT450,{pair[1].path}\n",
        encoding="utf-8",
    )
    args = ["wsis", str(listing), "--n-regions", "2", "--region-um", "100", "--target-mpp"]
    args += [str(TARGET_MPP), "--thumb-mpp", str(THUMB_MPP), "--no-progress"]
    strict = ["--no-refine", "--max-region-residual-px", "0.5"]
    result = CliRunner().invoke(build_paired, [*args, "-o", str(tmp_path / "a"), *strict])
    assert result.exit_code != 0
    assert "median region residual above 0.5 target px" in result.output
    result = CliRunner().invoke(build_paired, [*args, "-o", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    assert "reg_px" in result.output
