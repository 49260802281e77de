"""The paired data model, pixel loading and the torch datasets."""

from __future__ import annotations

import albumentations as A  # noqa: N812 - the library's own convention
import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from tests.data.test_registration import write_pyramidal_tiff
from tia_scanner_robust._io import atomic_write_image
from tia_scanner_robust.data.manifest import read_manifest
from tia_scanner_robust.data.paired import (
    PairedCollection,
    PairedGroupDataset,
    PairedImageDataset,
    PairedSample,
    load_sample_image,
    load_sample_mask,
    natural_key,
    verify_images,
)

SCANNERS = ("AT2", "GT450", "P1000")


def _samples(specimens=("s/1", "s/2", "s/10"), scanners=SCANNERS, **kwargs):
    return [PairedSample(sp, sc, **kwargs) for sp in specimens for sc in scanners]


@pytest.fixture
def image_tree(tmp_path, he_tile):
    """Three specimens x three scanners of 32x40 tiles, each visibly distinct, plus masks."""
    samples = []
    for i, specimen in enumerate(("slide_1/sample_1", "slide_1/sample_2", "slide_2/sample_1")):
        mask = np.zeros((32, 40), np.uint8)
        mask[: 8 * (i + 1)] = 1
        mask_path = tmp_path / specimen / "mask.png"
        mask_path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(mask_path), mask)
        for j, scanner in enumerate(SCANNERS):
            image = np.ascontiguousarray(he_tile[i * 32 : i * 32 + 32, j * 40 : j * 40 + 40])
            path = atomic_write_image(tmp_path / specimen / f"{scanner}.png", image)
            samples.append(PairedSample(specimen, scanner, path=path, label=i, mask_path=mask_path))
    return PairedCollection(samples), tmp_path


# ----------------------------------------------------------------- data model
@pytest.mark.parametrize("bad", ["../x", "/abs/x", "a//b", "a\\b", "a/./b", " a", ""])
def test_sample_rejects_unsafe_specimen_ids(bad):
    with pytest.raises(ValueError, match="specimen_id"):
        PairedSample(bad, "AT2")


@pytest.mark.parametrize("bad", ["a/b", "..", "x:y", ""])
def test_sample_rejects_unsafe_scanner_names(bad):
    with pytest.raises(ValueError, match="scanner"):
        PairedSample("s/1", bad)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"mpp": 0}, ValueError, "mpp must be a positive"),
        ({"mpp": float("nan")}, ValueError, "mpp must be a positive"),
        ({"region": (0, 0, 5)}, ValueError, "four integers"),
        ({"region": (0, 0, 0, 5)}, ValueError, "positive"),
        ({"region": (-1, 0, 5, 5)}, ValueError, "non-negative"),
        ({"label": True}, TypeError, "label"),
        ({"label": "tumour"}, TypeError, "label"),
        ({"split": ""}, ValueError, "split"),
    ],
)
def test_sample_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        PairedSample("s/1", "AT2", **kwargs)


def test_wsi_region_may_start_left_of_the_slide():
    assert PairedSample("s/1", "AT2", region=(-5, 0, 8, 8), is_wsi=True).region == (-5, 0, 8, 8)


def test_collection_orders_naturally_and_aligns_scanners():
    samples = _samples()[::-1]  # reversed input order
    collection = PairedCollection(samples, scanners=["P1000", "AT2", "GT450"])
    assert collection.specimens == ["s/1", "s/2", "s/10"]
    assert collection.scanners == ["P1000", "AT2", "GT450"]
    assert collection.reference_scanner == "P1000"
    lists = [collection.by_scanner(s) for s in collection.scanners]
    for column in zip(*lists, strict=True):
        assert len({s.specimen_id for s in column}) == 1
    assert [s.scanner for s in collection][:3] == ["P1000", "AT2", "GT450"]
    assert len(collection) == 9
    assert "3 specimens x 3 scanners" in repr(collection)


def test_collection_default_scanner_order_is_first_appearance():
    samples = [PairedSample("s/1", s) for s in ("Philips", "AT2")]
    assert PairedCollection(samples).scanners == ["Philips", "AT2"]


def test_collection_rejects_duplicates_and_bad_scanner_lists():
    samples = _samples()
    with pytest.raises(ValueError, match="duplicate sample for specimen 's/1', scanner 'AT2'"):
        PairedCollection([*samples, PairedSample("s/1", "AT2")])
    with pytest.raises(ValueError, match="not listed: \\['P1000'\\]"):
        PairedCollection(samples, scanners=["AT2", "GT450"])
    with pytest.raises(ValueError, match="no samples: \\['DP200'\\]"):
        PairedCollection(samples, scanners=[*SCANNERS, "DP200"])
    with pytest.raises(ValueError, match="no samples"):
        PairedCollection([])
    with pytest.raises(TypeError, match="PairedSample"):
        PairedCollection([("s/1", "AT2")])


def test_incomplete_error_names_specimens_and_missing_scanners():
    samples = [s for s in _samples() if not (s.specimen_id == "s/2" and s.scanner != "AT2")]
    with pytest.raises(ValueError, match=r"1 specimen\(s\).*s/2 \(missing: GT450, P1000\)"):
        PairedCollection(samples)


def test_incomplete_drop_warns_with_count():
    samples = [
        s for s in _samples() if not (s.specimen_id in {"s/2", "s/10"} and s.scanner == "P1000")
    ]
    with pytest.warns(UserWarning, match=r"dropped 2 incomplete specimen\(s\) \(4 sample\(s\)\)"):
        collection = PairedCollection(samples, incomplete="drop")
    assert collection.specimens == ["s/1"]
    assert len(collection) == 3
    with pytest.raises(ValueError, match="valid values: error, drop"):
        PairedCollection(samples, incomplete="keep")


def test_incomplete_drop_of_everything_is_an_error():
    samples = [PairedSample("a/1", "X"), PairedSample("a/2", "Y")]
    with pytest.raises(ValueError, match="nothing is left"):
        PairedCollection(samples, incomplete="drop")


def test_magnifications_are_paired_separately():
    samples = _samples(specimens=("s/1",), magnification="20x") + _samples(
        specimens=("s/1",), magnification="40x"
    )
    collection = PairedCollection(samples)
    assert collection.magnifications == ["20x", "40x"]
    assert collection.groups == [("s/1", "20x"), ("s/1", "40x")]
    assert [s.magnification for s in collection.by_scanner("AT2")] == ["20x", "40x"]
    assert len(collection.by_scanner("AT2", magnification="40x")) == 1
    with pytest.raises(ValueError, match=r"s/1 @ 40x \(missing: P1000\)"):
        PairedCollection(samples[:-1])


def test_split_must_be_consistent_per_specimen():
    samples = _samples(specimens=("s/1",), split="train")
    samples[1] = PairedSample("s/1", "GT450", split="test")
    with pytest.raises(ValueError, match="several splits"):
        PairedCollection(samples)


def test_filter_get_and_by_specimen():
    samples = [
        PairedSample(sp, sc, split="test" if sp == "s/2" else "train")
        for sp in ("s/1", "s/2", "s/3")
        for sc in SCANNERS
    ]
    collection = PairedCollection(samples)
    train = collection.filter(split="train", scanners=["P1000", "AT2"])
    assert train.specimens == ["s/1", "s/3"]
    assert train.scanners == ["AT2", "P1000"]  # the collection's order is kept
    assert collection.filter(specimens=["s/3"]).specimens == ["s/3"]
    assert collection.filter(split=["train", "test"]).specimens == collection.specimens
    assert list(collection.by_specimen("s/2")) == list(SCANNERS)
    assert collection.get("s/2", "GT450").split == "test"
    with pytest.raises(KeyError, match="No sample"):
        collection.get("s/9", "AT2")
    with pytest.raises(ValueError, match="Unknown scanner 'DP200'"):
        collection.filter(scanners=["DP200"])
    with pytest.raises(ValueError, match="left no samples"):
        collection.filter(split="val")


def test_natural_key():
    names = ["slide_10/sample_2", "slide_2/sample_10", "slide_2/sample_9"]
    assert sorted(names, key=natural_key) == [
        "slide_2/sample_9",
        "slide_2/sample_10",
        "slide_10/sample_2",
    ]


def test_manifest_round_trip(image_tree):
    collection, root = image_tree
    samples = list(collection)
    samples[0] = PairedSample(
        samples[0].specimen_id,
        samples[0].scanner,
        path=samples[0].path,
        label=0,
        mask_path=samples[0].mask_path,
        mpp=0.25,
        region=(1, 2, 10, 12),
    )
    collection = PairedCollection(samples)
    manifest = collection.to_manifest(root / "manifest.csv")
    text = manifest.read_text()
    assert str(root) not in text  # paths inside the folder are written relative
    again = read_manifest(manifest)
    assert list(again) == list(collection)
    assert again.scanners == collection.scanners


# ----------------------------------------------------------------- pixels
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


# ----------------------------------------------------------------- datasets
def test_image_dataset_items(image_tree, he_tile):
    collection, _ = image_tree
    dataset = PairedImageDataset(collection)
    assert len(dataset) == 9
    item = dataset[4]  # slide_1/sample_2, GT450
    assert item["specimen_id"] == "slide_1/sample_2"
    assert item["scanner"] == "GT450"
    assert item["scanner_index"] == 1
    assert item["magnification"] == ""
    assert item["label"] == 1
    np.testing.assert_array_equal(item["image"], he_tile[32:64, 40:80])
    assert item["mask"].shape == (32, 40)
    assert item["mask"].sum() == 16 * 40
    assert item["path"].endswith("GT450.png")


def test_image_dataset_transform_gets_image_and_mask(image_tree):
    collection, _ = image_tree
    plain = PairedImageDataset(collection)[0]
    flipped = PairedImageDataset(collection, transform=A.VerticalFlip(p=1.0))[0]
    np.testing.assert_array_equal(flipped["image"], plain["image"][::-1])
    np.testing.assert_array_equal(flipped["mask"], plain["mask"][::-1])
    with pytest.raises(TypeError, match="albumentations-style"):
        PairedImageDataset(collection, transform=lambda image, mask: image)[0]


def test_image_dataset_collates(image_tree):
    collection, _ = image_tree
    batch = next(iter(DataLoader(PairedImageDataset(collection), batch_size=4)))
    assert batch["image"].shape == (4, 32, 40, 3)
    assert batch["image"].dtype == torch.uint8
    assert batch["scanner"] == ["AT2", "GT450", "P1000", "AT2"]
    assert batch["label"].tolist() == [0, 0, 0, 1]


def test_group_dataset_stacks_scanners(image_tree, he_tile):
    collection, _ = image_tree
    dataset = PairedGroupDataset(collection)
    assert len(dataset) == 3
    item = dataset[2]
    assert item["specimen_id"] == "slide_2/sample_1"
    assert item["scanners"] == list(SCANNERS)
    assert item["image"].shape == (3, 32, 40, 3)
    for j in range(3):
        np.testing.assert_array_equal(item["image"][j], he_tile[64:96, j * 40 : j * 40 + 40])
    assert item["label"] == 2
    assert item["mask"].shape == (3, 32, 40)
    batch = next(iter(DataLoader(dataset, batch_size=2)))
    assert batch["image"].shape == (2, 3, 32, 40, 3)


def test_group_dataset_errors(image_tree, tmp_path, he_tile):
    collection, _ = image_tree
    samples = list(collection)
    with pytest.warns(UserWarning, match="dropped 1 incomplete"):
        dropped = PairedCollection(samples[:-1], incomplete="drop")
    assert len(PairedGroupDataset(dropped)) == 2
    relabelled = [
        PairedSample(s.specimen_id, s.scanner, path=s.path, label=s.label + (s.scanner == "AT2"))
        for s in samples
    ]
    with pytest.raises(ValueError, match="different labels across scanners"):
        PairedGroupDataset(PairedCollection(relabelled))[0]
    big = atomic_write_image(tmp_path / "big.png", he_tile[:50, :50])
    resized = [
        PairedSample(s.specimen_id, s.scanner, path=big if s.scanner == "AT2" else s.path)
        for s in samples
    ]
    with pytest.raises(ValueError, match="different sizes"):
        PairedGroupDataset(PairedCollection(resized))[0]
