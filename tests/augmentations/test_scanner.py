"""Tests of the scanner simulator: determinism, realism, alignment, each stage, the transform."""

from __future__ import annotations

import json
from pathlib import Path

import albumentations as A  # noqa: N812 - the library's documented alias
import cv2
import numpy as np
import pytest

from tia_scanner_robust._validation import read_rgb_image
from tia_scanner_robust.augmentations.scanner import (
    MAX_SHIFT_PX,
    SCANNER_PROFILES,
    ScannerProfile,
    ScannerSimulator,
    _srgb_decode,
    _srgb_encode,
    get_scanner_profile,
    simulate_paired_scans,
    simulate_scanner,
)

# Documented realism ranges (docs/augmentations/scanner.md), measured on the
# bundled image: mean absolute per-pixel difference vs the reference profile.
MAD_RANGE = (8.0, 50.0)


@pytest.fixture(scope="module")
def tile(he_image: np.ndarray) -> np.ndarray:
    """A 192x192 crop with nuclei, stroma and background."""
    return np.ascontiguousarray(he_image[400:592, 150:342])


@pytest.fixture(scope="module")
def scans(he_image: np.ndarray) -> dict[str, np.ndarray]:
    """Every profile applied to the whole bundled image (as in the docs table)."""
    return simulate_paired_scans(he_image)


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def _high_frequency_energy(image: np.ndarray) -> float:
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float64)
    return float((cv2.Laplacian(gray, cv2.CV_64F) ** 2).mean())


# --------------------------------------------------------------------------- #
# Profiles
# --------------------------------------------------------------------------- #
def test_profile_registry() -> None:
    assert len(SCANNER_PROFILES) >= 5
    names = list(SCANNER_PROFILES)
    assert names[0] == "reference"
    ref = SCANNER_PROFILES["reference"]
    # the reference is neutral in colour, tone and optics
    assert ref.color_matrix == ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
    assert ref.white_balance == ref.gamma == (1.0, 1.0, 1.0)
    assert ref.blur_sigma == ref.sharpen_amount == 0.0
    for name, profile in SCANNER_PROFILES.items():
        assert profile.name == name
        assert profile.description
        assert max(abs(s) for s in profile.shift) <= 0.5
    with pytest.raises(AttributeError):
        ref.name = "x"  # frozen


def test_profile_normalises_sequences_and_round_trips() -> None:
    p = ScannerProfile(
        "x", color_matrix=np.eye(3), gamma=[1, 2, 3], shift=[0.1, 0.2], jpeg_quality=np.int64(80)
    )
    assert p.color_matrix == ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
    assert p.gamma == (1.0, 2.0, 3.0)
    assert isinstance(p.jpeg_quality, int)
    assert ScannerProfile(**json.loads(json.dumps(p.to_dict()))) == p


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": ""}, "name must be a non-empty string"),
        ({"color_matrix": ((1, 0), (0, 1))}, "color_matrix must be a finite 3x3"),
        ({"color_matrix": "abc"}, "color_matrix must be a finite 3x3"),
        ({"white_balance": (1.0, 0.0, 1.0)}, "white_balance gains must be > 0"),
        ({"white_balance": (1.0, 1.0)}, "white_balance must have 3 values"),
        ({"gamma": (1.0, -1.0, 1.0)}, "gamma must be > 0"),
        ({"levels": (0.5, 0.4)}, "levels must satisfy"),
        ({"saturation": -0.1}, "saturation must be >= 0"),
        ({"blur_sigma": float("nan")}, "blur_sigma must be >= 0"),
        ({"sharpen_sigma": 0.0}, "sharpen_sigma must be > 0"),
        ({"sharpen_sigma": -1.0}, "sharpen_sigma must be >= 0"),
        ({"noise_shot": -1e-4}, "noise_shot must be >= 0"),
        ({"jpeg_quality": 0}, "jpeg_quality must be in"),
        ({"jpeg_quality": 101}, "jpeg_quality must be in"),
        ({"shift": (MAX_SHIFT_PX + 0.1, 0.0)}, "shift must be at most"),
    ],
)
def test_profile_validation(kwargs: dict, match: str) -> None:
    kwargs = {"name": "bad", **kwargs}
    with pytest.raises(ValueError, match=match):
        ScannerProfile(**kwargs)


def test_profile_type_errors() -> None:
    with pytest.raises(TypeError, match="jpeg_quality must be an int"):
        ScannerProfile("bad", jpeg_quality=90.5)
    with pytest.raises(TypeError, match="saturation must be a number"):
        ScannerProfile("bad", saturation="high")


def test_get_scanner_profile_errors() -> None:
    assert get_scanner_profile("warm-soft") is SCANNER_PROFILES["warm-soft"]
    with pytest.raises(ValueError, match="Unknown scanner profile 'nope'; valid values: reference"):
        get_scanner_profile("nope")
    with pytest.raises(TypeError, match="profile must be a profile name"):
        get_scanner_profile(3)


# --------------------------------------------------------------------------- #
# Determinism, dtype, input validation
# --------------------------------------------------------------------------- #
def test_determinism_and_profiles_differ(tile: np.ndarray) -> None:
    outputs = {}
    for name in SCANNER_PROFILES:
        first = simulate_scanner(tile, name)
        second = simulate_scanner(tile.copy(), SCANNER_PROFILES[name])
        assert first.dtype == np.uint8
        assert first.shape == tile.shape
        assert first.tobytes() == second.tobytes()
        outputs[name] = first
    names = list(outputs)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not np.array_equal(outputs[a], outputs[b]), (a, b)


def test_noise_depends_on_content_and_profile_not_on_global_state(tile: np.ndarray) -> None:
    noisy = ScannerProfile("noisy", noise_read=0.02)
    np.random.seed(1)  # noqa: NPY002 - global state must not matter
    a = simulate_scanner(tile, noisy)
    np.random.seed(2)  # noqa: NPY002
    b = simulate_scanner(tile, noisy)
    assert np.array_equal(a, b)
    # another profile with the same parameters but another name draws other noise
    other = simulate_scanner(tile, ScannerProfile("noisy-2", noise_read=0.02))
    assert not np.array_equal(a, other)
    # other content -> other noise field (not the same residual pattern)
    flipped = simulate_scanner(np.ascontiguousarray(tile[::-1]), noisy)[::-1]
    assert not np.array_equal(a, flipped)


def test_input_not_modified(tile: np.ndarray) -> None:
    before = tile.copy()
    simulate_scanner(tile, "pale-low-contrast")
    assert np.array_equal(tile, before)


def test_float32_matches_uint8(tile: np.ndarray) -> None:
    as_float = tile.astype(np.float32) / 255.0
    for name in ("cool-sharp", "pale-low-contrast"):
        out = simulate_scanner(as_float, name)
        assert out.dtype == np.float32
        assert out.min() >= 0.0
        assert out.max() <= 1.0
        # same pipeline; only the noise draw (seeded from other bytes) differs
        assert _mad(out * 255.0, simulate_scanner(tile, name)) < 3.0
    neutral = simulate_scanner(as_float, ScannerProfile("identity"))
    assert neutral.dtype == np.float32
    np.testing.assert_allclose(neutral, as_float, atol=1e-5)


@pytest.mark.parametrize(
    ("image", "error", "match"),
    [
        (np.zeros((8, 8), np.uint8), ValueError, "grayscale"),
        (np.zeros((8, 8, 4), np.uint8), ValueError, "RGBA"),
        (np.zeros((8, 8, 3), np.float64), TypeError, "dtype uint8 or float32"),
        (np.full((8, 8, 3), np.nan, np.float32), ValueError, "NaN"),
        ([[1, 2, 3]], TypeError, "numpy array"),
    ],
)
def test_bad_input(image: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        simulate_scanner(image, "reference")


def test_unknown_profile_name(tile: np.ndarray) -> None:
    with pytest.raises(ValueError, match="Unknown scanner profile"):
        simulate_scanner(tile, "vendor-x")


# --------------------------------------------------------------------------- #
# Each stage does what it claims
# --------------------------------------------------------------------------- #
def test_srgb_transfer_functions_match_the_standard() -> None:
    x = np.linspace(0.0, 1.0, 1001, dtype=np.float32)
    expected = np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)
    np.testing.assert_allclose(_srgb_decode(x), expected, atol=1e-6)
    np.testing.assert_allclose(_srgb_encode(_srgb_decode(x)), x, atol=1e-6)
    assert _srgb_decode(np.float32([0.5]))[0] == pytest.approx(0.21404, abs=1e-5)


def test_identity_profile_is_identity(tile: np.ndarray) -> None:
    assert np.array_equal(simulate_scanner(tile, ScannerProfile("identity")), tile)
    rng = np.random.default_rng(0)
    random_image = rng.integers(0, 256, (37, 23, 3), dtype=np.uint8)
    assert np.array_equal(simulate_scanner(random_image, ScannerProfile("identity")), random_image)


def test_colour_matrix_and_white_balance_in_linear_light() -> None:
    # a flat patch: output = encode(M @ (w * decode(input)))
    value = np.array([200, 120, 170], np.uint8)
    image = np.broadcast_to(value, (8, 8, 3)).copy()
    matrix = ((0.9, 0.1, 0.0), (0.05, 0.9, 0.05), (0.0, 0.2, 0.8))
    gains = (0.95, 0.9, 1.0)
    out = simulate_scanner(image, ScannerProfile("m", color_matrix=matrix, white_balance=gains))
    linear = _srgb_decode(value.astype(np.float32) / 255.0) * np.asarray(gains)
    expected = np.rint(_srgb_encode(np.asarray(matrix) @ linear) * 255.0)
    assert np.array_equal(out[0, 0], expected.astype(np.uint8))
    assert (out == out[0, 0]).all()


def test_tone_stages_match_their_equations() -> None:
    values = np.linspace(0, 255, 256).astype(np.uint8)
    image = np.stack([values, values[::-1], np.full(256, 128, np.uint8)], -1)[None]
    v = image.astype(np.float64) / 255.0
    gamma = (1.2, 0.8, 1.0)
    out = simulate_scanner(image, ScannerProfile("g", gamma=gamma))
    assert np.abs(out - np.rint(255 * v ** np.asarray(gamma))).max() <= 1
    out = simulate_scanner(image, ScannerProfile("l", levels=(0.2, 0.9)))
    assert np.abs(out - np.rint(255 * (0.2 + 0.7 * v))).max() <= 1
    out = simulate_scanner(image, ScannerProfile("s", saturation=0.0))
    # zero saturation -> grey: the three channels equal the Rec. 709 luma
    luma = v @ np.array([0.2126, 0.7152, 0.0722])
    assert np.abs(out - np.rint(255 * luma)[..., None]).max() <= 1


def test_levels_compress_contrast(tile: np.ndarray) -> None:
    out = simulate_scanner(tile, ScannerProfile("flat", levels=(0.3, 1.0)))
    std_in = tile.reshape(-1, 3).std(0)
    std_out = out.reshape(-1, 3).std(0)
    np.testing.assert_allclose(std_out, 0.7 * std_in, rtol=0.03)


def test_jpeg_lower_quality_more_error(tile: np.ndarray) -> None:
    errors = [
        _mad(simulate_scanner(tile, ScannerProfile(f"q{q}", jpeg_quality=q)), tile)
        for q in (95, 75, 40, 10)
    ]
    assert errors[0] > 0
    assert errors == sorted(errors)
    assert errors[-1] > 2 * errors[0]


def test_blur_reduces_and_sharpening_increases_high_frequencies(tile: np.ndarray) -> None:
    base = _high_frequency_energy(tile)
    blurred = [
        _high_frequency_energy(simulate_scanner(tile, ScannerProfile(f"b{s}", blur_sigma=s)))
        for s in (0.5, 1.0, 2.0)
    ]
    assert blurred[0] < base
    assert blurred == sorted(blurred, reverse=True)
    assert blurred[-1] < 0.2 * base
    sharp = simulate_scanner(tile, ScannerProfile("sharp", sharpen_amount=1.0))
    assert _high_frequency_energy(sharp) > 1.5 * base
    # unsharp mask keeps the local mean: the image mean barely moves
    assert abs(float(sharp.mean()) - float(tile.mean())) < 1.5


def test_noise_level_follows_the_model() -> None:
    flat = np.full((128, 128, 3), 128, np.uint8)
    linear_level = float(_srgb_decode(np.float32([128 / 255]))[0])
    slope = 1.055 / 2.4 * linear_level ** (1 / 2.4 - 1) * 255  # d(encoded 8-bit)/d(linear)
    for read, shot in ((0.01, 0.0), (0.0, 4e-4)):
        out = simulate_scanner(flat, ScannerProfile("n", noise_read=read, noise_shot=shot))
        expected = slope * np.sqrt(shot * linear_level + read**2)
        assert out.astype(np.float64).std() == pytest.approx(expected, rel=0.1)
    # shot noise grows with the signal in linear light
    dark = np.full((128, 128, 3), 40, np.uint8)
    bright = np.full((128, 128, 3), 230, np.uint8)
    shot_only = ScannerProfile("shot", noise_shot=4e-4)
    dark_lin = _srgb_decode(simulate_scanner(dark, shot_only).astype(np.float32) / 255).std()
    bright_lin = _srgb_decode(simulate_scanner(bright, shot_only).astype(np.float32) / 255).std()
    assert bright_lin > 2 * dark_lin


def test_shift_is_a_subpixel_translation() -> None:
    # a smooth ramp shifted by dx gives ramp(x - dx) in linear light
    x = np.arange(64, dtype=np.float32)
    ramp = np.broadcast_to((x * 3 + 20)[None, :, None], (64, 64, 3)).astype(np.float32) / 255.0
    encoded = _srgb_encode(ramp)
    out = simulate_scanner(encoded, ScannerProfile("s", shift=(0.5, 0.0)))
    expected = _srgb_encode(
        np.broadcast_to(((x - 0.5) * 3 + 20)[None, :, None], (64, 64, 3)) / 255.0
    )
    np.testing.assert_allclose(out[:, 2:-2], expected[:, 2:-2], atol=1e-4)


# --------------------------------------------------------------------------- #
# Realism and alignment of the shipped profiles
# --------------------------------------------------------------------------- #
def test_profiles_differ_by_realistic_amounts(scans: dict[str, np.ndarray]) -> None:
    ref = scans["reference"]
    mads = {name: _mad(scan, ref) for name, scan in scans.items() if name != "reference"}
    for name, mad in mads.items():
        assert MAD_RANGE[0] <= mad <= MAD_RANGE[1], (name, mad)
    # spans most of the 10-45 grey-level range seen between real scanners
    assert min(mads.values()) < 15
    assert max(mads.values()) > 35
    means = np.array([s.reshape(-1, 3).mean(0) for s in scans.values()])
    spread = means.max(0) - means.min(0)
    assert (spread >= 20).all(), spread  # tens of grey levels per channel
    assert (spread <= 120).all(), spread
    stds = np.array([s.reshape(-1, 3).std(0).mean() for s in scans.values()])
    assert stds.min() < 0.75 * stds.max()  # some profiles compress contrast markedly
    # the reference profile keeps the input colours
    assert _mad(ref, simulate_scanner(ref, ScannerProfile("id"))) == 0


SHARED_TILES = Path("/work/shared/data/he_tiles")


@pytest.mark.skipif(not SHARED_TILES.is_dir(), reason="shared H&E tiles not available")
def test_realistic_differences_on_other_tissue() -> None:
    paths = sorted(SHARED_TILES.glob("*.png"))[:6]
    if not paths:
        pytest.skip("no shared H&E tiles")
    for path in paths:
        image = read_rgb_image(path)
        factor = max(image.shape[:2]) / 384
        if factor > 1:
            size = (round(image.shape[1] / factor), round(image.shape[0] / factor))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        scans = simulate_paired_scans(image)
        mads = [_mad(scan, scans["reference"]) for scan in list(scans.values())[1:]]
        assert min(mads) >= MAD_RANGE[0], (path.name, mads)
        assert max(mads) <= MAD_RANGE[1], (path.name, mads)
        assert max(mads) > 25, (path.name, mads)


def test_paired_scans_stay_aligned(scans: dict[str, np.ndarray], he_image: np.ndarray) -> None:
    source = cv2.cvtColor(he_image, cv2.COLOR_RGB2GRAY).astype(np.float64)
    window = cv2.createHanningWindow(source.shape[::-1], cv2.CV_64F)
    for name, scan in scans.items():
        gray = cv2.cvtColor(scan, cv2.COLOR_RGB2GRAY).astype(np.float64)
        (dx, dy), response = cv2.phaseCorrelate(source, gray, window)
        assert np.hypot(dx, dy) < 1.0, (name, dx, dy)
        assert response > 0.3, (name, response)
        # and the estimated offset has the sign of the profile's shift
        sx = SCANNER_PROFILES[name].shift[0]
        if abs(sx) >= 0.1:
            assert np.sign(dx) == np.sign(sx), (name, dx, sx)


def test_docs_table_is_current(scans: dict[str, np.ndarray]) -> None:
    page = Path(__file__).parents[2] / "docs" / "augmentations" / "scanner.md"
    if not page.is_file():
        pytest.skip("docs not present")
    rows = {}
    for line in page.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].strip("`") in SCANNER_PROFILES:
            rows[cells[0].strip("`")] = [[float(v) for v in cell.split(",")] for cell in cells[1:]]
    assert list(rows) == list(SCANNER_PROFILES)
    ref = scans["reference"]
    for name, (mad, mean, std) in rows.items():
        pixels = scans[name].reshape(-1, 3).astype(np.float64)
        assert _mad(scans[name], ref) == pytest.approx(mad[0], abs=0.15), name
        np.testing.assert_allclose(pixels.mean(0), mean, atol=0.6, err_msg=name)
        np.testing.assert_allclose(pixels.std(0), std, atol=0.15, err_msg=name)


def test_simulate_paired_scans_order_and_errors(tile: np.ndarray) -> None:
    small = tile[:32, :32]
    out = simulate_paired_scans(small, ["warm-soft", "reference"])
    assert list(out) == ["warm-soft", "reference"]
    assert np.array_equal(out["warm-soft"], simulate_scanner(small, "warm-soft"))
    with pytest.raises(ValueError, match="distinct names"):
        simulate_paired_scans(small, ["warm-soft", SCANNER_PROFILES["warm-soft"]])


# --------------------------------------------------------------------------- #
# The albumentations transform
# --------------------------------------------------------------------------- #
def test_transform_applies_one_of_the_profiles(tile: np.ndarray) -> None:
    small = np.ascontiguousarray(tile[:48, :48])
    expected = {name: simulate_scanner(small, name) for name in SCANNER_PROFILES}
    transform = ScannerSimulator(p=1.0)
    seen = set()
    for _ in range(25):
        out = transform(image=small)["image"]
        match = [name for name, ref in expected.items() if np.array_equal(out, ref)]
        assert len(match) == 1
        seen.add(match[0])
    assert len(seen) >= 3
    assert transform.profile_names == list(SCANNER_PROFILES)


def test_transform_p_zero_is_identity(tile: np.ndarray) -> None:
    out = ScannerSimulator(p=0.0)(image=tile)["image"]
    assert np.array_equal(out, tile)


def test_compose_seed_reproduces(tile: np.ndarray) -> None:
    small = np.ascontiguousarray(tile[:32, :32])

    def run(seed: int) -> list[bytes]:
        pipeline = A.Compose([ScannerSimulator(p=0.7)], seed=seed)
        return [pipeline(image=small)["image"].tobytes() for _ in range(10)]

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_to_dict_from_dict_round_trip(tile: np.ndarray) -> None:
    custom = ScannerProfile("custom", blur_sigma=1.0, jpeg_quality=70)
    pipeline = A.Compose(
        [ScannerSimulator(["warm-soft", SCANNER_PROFILES["cool-sharp"], custom], p=0.9)], seed=2
    )
    serialised = json.loads(json.dumps(A.to_dict(pipeline)))
    stored = serialised["transform"]["transforms"][0]
    assert stored["profiles"][:2] == ["warm-soft", "cool-sharp"]
    assert stored["profiles"][2]["name"] == "custom"
    assert stored["p"] == 0.9
    restored = A.from_dict(serialised)
    transform = restored.transforms[0]
    assert isinstance(transform, ScannerSimulator)
    assert transform.profile_names == ["warm-soft", "cool-sharp", "custom"]
    assert transform._profiles[2] == custom
    restored.set_random_seed(2)
    small = np.ascontiguousarray(tile[:32, :32])
    pipeline.set_random_seed(2)
    assert all(
        np.array_equal(pipeline(image=small)["image"], restored(image=small)["image"])
        for _ in range(6)
    )
    default = A.from_dict(A.to_dict(ScannerSimulator()))
    assert default.profiles is None
    assert default.profile_names == list(SCANNER_PROFILES)


@pytest.mark.parametrize(
    ("profiles", "match"),
    [
        (["nope"], "Unknown scanner profile 'nope'"),
        ([], "must not be empty"),
        (5, "must be a sequence"),
        (["warm-soft", "warm-soft"], "distinct names"),
        ([{"name": "x", "blur_sigma": -1}], "blur_sigma must be >= 0"),
        ([{"nme": "x"}], "Invalid scanner profile dict"),
        ([3.5], "must be a name, a ScannerProfile or a dict"),
    ],
)
def test_transform_bad_arguments(profiles: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ScannerSimulator(profiles=profiles)


def test_transform_bad_p() -> None:
    with pytest.raises(ValueError, match="p"):
        ScannerSimulator(p=1.5)


def test_transform_single_name_and_float_images(tile: np.ndarray) -> None:
    transform = ScannerSimulator("pale-low-contrast", p=1.0)
    assert transform.profiles == ["pale-low-contrast"]
    as_float = tile[:32, :32].astype(np.float32) / 255.0
    out = transform(image=as_float)["image"]
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, simulate_scanner(as_float, "pale-low-contrast"))


def test_description_does_not_change_the_scan(tile: np.ndarray) -> None:
    a = ScannerProfile("n", description="one", noise_read=0.01, jpeg_quality=90)
    b = ScannerProfile("n", description="two", noise_read=0.01, jpeg_quality=90)
    assert np.array_equal(simulate_scanner(tile, a), simulate_scanner(tile, b))
