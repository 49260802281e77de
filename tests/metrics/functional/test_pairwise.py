"""Tests of the pairwise consistency over scanners (SCORPION protocol)."""

from __future__ import annotations

import json
from itertools import combinations

import numpy as np
import pytest

from tia_scanner_robust.metrics.functional.dice import paired_dice
from tia_scanner_robust.metrics.functional.pairwise import pairwise_consistency


def _maps(seed=7, n=6, s=4):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 3, size=(n, 12, 12))
    return {
        f"S{k}": np.where(rng.random(base.shape) < 0.1 * k, rng.integers(0, 3, base.shape), base)
        for k in range(s)
    }


def test_pairwise_consistency_dice_matrix_and_extremes():
    outputs = _maps()
    res = pairwise_consistency(outputs, "dice")
    assert res.scanners == list(outputs)
    assert np.isnan(np.diag(res.matrix)).all()
    np.testing.assert_allclose(res.matrix, res.matrix.T)
    for a, b in combinations(outputs, 2):
        expected = paired_dice(outputs[a], outputs[b]).mean()
        assert res.pairs[(a, b)] == pytest.approx(expected)
    assert res.average == pytest.approx(np.mean(list(res.pairs.values())))
    assert res.minimum == min(res.pairs.values())
    assert res.pairs[res.min_pair] == res.minimum
    json.dumps(res.to_dict(), allow_nan=False)


def test_pairwise_consistency_order_invariance():
    outputs = _maps(seed=8)
    res = pairwise_consistency(outputs, "dice")
    reversed_res = pairwise_consistency(dict(reversed(outputs.items())), "dice")
    for (a, b), value in res.pairs.items():
        assert reversed_res.pairs[(b, a)] == pytest.approx(value)
    assert reversed_res.average == pytest.approx(res.average)
    assert set(reversed_res.min_pair) == set(res.min_pair)
    perm = np.random.default_rng(0).permutation(6)
    shuffled = pairwise_consistency({k: v[perm] for k, v in outputs.items()}, "dice")
    assert shuffled.average == pytest.approx(res.average)
    assert shuffled.minimum == pytest.approx(res.minimum)


def test_pairwise_consistency_identical_and_other_scores():
    maps = np.random.default_rng(9).integers(0, 3, size=(4, 8, 8))
    assert pairwise_consistency({"A": maps, "B": maps, "C": maps}).minimum == 1.0
    probs = {"A": np.array([0.9, 0.2]), "B": np.array([0.6, 0.2]), "C": np.array([0.9, 0.5])}
    dist = pairwise_consistency(probs, "abs_prob")
    assert not dist.higher_is_better
    assert dist.worst == pytest.approx(0.3)
    assert dist.worst_pair == ("B", "C")
    emb = np.random.default_rng(10).normal(size=(5, 4))
    cos = pairwise_consistency({"A": emb, "B": emb, "C": -emb}, "cosine")
    assert cos.pairs[("A", "B")] == pytest.approx(1.0)
    assert cos.minimum == pytest.approx(-1.0)
    custom = pairwise_consistency(probs, lambda x, y: -np.abs(x - y))
    assert custom.pairs[("A", "B")] == pytest.approx(-dist.pairs[("A", "B")])


def test_pairwise_consistency_nan_omit_and_errors():
    probs = {"A": np.array([0.9, np.nan, 0.5]), "B": np.array([0.7, 0.2, 0.5])}
    with pytest.raises(ValueError, match="NaN"):
        pairwise_consistency(probs, "abs_prob")
    res = pairwise_consistency(probs, "abs_prob", nan_policy="omit")
    assert res.n_samples[("A", "B")] == 2
    assert res.pairs[("A", "B")] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="at least 2"):
        pairwise_consistency({"A": probs["A"]}, "abs_prob")
    with pytest.raises(ValueError, match="same number of samples"):
        pairwise_consistency({"A": np.zeros(2), "B": np.zeros(3)}, "abs_prob")
    with pytest.raises(ValueError, match="empty"):
        pairwise_consistency({"A": np.zeros(0), "B": np.zeros(0)}, "abs_prob")
    with pytest.raises(ValueError, match="Unknown score"):
        pairwise_consistency(probs, "iou")
