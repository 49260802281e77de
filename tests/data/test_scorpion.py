"""The SCORPION-layout reader on generated trees, well-formed and malformed."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tia_scanner_robust._io import atomic_write_image
from tia_scanner_robust.data.paired import PairedImageDataset, load_sample_image
from tia_scanner_robust.data.scorpion import read_scorpion, write_scanner_order

SCANNERS = ("AT2", "DP200", "GT450", "P1000", "Philips")


def make_tree(root, he_tile, *, slides=2, samples=2, scanners=SCANNERS, ext=".png"):
    """root/slide_i/sample_j/{scanner}{ext}, each image a distinct crop of the tile."""
    written = {}
    for i in range(1, slides + 1):
        for j in range(1, samples + 1):
            for k, scanner in enumerate(scanners):
                image = np.ascontiguousarray(he_tile[8 * k : 8 * k + 16, 8 * j : 8 * j + 24])
                suffix = ext if isinstance(ext, str) else ext[k % len(ext)]
                path = root / f"slide_{i}" / f"sample_{j}" / f"{scanner}{suffix}"
                atomic_write_image(path, image)
                written[(f"slide_{i}/sample_{j}", scanner)] = (path, image)
    return written


def test_reads_layout_with_scanners_from_file_stems(tmp_path, he_tile):
    written = make_tree(tmp_path, he_tile, ext=(".png", ".tif", ".PNG"))
    (tmp_path / "README.txt").write_text("ignored")
    (tmp_path / "slide_1" / "sample_1" / "notes.txt").write_text("ignored")
    (tmp_path / "slide_1" / "sample_1" / ".hidden.png").write_bytes(b"ignored")
    collection = read_scorpion(tmp_path)
    assert collection.scanners == list(SCANNERS)  # natural, case-insensitive order
    assert collection.specimens == [
        "slide_1/sample_1",
        "slide_1/sample_2",
        "slide_2/sample_1",
        "slide_2/sample_2",
    ]
    assert len(collection) == 20
    for sample in collection:
        path, image = written[(sample.specimen_id, sample.scanner)]
        assert sample.path == path
        assert sample.mask_path is None
        assert not sample.is_wsi
        np.testing.assert_array_equal(load_sample_image(sample), image)


def test_natural_order_of_slides_and_custom_scanner_names(tmp_path, he_tile):
    make_tree(tmp_path, he_tile, slides=10, samples=1, scanners=("scanB", "scanA"))
    collection = read_scorpion(tmp_path)
    assert collection.specimens[:3] == ["slide_1/sample_1", "slide_2/sample_1", "slide_3/sample_1"]
    assert collection.specimens[-1] == "slide_10/sample_1"
    assert collection.scanners == ["scanA", "scanB"]
    assert read_scorpion(tmp_path, scanners=["scanB", "scanA"]).reference_scanner == "scanB"
    write_scanner_order(tmp_path, ["scanB", "scanA"])
    assert read_scorpion(tmp_path).scanners == ["scanB", "scanA"]


def test_masks_shared_and_per_scanner(tmp_path, he_tile):
    make_tree(tmp_path, he_tile, slides=1, samples=2, scanners=("AT2", "GT450"))
    mask = np.zeros((16, 24), np.uint8)
    mask[4:8] = 2
    cv2.imwrite(str(tmp_path / "slide_1" / "sample_1" / "mask.png"), mask)
    (tmp_path / "slide_1" / "sample_2" / "masks").mkdir()
    cv2.imwrite(str(tmp_path / "slide_1" / "sample_2" / "masks" / "GT450.png"), mask * 2)
    collection = read_scorpion(tmp_path)
    assert "mask" not in collection.scanners
    shared = [collection.get("slide_1/sample_1", s).mask_path.name for s in ("AT2", "GT450")]
    assert shared == ["mask.png", "mask.png"]
    assert collection.get("slide_1/sample_2", "AT2").mask_path is None
    item = PairedImageDataset(collection)[3]  # slide_1/sample_2, GT450
    assert item["scanner"] == "GT450"
    assert item["mask"].max() == 4


def test_missing_scanner_error_and_drop(tmp_path, he_tile):
    make_tree(tmp_path, he_tile)
    (tmp_path / "slide_2" / "sample_1" / "GT450.png").unlink()
    (tmp_path / "slide_2" / "sample_1" / "Philips.png").unlink()
    with pytest.raises(ValueError, match=r"slide_2/sample_1 \(missing: GT450, Philips\)") as info:
        read_scorpion(tmp_path)
    assert "incomplete='drop'" in str(info.value)
    with pytest.warns(UserWarning, match=r"dropped 1 incomplete specimen\(s\) \(3 sample\(s\)\)"):
        collection = read_scorpion(tmp_path, incomplete="drop")
    assert "slide_2/sample_1" not in collection.specimens
    assert len(collection) == 15


def test_unreadable_image_fails_on_load_or_verify(tmp_path, he_tile):
    make_tree(tmp_path, he_tile, slides=1, samples=1)
    broken = tmp_path / "slide_1" / "sample_1" / "DP200.png"
    broken.write_bytes(b"not a png")
    collection = read_scorpion(tmp_path)  # reading the layout does not decode pixels
    dataset = PairedImageDataset(collection)
    with pytest.raises(ValueError, match=r"Could not decode image file .*DP200\.png"):
        dataset[1]
    with pytest.raises(ValueError, match=r"1 of 5 sample\(s\) could not be read: .*DP200\.png"):
        read_scorpion(tmp_path, verify=True)


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        ("duplicate", "Two image files for 'AT2'"),
        ("wrong_depth", "Unexpected image file .*stray.png"),
        ("nested", "Unexpected folder"),
        ("unknown_mask", r"Masks for unknown scanner\(s\) \['Leica'\]"),
    ],
)
def test_malformed_trees(tmp_path, he_tile, damage, match):
    make_tree(tmp_path, he_tile, slides=1, samples=1)
    sample = tmp_path / "slide_1" / "sample_1"
    tile = np.ascontiguousarray(he_tile[:16, :24])
    if damage == "duplicate":
        atomic_write_image(sample / "AT2.jpg", tile)
    elif damage == "wrong_depth":
        atomic_write_image(tmp_path / "slide_1" / "stray.png", tile)
    elif damage == "nested":
        atomic_write_image(sample / "extra" / "AT2.png", tile)
    else:
        atomic_write_image(sample / "masks" / "Leica.png", tile)
    with pytest.raises(ValueError, match=match):
        read_scorpion(tmp_path)


def test_empty_and_missing_roots(tmp_path):
    with pytest.raises(FileNotFoundError, match="folder not found"):
        read_scorpion(tmp_path / "nope")
    (tmp_path / "slide_1" / "sample_1").mkdir(parents=True)
    with pytest.raises(ValueError, match="No images found"):
        read_scorpion(tmp_path)
    with pytest.raises(ValueError, match="valid values: error, drop"):
        read_scorpion(tmp_path, incomplete="ignore")
