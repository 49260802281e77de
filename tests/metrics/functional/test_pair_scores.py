"""Tests of the classification and embedding pair scores."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cosine

from tia_scanner_robust.metrics.functional.pair_scores import (
    label_agreement,
    mean_abs_prob_diff,
    paired_cosine_similarity,
)


def test_label_agreement_and_abs_prob():
    np.testing.assert_array_equal(label_agreement([0, 1, 2], [0, 2, 2]), [1.0, 0.0, 1.0])
    probs_a = np.array([[0.9, 0.1], [0.4, 0.6]])
    probs_b = np.array([[0.6, 0.4], [0.7, 0.3]])
    np.testing.assert_array_equal(label_agreement(probs_a, probs_b), [1.0, 0.0])
    np.testing.assert_array_equal(label_agreement([0.8, 0.3], [0.6, 0.7]), [1.0, 0.0])
    maps = label_agreement(np.array([[[0, 1], [1, 1]]]), np.array([[[0, 1], [0, 0]]]))
    np.testing.assert_array_equal(maps, [0.5])
    np.testing.assert_allclose(mean_abs_prob_diff(probs_a, probs_b), [0.3, 0.3])
    np.testing.assert_allclose(
        mean_abs_prob_diff(probs_a[:, 1], probs_b[:, 1]), mean_abs_prob_diff(probs_a, probs_b)
    )
    with pytest.raises(ValueError, match="probabilities"):
        mean_abs_prob_diff([1.5], [0.5])
    with pytest.raises(ValueError, match="NaN"):
        mean_abs_prob_diff([np.nan, 0.5], [0.5, 0.5])
    omitted = mean_abs_prob_diff([np.nan, 0.5], [0.5, 0.25], nan_policy="omit")
    assert np.isnan(omitted[0])
    assert omitted[1] == 0.25


def test_cosine_matches_scipy():
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(2, 10, 7))
    got = paired_cosine_similarity(a, b)
    np.testing.assert_allclose(got, [1 - cosine(x, y) for x, y in zip(a, b, strict=True)])
    np.testing.assert_allclose(paired_cosine_similarity(a, a), 1.0)
    with pytest.raises(ValueError, match="all-zero"):
        paired_cosine_similarity(np.zeros((1, 3)), np.ones((1, 3)))
