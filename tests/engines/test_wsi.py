"""The WSI-mode helpers: streamed canvas Dice and region geometry."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from tia_scanner_robust.engines import wsi as _wsi
from tia_scanner_robust.metrics.functional import paired_dice


def test_canvas_dice_matches_paired_dice(tmp_path):
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 3, (2, 70, 90))
    b[:10] = 0
    handles = []
    for name, arr in (("a", a), ("b", b)):
        group = zarr.open_group(str(tmp_path / f"{name}.zarr"), mode="w")
        group.create_array("predictions", data=arr.astype(np.uint8), chunks=(16, 16))
        handles.append(_wsi.RegionHandle(str(tmp_path / f"{name}.zarr"), (5, 7, 85, 67)))
    score = _wsi.CanvasDice(handles, 3)
    expected = paired_dice(a[7:67, 5:85], b[7:67, 5:85])[0]
    assert score.pair(*handles) == pytest.approx(expected)
    no_bg = _wsi.CanvasDice(handles, 3, ignore_background=True).pair(*handles)
    assert no_bg == pytest.approx(
        paired_dice(a[7:67, 5:85], b[7:67, 5:85], ignore_background=True)[0]
    )


def test_region_box_geometry():
    geo = {"baseline": (2000, 1000), "read": (1000, 500), "scale": (0.5, 0.5), "mpp": 0.25}
    # width/height at 0.5 um/px = 2x baseline pixels, then scaled to the 0.5 um/px read grid
    assert _wsi.region_box((200, 100, 50, 40), 0.5, geo) == (100, 50, 150, 90)
    assert _wsi.region_box((1900, 900, 400, 400), None, geo) == (950, 450, 1000, 500)
