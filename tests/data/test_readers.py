"""Pixel readers: images, masks (the one mask reader) and whole-slide images."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tests.data.test_registration import write_pyramidal_tiff
from tia_scanner_robust._io import atomic_write_image
from tia_scanner_robust.data.collection import PairedCollection, PairedSample
from tia_scanner_robust.data.readers import (
    load_sample_image,
    load_sample_mask,
    open_wsi,
    read_mask,
    verify_images,
)


def test_load_patch_image_and_crop(image_tree, he_tile):
    collection, _ = image_tree
    sample = collection.get("slide_1/sample_2", "GT450")
    np.testing.assert_array_equal(load_sample_image(sample), he_tile[32:64, 40:80])
    cropped = PairedSample(
        sample.specimen_id, sample.scanner, path=sample.path, region=(5, 3, 10, 7)
    )
    np.testing.assert_array_equal(load_sample_image(cropped), he_tile[35:42, 45:55])
    outside = PairedSample(
        sample.specimen_id, sample.scanner, path=sample.path, region=(35, 0, 10, 7)
    )
    with pytest.raises(ValueError, match="outside the image"):
        load_sample_image(outside)


def test_load_errors_name_the_file(tmp_path):
    bad = tmp_path / "AT2.png"
    bad.write_bytes(b"\x89PNG garbage")
    with pytest.raises(ValueError, match=r"Could not decode image file.*AT2\.png"):
        load_sample_image(PairedSample("s/1", "AT2", path=bad))
    with pytest.raises(FileNotFoundError, match=r"GT450\.png"):
        load_sample_image(PairedSample("s/1", "GT450", path=tmp_path / "GT450.png"))
    with pytest.raises(ValueError, match="no image path"):
        load_sample_image(PairedSample("s/1", "AT2"))
    with pytest.raises(ValueError, match=r"1 of 1 sample\(s\) could not be read: .*AT2\.png"):
        verify_images(PairedCollection([PairedSample("s/1", "AT2", path=bad)]))


def test_load_mask_checks(tmp_path, he_tile):
    image_path = atomic_write_image(tmp_path / "A.png", he_tile[:20, :30])
    mask = np.arange(20 * 30, dtype=np.uint8).reshape(20, 30)
    cv2.imwrite(str(tmp_path / "m.png"), mask)
    sample = PairedSample(
        "s/1", "A", path=image_path, mask_path=tmp_path / "m.png", region=(2, 3, 5, 4)
    )
    np.testing.assert_array_equal(load_sample_mask(sample, (4, 5, 3)), mask[3:7, 2:7])
    cv2.imwrite(str(tmp_path / "small.png"), mask[:10])
    small = PairedSample("s/1", "A", path=image_path, mask_path=tmp_path / "small.png")
    with pytest.raises(ValueError, match="has size 30x10 but the image"):
        load_sample_mask(small, (20, 30, 3))
    atomic_write_image(tmp_path / "colour.png", he_tile[:20, :30])
    colour = PairedSample("s/1", "A", path=image_path, mask_path=tmp_path / "colour.png")
    with pytest.raises(ValueError, match="colour image"):
        load_sample_mask(colour)


def test_load_wsi_region_at_mpp(tmp_path, he_image):
    slide = np.full((1200, 1200, 3), 255, np.uint8)
    slide[100:1100, 100:1100] = he_image
    path = write_pyramidal_tiff(tmp_path / "slide.tif", slide, mpp=0.5)
    at_baseline = PairedSample("s/1", "A", path=path, is_wsi=True, region=(300, 200, 64, 48))
    np.testing.assert_array_equal(load_sample_image(at_baseline), slide[200:248, 300:364])
    at_1mpp = PairedSample("s/1", "A", path=path, is_wsi=True, mpp=1.0, region=(300, 200, 64, 48))
    region = load_sample_image(at_1mpp)
    expected = cv2.resize(slide[200:296, 300:428], (64, 48), interpolation=cv2.INTER_AREA)
    assert region.shape == (48, 64, 3)
    assert np.abs(region.astype(int) - expected).mean() < 6
    whole = load_sample_image(PairedSample("s/1", "A", path=path, is_wsi=True, mpp=4.0))
    assert whole.shape == (150, 150, 3)
    not_a_slide = tmp_path / "x.svs"
    not_a_slide.write_bytes(b"nothing")
    with pytest.raises(ValueError, match=r"x\.svs"):
        load_sample_image(PairedSample("s/1", "A", path=not_a_slide, is_wsi=True))


def _write_mask(path, array):
    """Write a mask with OpenCV as given (BGR/BGRA channel order, no conversion)."""
    assert cv2.imwrite(str(path), array)
    return path


def test_read_mask_accepts_grey_masks_in_every_encoding(tmp_path):
    labels = np.arange(12, dtype=np.uint8).reshape(3, 4)
    grey = _write_mask(tmp_path / "grey.png", labels)
    rgb = _write_mask(tmp_path / "rgb.png", np.repeat(labels[..., None], 3, axis=-1))
    rgba = np.concatenate(
        [np.repeat(labels[..., None], 3, axis=-1), np.full((3, 4, 1), 255, np.uint8)], axis=-1
    )
    opaque = _write_mask(tmp_path / "opaque.png", rgba)
    for path in (grey, rgb, opaque):
        mask = read_mask(path)
        assert mask.dtype == np.uint8
        np.testing.assert_array_equal(mask, labels)
    wide = _write_mask(tmp_path / "wide.png", labels.astype(np.uint16) * 1000)
    assert read_mask(wide).dtype == np.uint16
    np.testing.assert_array_equal(read_mask(wide), labels.astype(np.uint16) * 1000)
    rgba16 = np.full((3, 4, 4), 65535, np.uint16)
    rgba16[..., :3] = 7
    assert read_mask(_write_mask(tmp_path / "opaque16.png", rgba16)).tolist() == [[7] * 4] * 3


def test_read_mask_refuses_transparent_and_colour_masks_naming_the_file(tmp_path):
    rgba = np.full((3, 4, 4), 255, np.uint8)
    rgba[..., :3] = 2
    rgba[1, 2, 3] = 128  # one half-transparent pixel
    with pytest.raises(ValueError, match=r"holes\.png has transparent pixels"):
        read_mask(_write_mask(tmp_path / "holes.png", rgba))
    rgba[1, 2, 3] = 255
    rgba[0, 0, 0] = 3  # opaque, but one pixel is not grey
    with pytest.raises(ValueError, match=r"tinted\.png is a colour image with unequal channels"):
        read_mask(_write_mask(tmp_path / "tinted.png", rgba))
    rgb = np.zeros((3, 4, 3), np.uint8)
    rgb[..., 1] = 1
    with pytest.raises(ValueError, match=r"green\.png is a colour image"):
        read_mask(_write_mask(tmp_path / "green.png", rgb))
    with pytest.raises(FileNotFoundError, match=r"absent\.png"):
        read_mask(tmp_path / "absent.png")
    (tmp_path / "junk.png").write_bytes(b"junk")
    with pytest.raises(ValueError, match=r"Could not decode mask file.*junk\.png"):
        read_mask(tmp_path / "junk.png")


def test_sample_masks_and_training_masks_share_the_reader(tmp_path, he_tile):
    from tia_scanner_robust.training import data as training_data  # noqa: PLC0415

    assert training_data.read_mask is read_mask
    for name in ("images", "masks"):
        (tmp_path / name).mkdir()
    image_path = atomic_write_image(tmp_path / "images" / "t.png", he_tile[:8, :8])
    rgba = np.full((8, 8, 4), 255, np.uint8)
    rgba[..., :3] = 1
    mask_path = _write_mask(tmp_path / "masks" / "t.png", rgba)
    sample = PairedSample("s/1", "A", path=image_path, mask_path=mask_path)
    dataset = training_data.SegmentationFolderDataset(tmp_path, num_classes=2)
    np.testing.assert_array_equal(load_sample_mask(sample), np.ones((8, 8), np.uint8))
    assert dataset[0]["mask"].dtype == np.int64
    np.testing.assert_array_equal(dataset[0]["mask"], np.ones((8, 8)))
    rgba[3, 3, 3] = 0
    _write_mask(mask_path, rgba)
    for read in (lambda: load_sample_mask(sample), lambda: dataset[0]):
        with pytest.raises(ValueError, match=r"masks[/\\]t\.png has transparent pixels"):
            read()


def test_open_wsi_caches_and_names_missing_files(tmp_path, he_tile):
    path = write_pyramidal_tiff(tmp_path / "slide.tif", he_tile, mpp=0.5)
    assert open_wsi(path) is open_wsi(str(path))
    assert open_wsi(path, mpp=0.25) is not open_wsi(path)
    with pytest.raises(FileNotFoundError, match=r"gone\.svs"):
        open_wsi(tmp_path / "gone.svs")


def test_check_mask_values_with_an_allowed_set(tmp_path):
    from tia_scanner_robust.data.readers import check_mask_values  # noqa: PLC0415

    mask = np.array([[0, 1], [1, 0]], np.uint8)
    assert check_mask_values(mask, 3, "m.png", allowed={0, 1}) is mask
    with pytest.raises(ValueError, match=r"holds label\(s\) \[1\] outside the labels \[0, 2\]"):
        check_mask_values(mask, 3, "m.png", allowed={0, 2})
    path = tmp_path / "m.png"
    cv2.imwrite(str(path), np.array([[0, 5]], np.uint8))
    assert read_mask(path).tolist() == [[0, 5]]  # unchecked without num_classes
    with pytest.raises(ValueError, match=r"m\.png holds label\(s\) \[5\] outside \[0, 3\]"):
        read_mask(path, num_classes=4)
