"""The end-to-end demo (``tia-scanner-robust demo --quick``), its task and its labels."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from skimage.color import rgb2hed

from tia_scanner_robust._validation import read_rgb_image
from tia_scanner_robust.augmentations.scanner import SCANNER_PROFILES, simulate_scanner
from tia_scanner_robust.cli import main
from tia_scanner_robust.experiments.labels import derive_labels, reference_rendering
from tia_scanner_robust.experiments.simcons_demo import build_demo_task
from tia_scanner_robust.training.data import read_mask

if TYPE_CHECKING:
    from pathlib import Path


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_labels_are_deterministic_and_follow_hematoxylin(he_image: np.ndarray) -> None:
    crop = np.ascontiguousarray(he_image[:256, :256])
    first = derive_labels(crop)
    second = derive_labels(crop.copy())
    assert first.dtype == np.uint8
    assert np.array_equal(first, second)
    assert set(np.unique(first).tolist()) == {0, 1}
    # nuclei are the hematoxylin-rich pixels of the reference rendering
    hema = rgb2hed(reference_rendering(crop))[..., 0]
    assert hema[first == 1].mean() > 2 * hema[first == 0].mean()
    # the binary scheme is the nuclei class of the three-class scheme
    three = derive_labels(crop, scheme="tissue")
    assert set(np.unique(three).tolist()) <= {0, 1, 2}
    assert np.array_equal(first, (three == 2).astype(np.uint8))
    # render=False labels the given image: same as rendering it first ourselves
    rendered = simulate_scanner(crop, next(iter(SCANNER_PROFILES.values())))
    assert np.array_equal(derive_labels(rendered, render=False), first)
    with pytest.raises(ValueError, match="scheme"):
        derive_labels(crop, scheme="cells")


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


def test_demo_quick_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    args = ["demo", "-o", str(out), "--quick", "--steps", "2", "--batch-size", "2", "--no-progress"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "paired Dice avg" in result.output  # the summary table
    html_path = out / "report.html"
    assert html_path.is_file()
    page = html_path.read_text(encoding="utf-8")
    # self-contained: every image inline, no external resource
    assert not re.search(r"""(?:src|href)=["'](?!data:)""", page)
    assert page.count('src="data:image/png;base64,') >= 3  # two heatmaps and the bar chart
    # the note says what the SimCons model adds besides the consistency loss
    assert "plus fda in the training pipeline, plus the SimCons consistency loss" in page
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert set(report["variants"]) == {"baseline", "simcons"}
    assert report["settings"]["steps"] == 2
    for entry in report["variants"].values():
        dice = entry["paired_dice"]
        assert 0.0 <= dice["minimum"] <= dice["average"] <= 1.0
        pairs = [v for v in entry["pairs"].values() if v is not None]
        assert len(entry["pairs"]) == 10  # 5 scanners
        assert dice["minimum"] == pytest.approx(min(pairs))
        assert dice["average"] == pytest.approx(np.mean(pairs))
        assert 0.0 <= entry["task_dice"] <= 1.0
        assert entry["training"]["global_step"] == 2
    # the runs are checkpointed: running again reuses the models and evaluations
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0, again.output
    assert again.output.count("trained (reused)") == 2


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
