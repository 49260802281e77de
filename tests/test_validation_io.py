from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from tia_scanner_robust._io import atomic_write_image, atomic_write_json, atomic_write_text

if TYPE_CHECKING:
    from pathlib import Path

from tia_scanner_robust._validation import (
    check_rgb_image,
    read_rgb_image,
    safe_output_path,
)


@pytest.mark.parametrize(
    ("image", "error", "match"),
    [
        (np.zeros((4, 4), np.uint8), ValueError, "grayscale"),
        (np.zeros((4, 4, 4), np.uint8), ValueError, "RGBA"),
        (np.zeros((0, 4, 3), np.uint8), ValueError, "empty"),
        (np.zeros((4, 4, 3), np.int32), TypeError, "dtype"),
        (np.full((4, 4, 3), np.nan, np.float32), ValueError, "NaN"),
        ([[1, 2, 3]], TypeError, "numpy array"),
    ],
)
def test_check_rgb_image_errors(image: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        check_rgb_image(image)


def test_read_rgb_image_roundtrip_and_errors(tmp_path: Path, he_tile: np.ndarray) -> None:
    path = atomic_write_image(tmp_path / "tile.png", he_tile)
    assert np.array_equal(read_rgb_image(path), he_tile)  # RGB order preserved
    with pytest.raises(FileNotFoundError, match=r"missing\.png"):
        read_rgb_image(tmp_path / "missing.png")
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"corrupt\.png"):
        read_rgb_image(corrupt)
    atomic_write_image(tmp_path / "gray.png", he_tile[..., 0])
    with pytest.raises(ValueError, match="grayscale"):
        read_rgb_image(tmp_path / "gray.png")


def test_atomic_write_leaves_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    atomic_write_json(target, {"x": 1})

    class Boom:
        pass

    with pytest.raises(TypeError):
        atomic_write_json(target, {"x": Boom()})
    assert target.read_text().strip().replace(" ", "").replace("\n", "") == '{"x":1}'
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temp file left
    atomic_write_text(target, "new")
    assert target.read_text() == "new"


def test_safe_output_path(tmp_path: Path) -> None:
    assert safe_output_path(tmp_path, "a/b.png") == (tmp_path / "a" / "b.png").resolve()
    with pytest.raises(ValueError, match="escapes"):
        safe_output_path(tmp_path, "../outside.png")
    with pytest.raises(ValueError, match="escapes"):
        safe_output_path(tmp_path, "/etc/passwd")
