"""The torch datasets over a paired collection."""

from __future__ import annotations

import albumentations as A  # noqa: N812 - the library's own convention
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from tia_scanner_robust._io import atomic_write_image
from tia_scanner_robust.data.collection import PairedCollection, PairedSample
from tia_scanner_robust.data.datasets import PairedGroupDataset, PairedImageDataset

SCANNERS = ("AT2", "GT450", "P1000")


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
