"""The demo task: splits, paired set, reuse, other images (:mod:`tia_scanner_robust.demo.task`)."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image

from tia_scanner_robust._validation import read_rgb_image
from tia_scanner_robust.augmentations.scanner import SCANNER_PROFILES, save_scanner_profile
from tia_scanner_robust.demo.labels import derive_labels
from tia_scanner_robust.demo.task import build_demo_task
from tia_scanner_robust.training.data import read_mask

if TYPE_CHECKING:
    from pathlib import Path


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_demo_task_splits_and_pairs(tmp_path: Path) -> None:
    task = build_demo_task(tmp_path / "task", train_tile_size=256, train_stride=128)
    marker = json.loads((tmp_path / "task" / "demo_task.json").read_text())
    split_x = marker["regions"]["test"][2]
    assert split_x == 600
    labels = read_mask(tmp_path / "task" / "labels.png")
    pattern = re.compile(r"tile_\d+_y(\d+)_x(\d+)")
    for split, size in (("train", 256), ("val", 128), ("test", 128)):
        paths = sorted((task.root / split / "masks").glob("*.png"))
        assert paths
        for path in paths:
            y, x = map(int, pattern.match(path.stem).groups())
            inside = x + size <= split_x if split != "test" else x >= split_x
            assert inside, (split, path.name)  # no training pixel is held out
            assert np.array_equal(read_mask(path), labels[y : y + size, x : x + size])
    # paired set: every held-out tile seen by every scanner profile, masks attached
    collection = task.collection
    assert collection.scanners == list(SCANNER_PROFILES)
    assert len(collection.specimens) == task.n_images("test") == 21
    for sample in collection.by_scanner("warm-soft")[:3]:
        assert sample.mask_path is not None
        assert sample.mask_path.is_file()
        assert read_rgb_image(sample.path).shape == (128, 128, 3)
    # rebuilding with the same parameters reuses the files
    mtime = (task.root / "paired" / "manifest.csv").stat().st_mtime_ns
    again = build_demo_task(tmp_path / "task", train_tile_size=256, train_stride=128)
    assert (task.root / "paired" / "manifest.csv").stat().st_mtime_ns == mtime
    assert [s.path for s in again.collection] == [s.path for s in collection]


def test_demo_task_from_another_image(tmp_path: Path, he_image: np.ndarray) -> None:
    # a smaller, flipped H&E image as an array and as a file
    image = np.ascontiguousarray(he_image[:600, ::-1][:, :600])
    sizes = {"train_tile_size": 128, "train_stride": 128, "test_tile_size": 96}
    task = build_demo_task(tmp_path / "array", image=image, **sizes)
    assert task.parameters["source"] == "array"
    labels = read_mask(tmp_path / "array" / "labels.png")
    assert labels.shape == image.shape[:2]  # built from this image, not the bundled one
    assert np.array_equal(labels, derive_labels(image))
    # held-out tiles come from the right 40 % of *this* image: 6 rows x 2 columns of 96 px
    assert len(task.collection.specimens) == 12
    path = tmp_path / "flipped.png"
    Image.fromarray(image).save(path)
    from_file = build_demo_task(tmp_path / "file", image=path, **sizes)
    assert from_file.parameters["source"] == "flipped.png"
    assert from_file.parameters["source_sha256"] == task.parameters["source_sha256"]
    # the default image gives another task (its hash differs)
    default = build_demo_task(tmp_path / "default", **sizes)
    assert default.parameters["source_sha256"] != task.parameters["source_sha256"]
    with pytest.raises(TypeError, match="uint8"):
        build_demo_task(tmp_path / "float", image=image.astype(np.float32) / 255, **sizes)


def test_demo_task_with_a_fitted_profile_file(tmp_path: Path, he_image: np.ndarray) -> None:
    fitted = replace(SCANNER_PROFILES["pale-low-contrast"], name="my-scanner")
    path = save_scanner_profile(fitted, tmp_path / "my-scanner.yaml")
    image = np.ascontiguousarray(he_image[:600, :600])
    sizes = {"train_tile_size": 128, "train_stride": 128, "test_tile_size": 96}
    task = build_demo_task(
        tmp_path / "task", image=image, profiles=["reference", str(path)], **sizes
    )
    assert task.collection.scanners == ["reference", "my-scanner"]
    sample = task.collection.by_scanner("my-scanner")[0]
    reference = task.collection.by_scanner("reference")[0]
    # the file's profile was applied: a pale, low-contrast rendering of the same tile
    mine, ref = read_rgb_image(sample.path), read_rgb_image(reference.path)
    assert mine.mean() > ref.mean() + 5
    assert mine.std() < ref.std()
    with pytest.raises(ValueError, match="profile"):
        build_demo_task(tmp_path / "bad", image=image, profiles=["reference", "nope"], **sizes)
