"""Paired versus unpaired analysis: statistics, deviations, projections, figures."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest
from matplotlib.figure import Figure

from tia_scanner_robust.metrics import analysis
from tia_scanner_robust.metrics.analysis import (
    deviation_summary,
    paired_deviation,
    plot_paired_unpaired,
    project_2d,
    rgb_patch_statistics,
)


def test_rgb_patch_statistics_matches_numpy(he_tiles):
    tiles = he_tiles[:4]
    stats = rgb_patch_statistics(tiles)
    assert stats.shape == (4, 6)
    for row, tile in zip(stats, tiles, strict=True):
        px = tile.reshape(-1, 3).astype(np.float64)
        np.testing.assert_allclose(row[:3], px.mean(0))
        np.testing.assert_allclose(row[3:], px.std(0))
    np.testing.assert_allclose(rgb_patch_statistics(np.stack(tiles)), stats)
    as_float = [t.astype(np.float32) / 255 for t in tiles]
    np.testing.assert_allclose(rgb_patch_statistics(as_float), stats, rtol=1e-5)
    with pytest.raises(ValueError, match="empty"):
        rgb_patch_statistics([])
    with pytest.raises(ValueError, match="RGB"):
        rgb_patch_statistics([np.zeros((4, 4), np.uint8)])


def test_paired_deviation_puts_reference_at_origin():
    rng = np.random.default_rng(0)
    stats = {s: rng.normal(size=(7, 6)) for s in ("AT2", "GT450", "P1000")}
    dev = paired_deviation(stats, reference="GT450")
    assert not dev["GT450"].any()
    np.testing.assert_allclose(dev["AT2"], stats["AT2"] - stats["GT450"])
    assert not paired_deviation(stats)["AT2"].any()  # default: the first scanner
    with pytest.raises(ValueError, match="Unknown reference"):
        paired_deviation(stats, reference="X")
    with pytest.raises(ValueError, match="aligned"):
        paired_deviation({"A": np.zeros((3, 2)), "B": np.zeros((4, 2))})
    with pytest.raises(ValueError, match="NaN"):
        paired_deviation({"A": np.full((1, 2), np.nan), "B": np.zeros((1, 2))})


def test_deviation_summary_separates_paired_from_unpaired():
    rng = np.random.default_rng(1)
    base = rng.normal(0, 10, size=(50, 2))
    shifted = base + np.array([1.0, 0.0])  # a small, consistent scanner shift
    out = deviation_summary({"A": base, "B": shifted})
    b = out["scanners"]["B"]
    assert b["paired_mean"] == pytest.approx([1.0, 0.0])
    assert b["paired_std"] == pytest.approx([0.0, 0.0], abs=1e-12)
    assert b["paired_mean_norm"] == pytest.approx(1.0)
    assert b["centroid_shift"] == pytest.approx(1.0)
    assert out["columns"] == ["c0", "c1"]
    json.dumps(out, allow_nan=False)


def test_project_2d_pca_preserves_2d_geometry():
    rng = np.random.default_rng(2)
    feats = {"A": rng.normal(size=(10, 2)), "B": rng.normal(size=(8, 2)) + 3}
    out = project_2d(feats, method="pca")
    assert out["A"].shape == (10, 2)
    assert out["B"].shape == (8, 2)
    data = np.concatenate(list(feats.values()))
    proj = np.concatenate(list(out.values()))
    dist = np.linalg.norm(data[:, None] - data[None], axis=-1)
    dist_p = np.linalg.norm(proj[:, None] - proj[None], axis=-1)
    np.testing.assert_allclose(dist_p, dist, atol=1e-10)  # a rotation of 2-D data
    np.testing.assert_array_equal(project_2d(feats, method="pca")["A"], out["A"])


def test_project_2d_umap_is_seeded_and_falls_back(monkeypatch):
    calls = {}

    class FakeUMAP:
        def __init__(self, **kwargs):
            calls.update(kwargs)

        def fit_transform(self, data):
            return data[:, :2] * 2.0

    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=FakeUMAP))
    feats = {"A": np.arange(12.0).reshape(4, 3), "B": np.arange(12.0).reshape(4, 3) + 1}
    out = project_2d(feats, seed=7)
    assert calls["random_state"] == 7
    assert calls["n_neighbors"] == 7  # capped at n_samples - 1
    np.testing.assert_allclose(out["B"], feats["B"][:, :2] * 2.0)

    class BrokenUMAP(FakeUMAP):
        def fit_transform(self, data):
            msg = "too few samples"
            raise ValueError(msg)

    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=BrokenUMAP))
    with pytest.warns(RuntimeWarning, match="using PCA"):
        fallback = project_2d(feats)
    np.testing.assert_allclose(fallback["A"], project_2d(feats, method="pca")["A"])


def test_plot_paired_unpaired_writes_pngs(tmp_path, he_tiles):
    rng = np.random.default_rng(3)
    tiles = he_tiles[:12]
    stats = {"AT2": rgb_patch_statistics(tiles)}
    for name, shift in (("GT450", 6), ("P1000", -9)):
        shifted = [np.clip(t.astype(int) + shift, 0, 255).astype(np.uint8) for t in tiles]
        stats[name] = rgb_patch_statistics(shifted)
    feats = {s: rng.normal(size=(12, 16)) + i for i, s in enumerate(stats)}
    paths = plot_paired_unpaired(
        tmp_path / "figs",
        stats_by_scanner=stats,
        features_by_scanner=feats,
        projection="pca",
        prefix="demo_",
        dpi=60,
    )
    assert [p.name for p in paths] == [
        "demo_rgb_paired_unpaired.png",
        "demo_features_paired_unpaired.png",
    ]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == sorted(p.name for p in paths)
    with pytest.raises(ValueError, match="stats_by_scanner and/or"):
        plot_paired_unpaired(tmp_path)
    bad = {"A": np.zeros((3, 2)), "B": np.ones((3, 2))}
    with pytest.raises(ValueError, match=r"\(N, 6\)"):
        plot_paired_unpaired(tmp_path, stats_by_scanner=bad)


def test_density_contours_skip_degenerate_points():
    ax = Figure().subplots()
    assert not analysis._density_contours(ax, np.zeros((10, 2)), "C0", (0.5,))
    assert not analysis._density_contours(ax, np.ones((2, 2)), "C0", (0.5,))
    pts = np.random.default_rng(4).normal(size=(50, 2))
    assert analysis._density_contours(ax, pts, "C0", (0.5, 0.8))
