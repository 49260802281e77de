"""Corpus: images and masks that must be refused (or reported) with the file named."""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pytest

from tia_scanner_robust import _validation
from tia_scanner_robust._io import atomic_write_image
from tia_scanner_robust._validation import MAX_IMAGE_PIXELS_ENV, read_rgb_image
from tia_scanner_robust.data.collection import PairedCollection, PairedSample
from tia_scanner_robust.data.readers import load_sample_image, load_sample_mask, read_mask
from tia_scanner_robust.training.data import SegmentationFolderDataset

from ._corpus import binary_255_mask, png_declaring, rgb_tile, rgba_tile

READERS = {
    "read_rgb_image": read_rgb_image,
    "read_mask": read_mask,
    "load_sample_image": lambda p: load_sample_image(PairedSample("s", "A", path=p)),
    "load_sample_mask": lambda p: load_sample_mask(PairedSample("s", "A", mask_path=p)),
}


# ------------------------------------------------------- declared-size bombs
@pytest.mark.parametrize("side", [20_000, 100_000])
@pytest.mark.parametrize("reader", sorted(READERS))
def test_huge_declared_png_is_refused_before_decoding(tmp_path, monkeypatch, side, reader):
    monkeypatch.delenv(MAX_IMAGE_PIXELS_ENV, raising=False)
    path = png_declaring(tmp_path / f"bomb_{side}.png", side, side)
    assert path.stat().st_size < 2000
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=f"declares {side} x {side}") as caught:
            READERS[reader](path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20  # nothing near the 1.2 GB / 30 GB the header declares
    message = str(caught.value)
    assert str(path) in message
    assert MAX_IMAGE_PIXELS_ENV in message
    assert str(2**28) in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("setting", "accepted"),
    [("1000", False), ("100_000", True), ("0", True), (None, True)],
)
def test_pixel_limit_from_the_environment(tmp_path, monkeypatch, setting, accepted):
    path = rgb_tile(tmp_path / "tile.png", size=64)  # 4096 pixels
    if setting is None:
        monkeypatch.delenv(MAX_IMAGE_PIXELS_ENV, raising=False)
    else:
        monkeypatch.setenv(MAX_IMAGE_PIXELS_ENV, setting)
    if accepted:
        assert read_rgb_image(path).shape == (64, 64, 3)
    else:
        with pytest.raises(ValueError, match=r"limit of 1000 pixels"):
            read_rgb_image(path)


@pytest.mark.parametrize("setting", ["lots", "-5", "1.5"])
def test_invalid_pixel_limit_names_the_variable(tmp_path, monkeypatch, setting):
    monkeypatch.setenv(MAX_IMAGE_PIXELS_ENV, setting)
    with pytest.raises(ValueError, match=MAX_IMAGE_PIXELS_ENV):
        read_rgb_image(rgb_tile(tmp_path / "tile.png"))


def test_pixel_limit_argument_wins(tmp_path, monkeypatch):
    monkeypatch.setenv(MAX_IMAGE_PIXELS_ENV, "10")
    path = rgb_tile(tmp_path / "tile.png", size=8)
    assert read_rgb_image(path, max_pixels=64).shape == (8, 8, 3)
    with pytest.raises(ValueError, match="limit of 63 pixels"):
        read_mask(path, max_pixels=63)


@pytest.mark.parametrize(
    "content",
    [b"", b"not an image", b"\x89PNG\r\n\x1a\n" + b"\0" * 40],
    ids=["empty", "text", "cut"],
)
@pytest.mark.parametrize("reader", ["read_rgb_image", "read_mask"])
def test_undecodable_files_are_named(tmp_path, content, reader):
    path = tmp_path / "broken.png"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="Could not decode") as caught:
        READERS[reader](path)
    assert str(path) in str(caught.value)


# ------------------------------------------------------------------ RGBA
def test_rgba_alpha_is_reported_once(tmp_path, monkeypatch):
    monkeypatch.setattr(_validation, "_ALPHA_WARNED", set())
    first = rgba_tile(tmp_path / "first.png")
    second = rgba_tile(tmp_path / "second.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = read_rgb_image(first)
        read_rgb_image(second)
        load_sample_image(PairedSample("s", "A", path=second))
    alpha = [w for w in caught if "alpha" in str(w.message)]
    assert len(alpha) == 1
    assert str(first) in str(alpha[0].message)
    assert image.shape == (16, 16, 3)


def test_rgb_image_gives_no_alpha_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(_validation, "_ALPHA_WARNED", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read_rgb_image(rgb_tile(tmp_path / "rgb.png"))
    assert not [w for w in caught if "alpha" in str(w.message)]


# ------------------------------------------------------------- mask values
@pytest.mark.parametrize(
    ("values", "num_classes", "ignore_index", "refused"),
    [
        ((0, 255), 2, None, [255]),  # a 0/255 export of a binary mask
        ((0, 1, 2), 2, None, [2]),
        ((0, 1, 7), 3, None, [7]),
        ((0, 1, 255), 2, 255, []),  # the ignore index is allowed
        ((0, 1), 2, None, []),
    ],
)
def test_mask_values_outside_the_classes(tmp_path, values, num_classes, ignore_index, refused):
    mask = np.array([values], np.uint8)
    path = atomic_write_image(tmp_path / "mask.png", mask)
    if not refused:
        out = read_mask(path, num_classes=num_classes, ignore_index=ignore_index)
        np.testing.assert_array_equal(out, mask)
        return
    with pytest.raises(ValueError, match=r"holds label\(s\) " + str(refused).replace("[", r"\[")):
        read_mask(path, num_classes=num_classes, ignore_index=ignore_index)


def test_binary_255_mask_refused_by_the_training_dataset(tmp_path):
    rgb_tile(tmp_path / "images" / "a.png")
    mask = binary_255_mask(tmp_path / "masks" / "a.png")
    dataset = SegmentationFolderDataset(tmp_path, num_classes=2)
    with pytest.raises(ValueError, match="0/255 binary mask") as caught:
        dataset[0]
    assert str(mask) in str(caught.value)


def test_binary_255_mask_refused_by_the_evaluator(tmp_path):
    from tia_scanner_robust.engines.consistency import (  # noqa: PLC0415
        ScannerConsistencyEvaluator,
    )

    mask = binary_255_mask(tmp_path / "mask.png", size=64)
    samples = [
        PairedSample(
            "s0", scanner, path=rgb_tile(tmp_path / f"{scanner}.png", 64, seed), mask_path=mask
        )
        for seed, scanner in enumerate(("ref", "other"))
    ]
    evaluator = ScannerConsistencyEvaluator("builtin", n_examples=0, verbose=False)
    with pytest.raises(ValueError, match=r"holds label\(s\) \[255\]") as caught:
        evaluator.evaluate(PairedCollection(samples), tmp_path / "out")
    assert str(mask) in str(caught.value)


@pytest.mark.parametrize(
    ("target_map", "values", "ok"),
    [
        ({0: 0, 1: 0, 2: 1}, (0, 1), True),
        ({0: 0, 1: 0, 2: 1}, (0, 2), False),  # 2 is no ground-truth label of the map
        (None, (0, 1, 2), True),
    ],
)
def test_evaluator_mask_labels_follow_the_target_map(tmp_path, target_map, values, ok):
    from tia_scanner_robust.engines.consistency import (  # noqa: PLC0415
        ScannerConsistencyEvaluator,
    )

    mask = np.zeros((64, 64), np.uint8)
    for k, value in enumerate(values):
        mask[k * 8 : k * 8 + 8] = value
    mask_path = atomic_write_image(tmp_path / "mask.png", mask)
    samples = [
        PairedSample(
            "s0", scanner, path=rgb_tile(tmp_path / f"{scanner}.png", 64, seed), mask_path=mask_path
        )
        for seed, scanner in enumerate(("ref", "other"))
    ]
    evaluator = ScannerConsistencyEvaluator(
        "builtin", n_examples=0, verbose=False, target_map=target_map, save_predictions=False
    )
    if ok:
        result = evaluator.evaluate(PairedCollection(samples), tmp_path / "out")
        assert len(result.per_sample["gt_dice"]["ref"]) == 1
    else:
        with pytest.raises(ValueError, match=str(mask_path)):
            evaluator.evaluate(PairedCollection(samples), tmp_path / "out")
