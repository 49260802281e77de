from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from tia_scanner_robust._io import (
    atomic_write_image,
    atomic_write_json,
    atomic_write_text,
    to_jsonable,
)
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


def test_to_jsonable_handles_nested_results():
    obj = {("a", "b"): np.array([1.0, np.nan]), "n": np.int64(3), "f": [np.float32(np.inf)]}
    assert to_jsonable(obj) == {"a|b": [1.0, None], "n": 3, "f": [None]}


def test_to_jsonable_allow_nan_keeps_non_finite_floats() -> None:
    obj = {"clip": (np.float64(np.inf), 1), "m": [float("nan")], "p": Path("a/b"), 3: True}
    out = to_jsonable(obj, allow_nan=True)
    assert out["clip"] == [math.inf, 1]
    assert isinstance(out["clip"][0], float)
    assert math.isnan(out["m"][0])
    assert out["p"] == "a/b"
    assert out["3"] is True
    assert to_jsonable(obj)["clip"] == [None, 1]


# ------------------------------------------------ issue 14: inputs that hold
def test_max_image_pixels_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    from tia_scanner_robust._validation import (  # noqa: PLC0415
        DEFAULT_MAX_IMAGE_PIXELS,
        MAX_IMAGE_PIXELS_ENV,
        max_image_pixels,
    )

    monkeypatch.delenv(MAX_IMAGE_PIXELS_ENV, raising=False)
    assert max_image_pixels() == DEFAULT_MAX_IMAGE_PIXELS == 2**28
    monkeypatch.setenv(MAX_IMAGE_PIXELS_ENV, "1_000")
    assert max_image_pixels() == 1000
    assert max_image_pixels(5) == 5  # the argument wins
    monkeypatch.setenv(MAX_IMAGE_PIXELS_ENV, "0")
    assert max_image_pixels() is None
    with pytest.raises(ValueError, match="max_pixels"):
        max_image_pixels(-1)


def test_read_utf8_text_names_line_and_byte(tmp_path: Path) -> None:
    from tia_scanner_robust._validation import read_utf8_text  # noqa: PLC0415

    path = tmp_path / "m.csv"
    path.write_bytes(b"a,b\r\nok,1\r\nbad,\xff\r\n")
    with pytest.raises(
        ValueError, match=r"Manifest .*m\.csv is not UTF-8 text: byte 0xff on line 3"
    ):
        read_utf8_text(path, "manifest")
    path.write_bytes(b"\xef\xbb\xbfa,b\r\n")
    assert read_utf8_text(path) == "a,b\r\n"  # BOM dropped, line endings kept
    with pytest.raises(FileNotFoundError):
        read_utf8_text(tmp_path / "missing.csv")


def test_safe_torch_load_and_state_dict_checks(tmp_path: Path) -> None:
    import torch  # noqa: PLC0415

    from tia_scanner_robust._validation import (  # noqa: PLC0415
        load_state_dict_checked,
        safe_torch_load,
        state_dict_mismatch,
    )

    with pytest.raises(FileNotFoundError, match=r"Weights file not found: .*none\.pt"):
        safe_torch_load(tmp_path / "none.pt", what="weights file")
    path = tmp_path / "ok.pt"
    torch.save({"w": torch.ones(2)}, path)
    assert safe_torch_load(path)["w"].tolist() == [1.0, 1.0]
    linear = torch.nn.Linear(2, 3)
    assert state_dict_mismatch(linear.state_dict(), linear.state_dict()) == ""
    load_state_dict_checked(linear, torch.nn.Linear(2, 3).state_dict(), source="x")
    with pytest.raises(ValueError, match=r"1 missing key\(s\) \('bias'\)"):
        load_state_dict_checked(linear, {"weight": torch.zeros(3, 2)}, source="x")
    with pytest.raises(ValueError, match="not a state dict"):
        load_state_dict_checked(linear, [1, 2], source="x")


def test_current_umask_matches_os_umask() -> None:
    import os  # noqa: PLC0415

    from tia_scanner_robust._io import current_umask  # noqa: PLC0415

    previous = os.umask(0o027)
    try:
        assert current_umask() == 0o027
    finally:
        os.umask(previous)
