"""Tests for Fourier Domain Adaptation: the pure function against references, and the transform."""

from __future__ import annotations

import json
import math

import albumentations as A  # noqa: N812 - albumentations' conventional alias
import cv2
import numpy as np
import pytest
from albumentations.augmentations.mixing.domain_adaptation_functional import (
    fourier_domain_adaptation,
    low_freq_mutate,
)

from tia_scanner_robust.augmentations.fda import (
    FourierDomainAdaptation,
    fda_swap,
    fda_window,
    low_frequency_coefficients,
)

SHAPES = [(64, 64), (63, 65), (48, 80), (81, 81)]
BETAS = [0.005, 0.02, 0.05, 0.1, 0.3, 0.5]


def fda_float64_reference(source: np.ndarray, reference: np.ndarray, beta: float) -> np.ndarray:
    """Yang and Soatto's reference FDA (numpy version) in float64, without clipping.

    fftshift each channel's spectrum, replace the amplitude in rows and
    columns ``c - b .. c + b`` (inclusive, ``c = n // 2`` the zero frequency)
    by the reference's, keep the phase, inverse FFT, real part.
    """
    height, width = source.shape[:2]
    half = math.floor(min(height, width) * beta)
    out = np.empty(source.shape, dtype=np.float64)
    for channel in range(source.shape[2]):
        spec_s = np.fft.fftshift(np.fft.fft2(source[..., channel].astype(np.float64)))
        spec_t = np.fft.fftshift(np.fft.fft2(reference[..., channel].astype(np.float64)))
        amplitude, phase = np.abs(spec_s), np.angle(spec_s)
        if beta > 0:
            ch, cw = height // 2, width // 2
            rows = slice(max(0, ch - half), ch + half + 1)
            cols = slice(max(0, cw - half), cw + half + 1)
            amplitude[rows, cols] = np.abs(spec_t)[rows, cols]
        out[..., channel] = np.fft.ifft2(np.fft.ifftshift(amplitude * np.exp(1j * phase))).real
    return out


@pytest.fixture(scope="module")
def pair(he_image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A source crop and a different reference crop of the bundled H&E image, 96 x 112."""
    source = np.ascontiguousarray(he_image[100:196, 200:312])
    reference = np.ascontiguousarray(he_image[700:796, 600:712])
    return source, reference


def crops(he_image: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    h, w = shape
    return np.ascontiguousarray(he_image[:h, :w]), np.ascontiguousarray(he_image[-h:, -w:])


# --------------------------------------------------------------------------- #
# the window
# --------------------------------------------------------------------------- #
def test_centered_window_hand_computed() -> None:
    rows, n_cols, weights = fda_window((8, 10), 0.25)  # b = floor(8 * 0.25) = 2
    assert rows.tolist() == [0, 1, 2, 6, 7]  # ky in -2..2
    assert n_cols == 3  # kx in 0..2 on the half plane
    assert weights.shape == (5, 3)
    assert np.all(weights == 1.0)


@pytest.mark.parametrize("shape", [(8, 8), (7, 9), (16, 12), (15, 15)])
@pytest.mark.parametrize("beta", [0.0, 0.07, 0.13, 0.25, 0.4, 0.5])
def test_albumentations_window_matches_low_freq_mutate(shape: tuple[int, int], beta: float) -> None:
    """Our weights equal (M(k) + M(-k)) / 2 with M the mask A.FDA's low_freq_mutate writes."""
    height, width = shape
    marked = low_freq_mutate(np.zeros(shape), np.ones(shape), beta)  # fftshift-ed mask
    mask = np.fft.ifftshift(marked)  # unshifted indices
    mirrored = mask[(-np.arange(height)) % height][:, (-np.arange(width)) % width]
    expected = (mask + mirrored) / 2
    rows, n_cols, weights = fda_window(shape, beta, window="albumentations")
    full = np.zeros(shape)
    if n_cols:
        full[np.ix_(rows, np.arange(n_cols))] = weights
    half = width // 2 + 1
    np.testing.assert_array_equal(full[:, :half], expected[:, :half])


def test_centered_window_matches_reference_slices() -> None:
    """The centred window is the fftshift-ed slice c - b .. c + b of the reference code."""
    for shape in [(8, 8), (7, 9), (16, 12), (15, 15)]:
        for beta in [0.07, 0.25, 0.5]:
            height, width = shape
            half = math.floor(min(shape) * beta)
            marked = np.zeros(shape)
            ch, cw = height // 2, width // 2
            marked[max(0, ch - half) : ch + half + 1, max(0, cw - half) : cw + half + 1] = 1
            expected = np.fft.ifftshift(marked)
            rows, n_cols, weights = fda_window(shape, beta)
            full = np.zeros(shape)
            full[np.ix_(rows, np.arange(n_cols))] = weights
            np.testing.assert_array_equal(full[:, : width // 2 + 1], expected[:, : width // 2 + 1])


@pytest.mark.parametrize(
    ("beta", "window"), [(-0.1, "centered"), (0.6, "centered"), (0.1, "middle")]
)
def test_window_rejects_bad_arguments(beta: float, window: str) -> None:
    with pytest.raises(ValueError, match=r"beta|window"):
        fda_window((8, 8), beta, window=window)


def test_low_frequency_coefficients_match_fft2() -> None:
    x = np.random.default_rng(0).random((12, 10, 3)).astype(np.float32)
    rows = np.array([0, 1, 2, 10, 11])
    coefficients = low_frequency_coefficients(x, rows, 4)
    full = np.fft.fft2(x.astype(np.float64), axes=(0, 1))
    np.testing.assert_allclose(coefficients, full[rows][:, :4], atol=1e-4)


# --------------------------------------------------------------------------- #
# fda_swap against references
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_beta_zero_is_identity(pair: tuple[np.ndarray, np.ndarray], dtype: type) -> None:
    source, reference = pair
    if dtype == np.float32:
        source = source.astype(np.float32) / 255
    for window in ("centered", "albumentations"):
        out = fda_swap(source, reference, 0.0, window=window)
        assert out.dtype == source.dtype
        np.testing.assert_array_equal(out, source)
        assert out is not source


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_identical_source_and_reference_returns_input(
    pair: tuple[np.ndarray, np.ndarray], dtype: type
) -> None:
    source = pair[0] if dtype == np.uint8 else pair[0].astype(np.float32) / 255
    for beta in (0.01, 0.1, 0.5):
        np.testing.assert_array_equal(fda_swap(source, source.copy(), beta), source)


def test_amplitude_swapped_in_window_and_phase_kept(pair: tuple[np.ndarray, np.ndarray]) -> None:
    """On the unclipped result: |DFT| is the reference's inside the window, the source's
    outside, and the phase is the source's."""
    source = pair[0].astype(np.float32) / 255
    reference = pair[1].astype(np.float32) / 255
    beta = 0.06
    out = fda_swap(source, reference, beta, clip=False)
    assert out.dtype == np.float32
    spec_out = np.fft.fftshift(np.fft.fft2(out.astype(np.float64), axes=(0, 1)), axes=(0, 1))
    spec_s = np.fft.fftshift(np.fft.fft2(source.astype(np.float64), axes=(0, 1)), axes=(0, 1))
    spec_t = np.fft.fftshift(np.fft.fft2(reference.astype(np.float64), axes=(0, 1)), axes=(0, 1))
    height, width = source.shape[:2]
    half = math.floor(min(height, width) * beta)
    inside = np.zeros((height, width), bool)
    inside[
        height // 2 - half : height // 2 + half + 1, width // 2 - half : width // 2 + half + 1
    ] = True
    scale = np.abs(spec_s).max()
    np.testing.assert_allclose(np.abs(spec_out)[inside], np.abs(spec_t)[inside], atol=1e-5 * scale)
    np.testing.assert_allclose(
        np.abs(spec_out)[~inside], np.abs(spec_s)[~inside], atol=1e-5 * scale
    )
    significant = np.abs(spec_s) > 1e-3 * scale
    phase_diff = np.angle(spec_out[significant] * np.conj(spec_s[significant]))
    assert np.abs(phase_diff).max() < 1e-3
    # the swap really changed something: the reference's low frequencies differ
    assert np.abs(np.abs(spec_t) - np.abs(spec_s))[inside].max() > 0.01 * scale


@pytest.mark.parametrize("shape", SHAPES)
def test_matches_float64_reference(he_image: np.ndarray, shape: tuple[int, int]) -> None:
    source, reference = crops(he_image, shape)
    for beta in BETAS:
        expected = np.clip(np.rint(fda_float64_reference(source, reference, beta)), 0, 255)
        out = fda_swap(source, reference, beta)
        assert np.abs(out.astype(np.float64) - expected).max() <= 1, beta
        unclipped = fda_swap(source, reference, beta, clip=False)
        np.testing.assert_allclose(
            unclipped, fda_float64_reference(source, reference, beta), atol=2e-3
        )


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_agrees_with_albumentations_fda(
    he_image: np.ndarray, shape: tuple[int, int], dtype: type
) -> None:
    """window="albumentations" reproduces A.FDA 2.0.8 within one grey level."""
    source, reference = crops(he_image, shape)
    tolerance = 1.0
    if dtype == np.float32:
        source, reference = source.astype(np.float32) / 255, reference.astype(np.float32) / 255
        tolerance = 1.0 / 255
    for beta in [0.0, *BETAS]:
        expected = fourier_domain_adaptation(source, reference, beta)
        out = fda_swap(source, reference, beta, window="albumentations")
        assert out.dtype == expected.dtype
        assert np.abs(out.astype(np.float64) - expected.astype(np.float64)).max() <= tolerance, beta


def test_default_window_differs_from_albumentations(pair: tuple[np.ndarray, np.ndarray]) -> None:
    """The conventions are genuinely different (A.FDA's window is off-centre)."""
    source, reference = pair
    centred = fda_swap(source, reference, 0.05).astype(int)
    albu = fda_swap(source, reference, 0.05, window="albumentations").astype(int)
    assert np.abs(centred - albu).max() > 2


def test_reference_of_other_size_is_resized(
    pair: tuple[np.ndarray, np.ndarray], he_image: np.ndarray
) -> None:
    source = pair[0]
    big = np.ascontiguousarray(he_image[500:692, 400:624])  # 2x the source size
    small = np.ascontiguousarray(he_image[500:548, 400:456])  # half
    for reference, interpolation in ((big, cv2.INTER_AREA), (small, cv2.INTER_LINEAR)):
        resized = cv2.resize(reference, source.shape[1::-1], interpolation=interpolation)
        np.testing.assert_array_equal(
            fda_swap(source, reference, 0.1), fda_swap(source, resized, 0.1)
        )


def test_reference_dtype_is_brought_to_source_scale(pair: tuple[np.ndarray, np.ndarray]) -> None:
    source, reference = pair
    source_f = source.astype(np.float32) / 255
    mixed = fda_swap(source_f, reference, 0.1)  # uint8 reference for a float source
    same = fda_swap(source_f, reference.astype(np.float32) / 255, 0.1)
    assert mixed.dtype == np.float32
    np.testing.assert_allclose(mixed, same, atol=1e-5)
    as_uint8 = fda_swap(source, reference.astype(np.float32) / 255, 0.1)
    assert np.abs(as_uint8.astype(int) - fda_swap(source, reference, 0.1)).max() <= 1


def test_output_is_clipped(pair: tuple[np.ndarray, np.ndarray]) -> None:
    source, _ = pair
    bright = np.full_like(source, 250)
    unclipped = fda_swap(source, bright, 0.5, clip=False)
    assert unclipped.max() > 255  # the swap overshoots here ...
    out = fda_swap(source, bright, 0.5)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.clip(np.rint(unclipped), 0, 255))  # ... and is clipped


@pytest.mark.parametrize(
    ("image", "error", "match"),
    [
        (np.zeros((8, 8), np.uint8), ValueError, "grayscale"),
        (np.zeros((8, 8, 4), np.uint8), ValueError, "RGBA"),
        (np.zeros((8, 8, 3), np.float64), TypeError, "float64"),
    ],
)
def test_fda_swap_rejects_bad_images(image: np.ndarray, error: type, match: str) -> None:
    good = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(error, match=match):
        fda_swap(image, good, 0.1)
    with pytest.raises(error, match=match):
        fda_swap(good, image, 0.1)


# --------------------------------------------------------------------------- #
# the transform
# --------------------------------------------------------------------------- #
def test_transform_applies_fda_swap_with_sampled_params(
    pair: tuple[np.ndarray, np.ndarray],
) -> None:
    source, reference = pair
    transform = FourierDomainAdaptation(beta_range=(0.02, 0.2), p=1.0)
    out = A.Compose([transform], seed=3)(image=source, fda_reference=[reference])["image"]
    beta = transform.params["beta"]
    assert 0.02 <= beta <= 0.2
    np.testing.assert_array_equal(out, fda_swap(source, reference, beta))


def test_single_array_metadata_is_accepted(pair: tuple[np.ndarray, np.ndarray]) -> None:
    source, reference = pair
    as_list = A.Compose([FourierDomainAdaptation(p=1.0)], seed=1)(
        image=source, fda_reference=[reference]
    )
    as_array = A.Compose([FourierDomainAdaptation(p=1.0)], seed=1)(
        image=source, fda_reference=reference
    )
    np.testing.assert_array_equal(as_list["image"], as_array["image"])


@pytest.mark.parametrize("window", ["centered", "albumentations"])
def test_bank_equals_metadata_path(
    pair: tuple[np.ndarray, np.ndarray], he_image: np.ndarray, window: str
) -> None:
    """The cached bank amplitudes give the same result as per-call references."""
    source, reference = pair
    other = np.ascontiguousarray(he_image[:200, :150])  # different size: resized
    refs = [reference, other]
    bank = FourierDomainAdaptation(
        reference_images=refs, beta_range=(0.01, 0.3), window=window, p=1.0
    )
    meta = FourierDomainAdaptation(beta_range=(0.01, 0.3), window=window, p=1.0)
    bank_c, meta_c = A.Compose([bank], seed=7), A.Compose([meta], seed=7)
    for dtype in (np.uint8, np.float32, np.uint8):
        image = source if dtype == np.uint8 else source.astype(np.float32) / 255
        out_bank = bank_c(image=image)["image"]
        out_meta = meta_c(image=image, fda_reference=refs)["image"]
        assert out_bank.dtype == image.dtype
        np.testing.assert_allclose(out_bank, out_meta, atol=1e-5)
    # a larger beta than the cache was built for recomputes it
    bank.beta_range = meta.beta_range = (0.5, 0.5)
    np.testing.assert_array_equal(
        bank_c(image=source)["image"], meta_c(image=source, fda_reference=refs)["image"]
    )


def test_metadata_overrides_bank(pair: tuple[np.ndarray, np.ndarray]) -> None:
    source, reference = pair
    bank = FourierDomainAdaptation(
        reference_images=[np.full_like(source, 128)], beta_range=(0.1, 0.1), p=1.0
    )
    out = A.Compose([bank], seed=0)(image=source, fda_reference=[reference])["image"]
    np.testing.assert_array_equal(out, fda_swap(source, reference, 0.1))


def test_missing_reference_is_a_clear_error(pair: tuple[np.ndarray, np.ndarray]) -> None:
    with pytest.raises(ValueError, match="needs reference images"):
        A.Compose([FourierDomainAdaptation(p=1.0)])(image=pair[0])


@pytest.mark.parametrize("value", ["not an image", [], 3])
def test_bad_metadata_is_a_clear_error(pair: tuple[np.ndarray, np.ndarray], value: object) -> None:
    with pytest.raises(ValueError, match="fda_reference"):
        A.Compose([FourierDomainAdaptation(p=1.0)])(image=pair[0], fda_reference=value)


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="beta_range"):
        FourierDomainAdaptation(beta_range=(0.2, 0.1))
    with pytest.raises(ValueError, match="beta_range"):
        FourierDomainAdaptation(beta_range=(0.1, 0.7))
    with pytest.raises(ValueError, match="window"):
        FourierDomainAdaptation(window="middle")
    with pytest.raises(ValueError, match="non-empty"):
        FourierDomainAdaptation(reference_images=[])
    with pytest.raises(TypeError, match=r"reference_images\[1\].*int32"):
        FourierDomainAdaptation(
            reference_images=[np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 3), np.int32)]
        )


def test_custom_metadata_key_and_strict_compose(pair: tuple[np.ndarray, np.ndarray]) -> None:
    source, reference = pair
    transform = FourierDomainAdaptation(metadata_key="paired_scan", beta_range=(0.1, 0.1), p=1.0)
    out = A.Compose([transform], strict=True, seed=0)(image=source, paired_scan=[reference])[
        "image"
    ]
    np.testing.assert_array_equal(out, fda_swap(source, reference, 0.1))


def test_serialisation_metadata_mode_and_bank_refusal(pair: tuple[np.ndarray, np.ndarray]) -> None:
    source, reference = pair
    transform = FourierDomainAdaptation(beta_range=(0.02, 0.08), window="albumentations", p=0.7)
    restored = A.from_dict(json.loads(json.dumps(A.to_dict(transform))))
    assert isinstance(restored, FourierDomainAdaptation)
    assert tuple(restored.beta_range) == (0.02, 0.08)
    assert (restored.window, restored.p) == ("albumentations", 0.7)
    outputs = [
        A.Compose([t], seed=4)(image=source, fda_reference=[reference])["image"]
        for t in (transform, restored)
        for _ in range(4)
    ]
    np.testing.assert_array_equal(np.stack(outputs[:4]), np.stack(outputs[4:]))
    bank = FourierDomainAdaptation(reference_images=[reference])
    with pytest.raises(NotImplementedError, match="cannot be serialised"):
        A.to_dict(bank)
