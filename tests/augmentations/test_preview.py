"""Tests of the augmentation preview grid and the ``augment-preview`` command."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from tia_scanner_robust._validation import read_rgb_image
from tia_scanner_robust.augmentations.preview import (
    make_augmentation_preview,
    save_augmentation_preview,
)
from tia_scanner_robust.augmentations.scanner import SCANNER_PROFILES, simulate_scanner
from tia_scanner_robust.cli import main
from tia_scanner_robust.cli.augment_preview import augment_preview

TILE = 64


@pytest.fixture(scope="module")
def image(he_image: np.ndarray) -> np.ndarray:
    """A 200x160 crop: the preview shows its 64x64 centre."""
    return np.ascontiguousarray(he_image[100:300, 500:660])


@pytest.fixture(scope="module")
def grid(image: np.ndarray) -> np.ndarray:
    return make_augmentation_preview(image, seed=0, n_samples=2, tile_size=TILE)


def _centre(image: np.ndarray, size: int = TILE) -> np.ndarray:
    top, left = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
    return np.ascontiguousarray(image[top : top + size, left : left + size])


def _locate(grid: np.ndarray, cell: np.ndarray) -> tuple[float, tuple[int, int]]:
    """Smallest mean squared difference of ``cell`` over ``grid`` and where."""
    scores = cv2.matchTemplate(grid.astype(np.float32), cell.astype(np.float32), cv2.TM_SQDIFF)
    min_val, _, min_loc, _ = cv2.minMaxLoc(scores)
    return min_val / cell.size, min_loc


def test_grid_contains_the_original_and_every_scanner_profile(
    grid: np.ndarray, image: np.ndarray
) -> None:
    assert grid.dtype == np.uint8
    assert grid.ndim == 3
    assert grid.shape[2] == 3
    tile = _centre(image)
    error, original_at = _locate(grid, tile)
    assert error < 1e-2  # pasted unchanged (float32 SQDIFF rounding)
    positions = []
    for name in SCANNER_PROFILES:
        error, where = _locate(grid, simulate_scanner(tile, name))
        assert error < 1e-2, name
        positions.append(where)
    # the scanner profiles fill one row, in canonical order, below the original
    ys = {y for _, y in positions}
    assert len(ys) == 1
    assert ys.pop() > original_at[1]
    xs = [x for x, _ in positions]
    assert xs == sorted(xs)
    assert xs[0] == original_at[0]


def _cell_tops(grid: np.ndarray, x0: int) -> list[int]:
    """Top rows of the cells in the grid column that starts at ``x0``."""
    band = grid[:, x0 : x0 + TILE]
    filled = ((band < 235).any(axis=-1).mean(axis=1) > 0.3).astype(np.int8)
    starts = np.flatnonzero(np.diff(np.concatenate([[0], filled])) == 1)
    # a cell is a run of TILE filled rows (its 1 px border adds 2)
    return [int(y) + 1 for y in starts if filled[y : y + TILE].all()]


def test_grid_rows_and_labels(grid: np.ndarray, image: np.ndarray) -> None:
    tile = _centre(image)
    _, (x0, y0) = _locate(grid, tile)
    # label text above the original cell and in the left margin: dark pixels on white
    caption = grid[max(0, y0 - 14) : y0 - 2, x0 : x0 + TILE]
    margin = grid[y0 : y0 + TILE, : x0 - 4]
    assert (caption.min(axis=-1) < 120).sum() > 10
    assert (margin.min(axis=-1) < 120).sum() > 20
    # original, colorjitter, 3 x randstainna, fda, hestain, scanners: 8 rows of cells
    tops = _cell_tops(grid, x0)
    assert len(tops) == 8
    assert tops[0] == y0


def test_style_cells_differ_from_the_original(grid: np.ndarray, image: np.ndarray) -> None:
    tile = _centre(image)
    _, (x0, _) = _locate(grid, tile)
    tops = _cell_tops(grid, x0)
    reference = simulate_scanner(tile, "reference")
    assert np.array_equal(grid[tops[-1] : tops[-1] + TILE, x0 : x0 + TILE], reference)
    tile = tile.astype(np.float64)
    for top in tops[1:-1]:  # the six style rows, first draw
        cell = grid[top : top + TILE, x0 : x0 + TILE].astype(np.float64)
        # an augmented view of the same tissue: changed, yet strongly correlated
        assert np.abs(cell - tile).mean() > 0.5, top
        corr = np.corrcoef(cell.mean(-1).ravel(), tile.mean(-1).ravel())[0, 1]
        assert corr > 0.7, (top, corr)


def test_seeded_and_sized(image: np.ndarray, grid: np.ndarray) -> None:
    again = make_augmentation_preview(image, seed=0, n_samples=2, tile_size=TILE)
    assert np.array_equal(grid, again)
    other = make_augmentation_preview(image, seed=1, n_samples=2, tile_size=TILE)
    assert other.shape == grid.shape
    assert not np.array_equal(grid, other)
    # more draws than profiles -> a wider grid; a bigger tile -> a bigger grid
    wide = make_augmentation_preview(
        image, seed=0, n_samples=len(SCANNER_PROFILES) + 2, tile_size=TILE
    )
    assert wide.shape[1] > grid.shape[1]
    assert wide.shape[0] == grid.shape[0]


def test_small_and_float_images(image: np.ndarray) -> None:
    small = np.ascontiguousarray(image[:40, :48])
    out = make_augmentation_preview(small, n_samples=1, tile_size=TILE)
    assert _locate(out, small)[0] < 1e-2  # shown whole when smaller than the tile
    as_float = image.astype(np.float32) / 255.0
    out_float = make_augmentation_preview(as_float, n_samples=1, tile_size=TILE)
    assert np.array_equal(out_float, make_augmentation_preview(image, n_samples=1, tile_size=TILE))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_samples": 0}, ValueError, "n_samples must be in"),
        ({"n_samples": 2.5}, TypeError, "n_samples must be an int"),
        ({"tile_size": 8}, ValueError, "tile_size must be >= 32"),
        ({"seed": -1}, ValueError, "seed must be in"),
        ({"profiles": ["nope"]}, ValueError, "Unknown scanner profile"),
    ],
)
def test_bad_arguments(image: np.ndarray, kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        make_augmentation_preview(image, **kwargs)


def test_bad_image() -> None:
    with pytest.raises(ValueError, match="grayscale"):
        make_augmentation_preview(np.zeros((64, 64), np.uint8))


def test_save_from_array_and_path(tmp_path, image: np.ndarray, grid: np.ndarray) -> None:
    out = save_augmentation_preview(
        image, tmp_path / "sub" / "preview.png", n_samples=2, tile_size=TILE
    )
    assert out == tmp_path / "sub" / "preview.png"
    assert np.array_equal(read_rgb_image(out), grid)
    assert not list((tmp_path / "sub").glob(".*.tmp"))  # atomic write leaves no temp file
    source = tmp_path / "tissue.png"
    cv2.imwrite(str(source), image[..., ::-1])
    from_path = save_augmentation_preview(source, tmp_path / "b.png", n_samples=2, tile_size=TILE)
    assert np.array_equal(read_rgb_image(from_path), grid)
    with pytest.raises(FileNotFoundError, match=r"missing\.png"):
        save_augmentation_preview(tmp_path / "missing.png", tmp_path / "c.png")


def test_cli_with_image(tmp_path, image: np.ndarray, grid: np.ndarray) -> None:
    source = tmp_path / "tissue.png"
    cv2.imwrite(str(source), image[..., ::-1])
    out = tmp_path / "preview.png"
    args = [
        "augment-preview",
        str(source),
        "-o",
        str(out),
        "--tile-size",
        str(TILE),
        "--n-samples",
        "2",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert str(out) in result.output
    assert np.array_equal(read_rgb_image(out), grid)


def test_cli_default_image_and_errors(tmp_path, he_image: np.ndarray) -> None:
    out = tmp_path / "default.png"
    args = ["-o", str(out), "--tile-size", "48", "--n-samples", "1", "--seed", "3"]
    result = CliRunner().invoke(augment_preview, args)
    assert result.exit_code == 0, result.output
    assert "bundled" in result.output
    written = read_rgb_image(out)
    assert np.array_equal(
        written, make_augmentation_preview(he_image, seed=3, n_samples=1, tile_size=48)
    )
    missing = CliRunner().invoke(augment_preview, [str(tmp_path / "nope.png"), "-o", str(out)])
    assert missing.exit_code != 0
    assert "does not exist" in missing.output
    no_output = CliRunner().invoke(augment_preview, [])
    assert no_output.exit_code != 0
    assert "--output" in no_output.output
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    result = CliRunner().invoke(augment_preview, [str(bad), "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 1
    assert "Could not decode" in result.output
