"""The synthetic FM-feature generator has the structure its docstring promises."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from tia_scanner_robust.data.features import FeatureStore
from tia_scanner_robust.data.synthetic_features import (
    DEFAULT_SCANNERS,
    SyntheticFeatureWorld,
    generate_synthetic_features,
)
from tia_scanner_robust.losses.pairs import scangen_pair_masks
from tia_scanner_robust.losses.scangen import cosine_distance_matrix


@pytest.fixture(scope="module")
def world():
    return SyntheticFeatureWorld(feature_dim=32, magnifications=("40x", "20x"), seed=0)


@pytest.fixture(scope="module")
def data(world):
    return world.sample(60, 32, seed=1)


def test_layout_and_registration(world, data):
    assert len(data) == 60 * len(DEFAULT_SCANNERS) * 2
    assert Counter(data.specimen_ids)["S0000"] == 12
    first = [i for i, s in enumerate(data.specimen_ids) if s == "S0000"]
    for i in first:  # every scan of a specimen covers the same (registered) patches
        np.testing.assert_array_equal(data.coordinates[i], data.coordinates[first[0]])
        assert data.features[i].shape == (32, 32)
        assert data.features[i].dtype == np.float32
    assert set(data.labels[first]) == {data.labels[first[0]]}


def test_exact_scanner_and_magnification_transform():
    world = SyntheticFeatureWorld(
        feature_dim=8, scanners=("R", "X"), magnifications=("40x", "20x"), noise=0.0
    )
    data = world.sample(3, 5, seed=2)
    by_key = {
        (p, s, m): f
        for p, s, m, f in zip(
            data.specimen_ids, data.scanners, data.magnifications, data.features, strict=True
        )
    }
    tissue = by_key[("S0001", "R", "40x")].astype(
        np.float64
    )  # the reference scan is the tissue itself
    gain, rotation, shift = (
        world.scanner_gains["X"],
        world.scanner_rotations["X"],
        world.scanner_shift_vectors["X"],
    )
    expected = (tissue * gain) @ rotation.T + shift
    np.testing.assert_allclose(by_key[("S0001", "X", "40x")], expected, atol=1e-5)
    content = data.specimen_content["S0001"]
    blur = world.magnification_blurs["20x"]
    expected_20x = (1 - blur) * tissue + blur * content + world.magnification_shift_vectors["20x"]
    np.testing.assert_allclose(by_key[("S0001", "R", "20x")], expected_20x, atol=1e-5)
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(8), atol=1e-10)  # a rotation


def test_scanner_shift_is_visible_in_the_means(world, data):
    means = data.slide_means()
    scanners = np.asarray(data.scanners)
    reference = means[scanners == DEFAULT_SCANNERS[0]].mean(axis=0)
    for scanner in DEFAULT_SCANNERS[1:]:
        difference = means[scanners == scanner].mean(axis=0) - reference
        shift = world.scanner_shift_vectors[scanner]
        cosine = difference @ shift / (np.linalg.norm(difference) * np.linalg.norm(shift))
        assert cosine > 0.9, scanner
    assert np.all(world.scanner_shift_vectors[DEFAULT_SCANNERS[0]] == 0)
    # slides cluster by scanner more than by specimen (as FM features do, ScanGen Fig. 3):
    # same specimen / other scanner is farther apart than same scanner / other specimen
    keep = np.asarray(data.magnifications) == "40x"
    attract, repel = scangen_pair_masks(np.asarray(data.specimen_ids)[keep], scanners[keep])
    distance = cosine_distance_matrix(torch.from_numpy(means[keep]))
    assert distance[attract].mean() > 1.2 * distance[repel].mean()


def test_labels_are_recoverable(world, data):
    scanners = np.asarray(data.scanners)
    mags = np.asarray(data.magnifications)
    keep = (scanners == "AT2") & (mags == "40x")
    projection = data.slide_means()[keep] @ world.label_direction
    assert roc_auc_score(data.labels[keep], projection) > 0.85
    assert 0.3 < data.labels.mean() < 0.7


def test_signal_fraction_and_single_scanner_pool():
    world = SyntheticFeatureWorld(
        feature_dim=16,
        signal_fraction=0.25,
        noise=0.0,
        content_scale=0.0,
        patch_spread=0.0,
        label_strength=5.0,
        seed=3,
    )
    data = world.sample(20, 40, scanners=("AT2",), positive_fraction=1.0, seed=4)
    projections = data.features[0] @ world.label_direction
    carrying = np.isclose(projections, 5.0, atol=1e-4).mean()
    assert 0.05 < carrying < 0.5
    pool = world.sample(10, 4, scanners=DEFAULT_SCANNERS[:2], scanners_per_specimen=1, seed=5)
    assert len(pool) == 10
    assert set(pool.scanners) <= set(DEFAULT_SCANNERS[:2])


def test_reproducible_and_variable_sizes():
    a = generate_synthetic_features(4, (3, 9), feature_dim=8, seed=7)
    b = generate_synthetic_features(4, (3, 9), feature_dim=8, seed=7)
    for x, y in zip(a.features, b.features, strict=True):
        np.testing.assert_array_equal(x, y)
    assert len({f.shape[0] for f in a.features}) > 1
    c = generate_synthetic_features(4, (3, 9), feature_dim=8, seed=8)
    assert not np.array_equal(a.features[0], c.features[0])


def test_write_to_store(tmp_path):
    data = generate_synthetic_features(3, 5, feature_dim=8, scanners=("A", "B"))
    store = FeatureStore(tmp_path / "syn.zarr")
    splits = {"S0000": "train", "S0001": "train", "S0002": "test"}
    assert data.write_to_store(store, split=splits) == 6
    assert data.write_to_store(store, split=splits) == 0  # finished slides are skipped
    assert len(store.filter(split="train")) == 4
    slide = store.read_slide("S0002", "B", "40x")
    np.testing.assert_array_equal(slide.features, data.features[5])
    assert slide.info.label == int(data.labels[5])
    assert slide.info.model == "synthetic"


def test_validation():
    with pytest.raises(ValueError, match="feature_dim"):
        SyntheticFeatureWorld(feature_dim=1)
    with pytest.raises(ValueError, match="scanner_shift"):
        SyntheticFeatureWorld(scanner_shift=-1.0)
    with pytest.raises(ValueError, match="distinct"):
        SyntheticFeatureWorld(scanners=("A", "A"))
    world = SyntheticFeatureWorld(feature_dim=4, scanners=("A", "B"))
    with pytest.raises(ValueError, match="Unknown scanners"):
        world.sample(2, scanners=("C",))
    with pytest.raises(ValueError, match="scanners_per_specimen"):
        world.sample(2, scanners_per_specimen=3)
