"""Simulated-scanner builders: the demo set and build_paired_from_images."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from tests.data.test_registration import write_pyramidal_tiff
from tia_scanner_robust._io import atomic_write_image
from tia_scanner_robust._validation import read_rgb_image
from tia_scanner_robust.augmentations.scanner import SCANNER_PROFILES, simulate_scanner
from tia_scanner_robust.cli.build_paired import build_paired
from tia_scanner_robust.data.demo import (
    DEMO_MARKER,
    build_demo_dataset,
    build_paired_from_images,
    tissue_fraction,
)
from tia_scanner_robust.data.manifest import read_manifest
from tia_scanner_robust.data.paired import PairedGroupDataset
from tia_scanner_robust.data.scorpion import read_scorpion

PROFILES = list(SCANNER_PROFILES)


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    build_demo_dataset(root, tile_size=128, n_tiles=3, seed=0)
    return root


def test_demo_structure(demo_dir):
    names = sorted(_files(demo_dir))
    expected = sorted(
        [f"he/sample_{k}/{p}.png" for k in (1, 2, 3) for p in PROFILES]
        + ["manifest.csv", "scanners.txt", DEMO_MARKER]
    )
    assert names == expected
    assert (demo_dir / "scanners.txt").read_text().split() == PROFILES
    for reader in (
        lambda: read_scorpion(demo_dir),
        lambda: read_manifest(demo_dir / "manifest.csv"),
    ):
        collection = reader()
        assert collection.scanners == PROFILES
        assert collection.reference_scanner == PROFILES[0]
        assert collection.specimens == ["he/sample_1", "he/sample_2", "he/sample_3"]
    item = PairedGroupDataset(read_scorpion(demo_dir))[0]
    assert item["image"].shape == (len(PROFILES), 128, 128, 3)
    marker = json.loads((demo_dir / DEMO_MARKER).read_text())
    assert marker["parameters"]["tile_size"] == 128
    assert len(marker["files"]) == 3 * len(PROFILES)


def test_demo_images_are_simulated_tiles_of_the_bundled_image(demo_dir, he_image):
    collection = read_scorpion(demo_dir)
    tiles = {
        (x, y): np.ascontiguousarray(he_image[y : y + 128, x : x + 128])
        for y in range(0, 1000 - 127, 128)
        for x in range(0, 1000 - 127, 128)
    }
    for specimen in collection.specimens:
        reference = read_rgb_image(collection.get(specimen, PROFILES[0]).path)
        matches = [
            pos
            for pos, tile in tiles.items()
            if np.array_equal(simulate_scanner(tile, PROFILES[0]), reference)
        ]
        assert len(matches) == 1
        tile = tiles[matches[0]]
        for profile in PROFILES[1:]:
            written = read_rgb_image(collection.get(specimen, profile).path)
            np.testing.assert_array_equal(written, simulate_scanner(tile, profile))


def test_demo_is_deterministic_and_reused(demo_dir, tmp_path):
    other = tmp_path / "again"
    build_demo_dataset(other, tile_size=128, n_tiles=3, seed=0)
    assert _files(other) == _files(demo_dir)  # byte-identical, manifests included
    stamp = {p: p.stat().st_mtime_ns for p in other.rglob("*.png")}
    reused = build_demo_dataset(other, tile_size=128, n_tiles=3, seed=0)
    assert {p: p.stat().st_mtime_ns for p in other.rglob("*.png")} == stamp
    assert reused.specimens == ["he/sample_1", "he/sample_2", "he/sample_3"]


def test_demo_rebuilds_on_new_parameters_or_damage(tmp_path):
    root = tmp_path / "demo"
    build_demo_dataset(root, tile_size=128, n_tiles=3, seed=0, profiles=PROFILES[:2])
    smaller = build_demo_dataset(root, tile_size=128, n_tiles=2, seed=0, profiles=PROFILES[:2])
    assert smaller.specimens == ["he/sample_1", "he/sample_2"]
    assert not (root / "he" / "sample_3").exists()  # the old set's extra files are gone
    (root / "he" / "sample_1" / f"{PROFILES[1]}.png").unlink()
    repaired = build_demo_dataset(root, tile_size=128, n_tiles=2, seed=0, profiles=PROFILES[:2])
    assert all(s.path.is_file() for s in repaired)


def test_demo_seed_changes_tiles(tmp_path):
    a = build_demo_dataset(tmp_path / "a", tile_size=200, n_tiles=2, seed=0, profiles=PROFILES[:1])
    b = build_demo_dataset(tmp_path / "b", tile_size=200, n_tiles=2, seed=5, profiles=PROFILES[:1])
    images_a = [read_rgb_image(s.path) for s in a]
    images_b = [read_rgb_image(s.path) for s in b]
    assert any(not np.array_equal(x, y) for x, y in zip(images_a, images_b, strict=True))


def test_demo_refuses_foreign_folder_and_bad_sizes(tmp_path):
    (tmp_path / "mine.txt").write_text("precious")
    with pytest.raises(ValueError, match="holds no demo set"):
        build_demo_dataset(tmp_path, tile_size=128, n_tiles=1)
    with pytest.raises(ValueError, match=r"holds only 9 tissue tile\(s\) of 300 px"):
        build_demo_dataset(tmp_path / "x", tile_size=300, n_tiles=10)
    with pytest.raises(ValueError, match="Unknown scanner profile 'AT2'"):
        build_demo_dataset(tmp_path / "y", profiles=["AT2"])
    collection = build_demo_dataset(
        tmp_path, tile_size=128, n_tiles=1, overwrite=True, profiles=PROFILES[:1]
    )
    assert len(collection) == 1
    assert (tmp_path / "mine.txt").read_text() == "precious"


def test_build_from_images_tiles_skip_background(tmp_path, he_tile):
    canvas = np.full((128, 192, 3), 255, np.uint8)
    canvas[:, :64] = he_tile[:128, :64]
    canvas[:64, 64:128] = he_tile[:64, :64]
    assert tissue_fraction(canvas[:, 128:]) == 0.0
    assert tissue_fraction(he_tile) > 0.8
    collection = build_paired_from_images(
        {"slide": canvas, "tile": he_tile},
        tmp_path / "out",
        profiles=PROFILES[:2],
        tile_size=64,
        min_tissue_fraction=0.5,
        progress=False,
    )
    # canvas: 2x3 grid, tissue in column 0 (2 tiles) and the top of column 1 (1 tile).
    slide = [s for s in collection.specimens if s.startswith("slide/")]
    assert slide == ["slide/sample_1", "slide/sample_2", "slide/sample_3"]
    first = read_rgb_image(collection.get("slide/sample_2", PROFILES[1]).path)
    np.testing.assert_array_equal(first, simulate_scanner(canvas[:64, 64:128], PROFILES[1]))
    expected = sum(
        tissue_fraction(np.ascontiguousarray(he_tile[y : y + 64, x : x + 64])) >= 0.5
        for y in range(0, 256, 64)
        for x in range(0, 256, 64)
    )
    assert 8 <= expected < 16  # the tile holds some lumen
    assert len([s for s in collection.specimens if s.startswith("tile/")]) == expected
    whole = build_paired_from_images(
        [he_tile], tmp_path / "whole", profiles=PROFILES[:1], progress=False
    )
    assert whole.specimens == ["image_1/sample_1"]
    assert read_rgb_image(whole[0].path).shape == he_tile.shape


def test_build_from_images_validation(tmp_path, he_tile):
    with pytest.raises(ValueError, match=r"repeated: \['a'\]"):
        build_paired_from_images([tmp_path / "a.png", tmp_path / "b" / "a.png"], tmp_path / "x")
    with pytest.raises(ValueError, match="tile_size must be a positive integer"):
        build_paired_from_images([he_tile], tmp_path / "y", tile_size=0)
    (tmp_path / "z").mkdir()
    (tmp_path / "z" / "f").write_text("x")
    with pytest.raises(ValueError, match="not empty"):
        build_paired_from_images([he_tile], tmp_path / "z")


def test_cli_demo_and_simulate(tmp_path, he_tile):
    runner = CliRunner()
    result = runner.invoke(
        build_paired, ["demo", str(tmp_path / "d"), "--tile-size", "128", "--n-tiles", "2"]
    )
    assert result.exit_code == 0, result.output
    assert "2 specimens x 5 scanners" in result.output
    atomic_write_image(tmp_path / "in" / "tile.png", he_tile)
    args = ["simulate", str(tmp_path / "in"), "-o", str(tmp_path / "s"), "--tile-size", "128"]
    args += ["--profile", PROFILES[0], "--profile", PROFILES[2], "--no-progress"]
    result = runner.invoke(build_paired, args)
    assert result.exit_code == 0, result.output
    assert read_scorpion(tmp_path / "s").scanners == [PROFILES[0], PROFILES[2]]
    assert read_scorpion(tmp_path / "s").specimens == [f"tile/sample_{k}" for k in (1, 2, 3, 4)]
    bad = ["simulate", str(tmp_path / "in"), "-o", str(tmp_path / "t"), "--tile-size", "999"]
    result = runner.invoke(build_paired, bad)
    assert result.exit_code != 0
    assert "tile_size 999 exceeds the image 'tile'" in result.output


def test_build_from_wsi_tiles_in_tissue(tmp_path, he_image):
    slide = np.full((1600, 1600, 3), 255, np.uint8)
    slide[300:1300, 300:1300] = he_image
    path = write_pyramidal_tiff(tmp_path / "case.tif", slide, mpp=0.5)
    with pytest.raises(ValueError, match="needs tile_size and target_mpp"):
        build_paired_from_images([path], tmp_path / "a", progress=False)
    collection = build_paired_from_images(
        [path],
        tmp_path / "b",
        profiles=PROFILES[:1],
        tile_size=64,
        n_tiles=3,
        target_mpp=2.0,
        thumb_mpp=8.0,
        progress=False,
    )
    assert collection.specimens == ["case/sample_1", "case/sample_2", "case/sample_3"]
    assert all(s.mpp == 2.0 for s in collection)
    for sample in collection:
        tile = read_rgb_image(sample.path)
        assert tile.shape == (64, 64, 3)
        assert tissue_fraction(tile) > 0.4  # sampled in tissue, not on the white border
