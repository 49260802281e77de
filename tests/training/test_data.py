"""The segmentation folder dataset and its transforms."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from tia_scanner_robust._io import atomic_write_image
from tia_scanner_robust.training.data import (
    SegmentationFolderDataset,
    build_eval_transform,
    build_train_transform,
    derive_seed,
    reseed_transform,
)

if TYPE_CHECKING:
    from pathlib import Path


def write_folder(root: Path, tiles: list[np.ndarray], size: int = 24) -> None:
    for i, tile in enumerate(tiles):
        crop = np.ascontiguousarray(tile[:size, :size])
        atomic_write_image(root / "images" / f"t{i}.png", crop)
        atomic_write_image(root / "masks" / f"t{i}.png", (crop.mean(-1) < 180).astype(np.uint8))


def test_folder_dataset_items_and_determinism(tmp_path: Path, he_tiles: list[np.ndarray]) -> None:
    write_folder(tmp_path, he_tiles[:3])
    raw = SegmentationFolderDataset(tmp_path, num_classes=2)
    item = raw[1]
    assert item["image"].dtype == np.uint8
    assert item["image"].shape == (24, 24, 3)
    assert item["mask"].dtype == np.int64
    np.testing.assert_array_equal(item["image"], he_tiles[1][:24, :24])
    ds = SegmentationFolderDataset(tmp_path, build_train_transform(16, blur_p=0.5, noise_p=0.5))
    a, b = ds[0], ds[0]
    assert a["image"].shape == (16, 16, 3)
    np.testing.assert_array_equal(a["image"], b["image"])  # same (seed, epoch, index)
    ds.set_epoch(1)
    draws = [ds[0]["image"] for _ in range(2)]
    np.testing.assert_array_equal(draws[0], draws[1])
    assert not np.array_equal(draws[0], a["image"])  # another epoch, another augmentation
    assert derive_seed(0, 1, 0) != derive_seed(0, 0, 1)
    assert build_eval_transform(8)(image=item["image"], mask=item["mask"])["image"].shape == (
        8,
        8,
        3,
    )


def test_flips_are_independent(he_tile: np.ndarray) -> None:
    # albumentations' own Compose(seed=...) seeds every child alike (flips fire together);
    # the per-item reseeding shares one stream, so both flip patterns occur.
    t = build_train_transform(None, blur_p=0.0, noise_p=0.0)
    ds_items = []
    for s in range(24):
        reseed_transform(t, s)
        out = t(image=he_tile)["image"]
        h = np.array_equal(out, he_tile[:, ::-1]) or np.array_equal(out, he_tile[::-1, ::-1])
        v = np.array_equal(out, he_tile[::-1]) or np.array_equal(out, he_tile[::-1, ::-1])
        ds_items.append((h, v))
    assert (True, False) in ds_items
    assert (False, True) in ds_items


def test_folder_dataset_errors(tmp_path: Path, he_tiles: list[np.ndarray]) -> None:
    with pytest.raises(FileNotFoundError, match="image folder"):
        SegmentationFolderDataset(tmp_path)
    write_folder(tmp_path, he_tiles[:2])
    (tmp_path / "masks" / "t1.png").unlink()
    atomic_write_image(tmp_path / "masks" / "zz.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"without a mask.*\['t1'\].*without an image.*\['zz'\]"):
        SegmentationFolderDataset(tmp_path)
    (tmp_path / "masks" / "zz.png").unlink()
    atomic_write_image(tmp_path / "masks" / "t1.png", np.zeros((5, 5), np.uint8))
    ds = SegmentationFolderDataset(tmp_path, num_classes=2)
    with pytest.raises(ValueError, match=r"t1\.png is \(24, 24\) but its mask"):
        ds[1]
    atomic_write_image(tmp_path / "masks" / "t1.png", np.full((24, 24), 7, np.uint8))
    with pytest.raises(ValueError, match=r"label\(s\) \[7\] outside \[0, 1\]"):
        ds[1]
    colour = np.zeros((24, 24, 3), np.uint8)
    colour[..., 0] = 1
    atomic_write_image(tmp_path / "masks" / "t1.png", colour)
    with pytest.raises(ValueError, match="single-channel"):
        ds[1]
