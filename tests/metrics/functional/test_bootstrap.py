"""Bootstrap intervals over specimens: seeded, vectorised, beside each value."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tia_scanner_robust.metrics.functional import (
    bootstrap_consistency,
    bootstrap_cov,
    bootstrap_indices,
    bootstrap_mean_ci,
    coefficient_of_variation,
    pairwise_consistency,
)


def _probs(n=60, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.2, 0.8, size=n)
    return {s: np.clip(base + rng.normal(0, 0.1 * (k + 1), n), 0, 1) for k, s in enumerate("ABCD")}


def test_indices_are_one_seeded_array():
    idx = bootstrap_indices(7, n_resamples=50, seed=3)
    assert idx.shape == (50, 7)
    np.testing.assert_array_equal(idx, bootstrap_indices(7, n_resamples=50, seed=3))
    assert not np.array_equal(idx, bootstrap_indices(7, n_resamples=50, seed=4))
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_indices(7, n_resamples=0)


def test_consistency_intervals_match_a_plain_loop():
    res = pairwise_consistency(_probs(), "abs_prob")
    ci = bootstrap_consistency(res, n_resamples=300, seed=5)
    idx = bootstrap_indices(60, n_resamples=300, seed=5)
    keys = list(res.pairs)
    avg, worst = [], []
    for row in idx:  # the definition, one resample at a time
        means = [np.mean(res.per_sample[k][row]) for k in keys]
        avg.append(np.mean(means))
        worst.append(np.max(means))  # abs_prob: a distance, worst = maximum
    np.testing.assert_allclose(ci["average"], np.quantile(avg, [0.025, 0.975]))
    np.testing.assert_allclose(ci["worst"], np.quantile(worst, [0.025, 0.975]))
    assert ci["average"][0] <= res.average <= ci["average"][1]
    for key in keys:
        low, high = ci["pairs"][key]
        assert low <= res.pairs[key] <= high
    out = res.to_dict()
    json.dumps(out, allow_nan=False)
    assert out["average_ci95"] == ci["average"]
    assert out["bootstrap"]["n_resamples"] == 300
    assert out["pairs_ci95"]["A|B"] == ci["pairs"][("A", "B")]


def test_more_specimens_give_narrower_intervals():
    small = pairwise_consistency({k: v[:12] for k, v in _probs(400).items()}, "abs_prob")
    large = pairwise_consistency(_probs(400), "abs_prob")
    w_small = np.diff(bootstrap_consistency(small, n_resamples=400)["average"])[0]
    w_large = np.diff(bootstrap_consistency(large, n_resamples=400)["average"])[0]
    assert w_large < w_small


def test_cov_interval_and_degenerate_cases():
    m = np.random.default_rng(1).uniform(0.2, 0.8, size=(40, 3))
    res = coefficient_of_variation(m)
    ci = bootstrap_cov(res, n_resamples=400, seed=0)
    assert ci[0] <= res.cov <= ci[1]
    assert res.to_dict()["cov_ci95"] == ci
    single = coefficient_of_variation(m[:1])
    assert bootstrap_cov(single) is None
    assert single.to_dict()["cov_ci95"] is None
    assert bootstrap_mean_ci([np.nan, 1.0]) is None
    one = pairwise_consistency({"A": np.array([0.5]), "B": np.array([0.4])}, "abs_prob")
    assert bootstrap_consistency(one)["average"] is None
