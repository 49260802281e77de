"""Registration of multi-scanner WSIs on a synthetic pair with a known affine."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from tiatoolbox.wsicore.wsireader import TIFFWSIReader, WSIReader

from tia_scanner_robust.cli.build_paired import build_paired
from tia_scanner_robust.data.build_paired import WSIScan, build_paired_from_wsis, read_wsi_listing
from tia_scanner_robust.data.manifest import read_manifest
from tia_scanner_robust.data.registration import (
    AffineRegistration,
    RegistrationError,
    check_registration,
    estimate_affine,
    sample_region_centres,
    tissue_mask,
)
from tia_scanner_robust.data.scorpion import read_scorpion

if TYPE_CHECKING:
    from pathlib import Path

REF_MPP = 0.5
MOV_MPP = 0.4
THUMB_MPP = 2.0
ANGLE_DEG = 3.0
SHIFT = np.array([60.0, -40.0])  # moving baseline pixels


def write_pyramidal_tiff(path: Path, image: np.ndarray, mpp: float) -> Path:
    """Tiled pyramidal RGB TIFF (sub-IFD levels) with mpp in the resolution tags."""
    levels = [image]
    while min(levels[-1].shape[:2]) > 512:
        levels.append(cv2.resize(levels[-1], None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA))
    pixels_per_cm = 1e4 / mpp
    with tifffile.TiffWriter(path) as tif:
        tif.write(
            levels[0],
            tile=(256, 256),
            photometric="rgb",
            subifds=len(levels) - 1,
            resolution=(pixels_per_cm, pixels_per_cm),
            resolutionunit="CENTIMETER",
            compression="zlib",
        )
        for i, level in enumerate(levels[1:], start=1):
            res = pixels_per_cm / 2**i
            tif.write(
                level,
                tile=(256, 256),
                photometric="rgb",
                subfiletype=1,
                resolution=(res, res),
                resolutionunit="CENTIMETER",
                compression="zlib",
            )
    return path


def synthetic_slide(he_image: np.ndarray, size: int = 2000) -> np.ndarray:
    """Tissue-like slide: the bundled H&E enlarged on white background, plus a smaller piece."""
    slide = np.full((size, size, 3), 255, np.uint8)
    slide[300:1600, 350:1650] = cv2.resize(he_image, (1300, 1300), interpolation=cv2.INTER_CUBIC)
    slide[1650:1900, 200:700] = he_image[:250, :500]
    return slide


def known_baseline_affine() -> np.ndarray:
    """Reference baseline index coords -> moving baseline index coords."""
    scale = REF_MPP / MOV_MPP
    theta = math.radians(ANGLE_DEG)
    rotation = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    return np.hstack([scale * rotation, SHIFT[:, None]])


def expected_thumbnail_points(points: np.ndarray) -> np.ndarray:
    """Map reference thumbnail index coords to moving thumbnail index coords exactly."""
    matrix = known_baseline_affine()
    k_ref, k_mov = THUMB_MPP / REF_MPP, THUMB_MPP / MOV_MPP
    base = (points + 0.5) * k_ref - 0.5
    moved = base @ matrix[:, :2].T + matrix[:, 2]
    return (moved + 0.5) / k_mov - 0.5


@pytest.fixture(scope="module")
def wsi_pair(he_image, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("wsis")
    reference = synthetic_slide(he_image)
    size = round(reference.shape[0] * REF_MPP / MOV_MPP)
    moving = cv2.warpAffine(
        reference, known_baseline_affine(), (size, size), borderValue=(255, 255, 255)
    )
    # A scanner-like colour change (per-channel gain and offset, as a lookup table).
    levels = np.arange(256, dtype=np.float32)[:, None]
    lut = np.clip(levels * [0.93, 1.0, 1.06] + [5, 0, -3], 0, 255).astype(np.uint8)
    moving = cv2.LUT(moving, lut[:, None, :])
    mirrored = reference[:, ::-1]  # no similarity transform maps it onto the reference
    return {
        "ref": write_pyramidal_tiff(folder / "AT2.tif", reference, REF_MPP),
        "mov": write_pyramidal_tiff(folder / "GT450.tif", moving, MOV_MPP),
        "bad": write_pyramidal_tiff(folder / "bad.tif", np.ascontiguousarray(mirrored), REF_MPP),
        "folder": folder,
    }


@pytest.fixture(scope="module")
def built(wsi_pair, tmp_path_factory):
    out = tmp_path_factory.mktemp("paired") / "out"
    scans = [
        WSIScan("slide_1", "AT2", wsi_pair["ref"]),
        WSIScan("slide_1", "GT450", wsi_pair["mov"]),
    ]
    collection, report = build_paired_from_wsis(
        scans,
        out,
        n_regions=3,
        region_um=150.0,
        target_mpp=1.0,
        thumb_mpp=THUMB_MPP,
        progress=False,
    )
    return out, collection, report


def test_tiatoolbox_reads_synthetic_wsi_with_mpp(wsi_pair):
    reader = WSIReader.open(wsi_pair["mov"])
    assert isinstance(reader, TIFFWSIReader)
    np.testing.assert_allclose(reader.info.mpp, [MOV_MPP, MOV_MPP], rtol=1e-6)
    assert tuple(reader.info.slide_dimensions) == (2500, 2500)
    assert len(reader.info.level_dimensions) >= 3


def test_estimate_affine_recovers_known_transform(wsi_pair):
    ref = WSIReader.open(wsi_pair["ref"]).slide_thumbnail(resolution=THUMB_MPP, units="mpp")
    mov = WSIReader.open(wsi_pair["mov"]).slide_thumbnail(resolution=THUMB_MPP, units="mpp")
    reg = estimate_affine(
        ref,
        mov,
        reference_mask=tissue_mask(ref),
        moving_mask=tissue_mask(mov),
        thumb_mpp=THUMB_MPP,
    )
    grid = np.stack(np.meshgrid(np.linspace(90, 410, 5), np.linspace(90, 410, 5)), -1)
    points = grid.reshape(-1, 2)
    error = np.linalg.norm(reg.transform(points) - expected_thumbnail_points(points), axis=1)
    assert error.max() < 2.0
    assert reg.rotation_deg == pytest.approx(ANGLE_DEG, abs=0.3)
    assert reg.scale == pytest.approx(1.0, abs=0.01)
    assert reg.n_inliers >= 20
    assert reg.rms_px < 2.0
    assert reg.rms_um == pytest.approx(reg.rms_px * THUMB_MPP)
    assert check_registration(reg) is None


def test_estimate_affine_is_deterministic(he_image):
    reference = np.full((400, 400, 3), 255, np.uint8)
    reference[50:350, 50:350] = he_image[:600:2, :600:2]
    shifted = np.roll(reference, (7, -5), axis=(0, 1))
    first = estimate_affine(reference, shifted, n_features=1000, seed=3)
    second = estimate_affine(reference, shifted, n_features=1000, seed=3)
    np.testing.assert_array_equal(first.matrix, second.matrix)
    np.testing.assert_allclose(first.matrix[:, 2], [-5, 7], atol=0.5)


def test_build_writes_aligned_regions(built):
    _, collection, report = built
    assert collection.scanners == ["AT2", "GT450"]
    assert collection.specimens == ["slide_1/sample_1", "slide_1/sample_2", "slide_1/sample_3"]
    for specimen in collection.specimens:
        pair = collection.by_specimen(specimen)
        a, b = (cv2.cvtColor(cv2.imread(str(s.path)), cv2.COLOR_BGR2GRAY) for s in pair.values())
        assert a.shape == b.shape == (150, 150)
        shift, _ = cv2.phaseCorrelate(a.astype(np.float32), b.astype(np.float32))
        assert np.hypot(*shift) < 2.0
        ncc = np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1]
        assert ncc > 0.9
    # Region centres in the moving scan's baseline match the known transform (<= 2 thumb px).
    matrix = known_baseline_affine()
    for region in report["slides"]["slide_1"]["regions"]:
        ref_c = np.array(region["centres_baseline"]["AT2"])
        mov_c = np.array(region["centres_baseline"]["GT450"])
        expected = (ref_c - 0.5) @ matrix[:, :2].T + matrix[:, 2] + 0.5
        assert np.linalg.norm(mov_c - expected) < 2 * THUMB_MPP / MOV_MPP


def test_build_outputs_manifest_report_and_layout(built):
    out, collection, _ = built
    saved = json.loads((out / "registration.json").read_text())
    scan = saved["slides"]["slide_1"]["scans"]["GT450"]
    assert saved["slides"]["slide_1"]["status"] == "ok"
    assert scan["n_inliers"] >= 20
    assert scan["rms_um"] == pytest.approx(scan["rms_px"] * THUMB_MPP, rel=1e-3)
    assert saved["parameters"]["region_px"] == 150
    assert (out / "slide_1" / "sample_2" / "GT450.png").is_file()
    from_manifest = read_manifest(out / "manifest.csv")
    assert [s.path for s in from_manifest] == [s.path for s in collection]
    assert all(s.mpp == 1.0 for s in from_manifest)
    assert read_scorpion(out).scanners == ["AT2", "GT450"]


def test_failed_registration_error_and_skip(wsi_pair, tmp_path):
    scans = [
        WSIScan("slide_1", "AT2", wsi_pair["ref"]),
        WSIScan("slide_1", "GT450", wsi_pair["mov"]),
        WSIScan("slide_2", "AT2", wsi_pair["ref"]),
        WSIScan("slide_2", "GT450", wsi_pair["bad"]),
    ]
    kwargs = {"n_regions": 1, "region_um": 100.0, "target_mpp": 2.0, "thumb_mpp": 4.0}
    with pytest.raises(RegistrationError, match=r"failed for 1 slide\(s\): slide_2: GT450"):
        build_paired_from_wsis(scans, tmp_path / "a", progress=False, **kwargs)
    report = json.loads((tmp_path / "a" / "registration.json").read_text())
    assert report["slides"]["slide_2"]["status"] == "failed"
    assert not list((tmp_path / "a").rglob("*.png"))  # nothing extracted
    with pytest.warns(UserWarning, match="Skipping slide slide_2"):
        collection, report = build_paired_from_wsis(
            scans, tmp_path / "b", on_failure="skip", progress=False, **kwargs
        )
    assert collection.specimens == ["slide_1/sample_1"]
    assert report["slides"]["slide_2"]["reason"]


@pytest.mark.parametrize(
    ("matrix", "inliers", "rms", "expected"),
    [
        ([[1.0, 0, 0], [0, 1.0, 0]], 5, 0.5, "too few RANSAC inliers"),
        ([[1.0, 0, 0], [0, 1.0, 0]], 50, 3.5, "residual too large"),
        ([[1.5, 0, 0], [0, 1.5, 0]], 50, 0.5, "scale 1.500"),
        ([[np.nan, 0, 0], [0, 1.0, 0]], 50, 0.5, "not a finite"),
        ([[1.0, 0, 0], [1.0, 0.0, 0]], 50, 0.5, "degenerate"),
    ],
)
def test_check_registration_failure_rule(matrix, inliers, rms, expected):
    reg = AffineRegistration(np.array(matrix), (100, 100), 80, inliers, rms, THUMB_MPP)
    assert expected in check_registration(reg)


def test_sample_region_centres_in_tissue_and_disjoint():
    mask = np.zeros((200, 300), bool)
    mask[50:150, 50:250] = True
    centres = sample_region_centres(mask, 50, 40, seed=1)
    assert len(centres) >= 4
    lo, hi = centres - 20, centres + 20
    # Every region holds at least half tissue ...
    for (x0, y0), (x1, y1) in zip(lo, hi, strict=True):
        assert mask[int(y0) : int(y1), int(x0) : int(x1)].mean() >= 0.5
    # ... and no two regions overlap.
    gaps = np.abs(centres[:, None] - centres[None]).max(-1) + np.eye(len(centres)) * 1e9
    assert gaps.min() >= 40
    np.testing.assert_array_equal(centres, sample_region_centres(mask, 50, 40, seed=1))


def test_read_wsi_listing_csv_and_folder(wsi_pair, tmp_path):
    listing = tmp_path / "listing.csv"
    listing.write_text(
        f"slide_id,scanner,path,mpp\ns1,AT2,{wsi_pair['ref']},\ns1,GT450,{wsi_pair['mov']},0.4\n"
    )
    scans = read_wsi_listing(listing)
    assert [(s.slide_id, s.scanner, s.mpp) for s in scans] == [
        ("s1", "AT2", None),
        ("s1", "GT450", 0.4),
    ]
    folder = tmp_path / "tree" / "s1"
    folder.mkdir(parents=True)
    (folder / "AT2.tif").symlink_to(wsi_pair["ref"])
    (folder / "notes.txt").write_text("ignored")
    assert [s.scanner for s in read_wsi_listing(tmp_path / "tree")] == ["AT2"]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("slide,scanner,path\n", "missing \\['slide_id'\\], unknown \\['slide'\\]"),
        ("slide_id,scanner,path\ns1,A,{p}\ns1,A,{p}\n", "two scans for scanner 'A'"),
        ("slide_id,scanner,path\ns1,A,missing.svs\n", "do not exist: line 2: .*missing.svs"),
        ("slide_id,scanner,path,mpp\ns1,A,{p},abc\n", "line 2, column 'mpp'"),
        ("slide_id,scanner,path\n../up,A,{p}\n", "single folder name"),
    ],
)
def test_read_wsi_listing_errors(wsi_pair, tmp_path, content, match):
    listing = tmp_path / "listing.csv"
    listing.write_text(content.format(p=wsi_pair["ref"]))
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        read_wsi_listing(listing)


def test_incomplete_slides_and_nonempty_out_dir(wsi_pair, tmp_path):
    scans = [
        WSIScan("s1", "AT2", wsi_pair["ref"]),
        WSIScan("s1", "GT450", wsi_pair["mov"]),
        WSIScan("s2", "AT2", wsi_pair["ref"]),
    ]
    with pytest.raises(ValueError, match=r"s2 \(missing: GT450\)"):
        build_paired_from_wsis(scans, tmp_path / "out", progress=False)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    with pytest.raises(ValueError, match="not empty"):
        build_paired_from_wsis(scans[:2], tmp_path / "full", progress=False)


def test_cli_wsis_prints_report(wsi_pair, tmp_path):
    listing = tmp_path / "listing.csv"
    listing.write_text(
        f"slide_id,scanner,path\nslide_1,AT2,{wsi_pair['ref']}\nslide_1,GT450,{wsi_pair['mov']}\n"
    )
    args = ["wsis", str(listing), str(tmp_path / "out"), "--n-regions", "1", "--region-um", "100"]
    args += ["--target-mpp", "2", "--thumb-mpp", str(THUMB_MPP), "--no-progress"]
    result = CliRunner().invoke(build_paired, args)
    assert result.exit_code == 0, result.output
    assert "GT450" in result.output
    assert "rms_um" in result.output
    assert "1 specimens x 2 scanners" in result.output
