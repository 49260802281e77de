"""Per-scanner prediction summaries and the non-finite check."""

from __future__ import annotations

import numpy as np
import pytest

from tia_scanner_robust.metrics.summaries import PredictionSummary, check_finite, nonfinite_counts


def test_segmentation_fractions_empty_and_constant():
    s = PredictionSummary("segmentation", num_classes=3)
    maps = np.zeros((4, 5, 5), int)
    maps[1, :2] = 2
    s.update(maps[:2])
    s.update([maps[2], maps[3][:3]])  # a list of maps of different sizes
    out = s.compute()
    assert out["n_samples"] == 4
    assert out["class_pixel_fractions"]["2"] == pytest.approx(10 / (3 * 25 + 15))
    assert out["class_pixel_fractions"]["1"] == 0.0
    assert out["n_empty"] == 3
    assert out["empty_fraction"] == 0.75
    assert out["classes_predicted"] == [0, 2]
    assert not out["constant"]


def test_classification_histogram_and_nonfinite_counts():
    s = PredictionSummary("classification")
    s.update(np.array([[0.1, 0.9], [0.2, 0.8]]))
    out = s.compute()
    assert out["class_histogram"] == {"0": 0, "1": 2}
    assert out["constant"]
    np.testing.assert_allclose(out["mean_probabilities"], [0.15, 0.85])
    s.update(np.array([[np.nan, 0.5]]))
    assert s.compute()["n_nan"] == 1
    assert nonfinite_counts(np.array([1, 2])) == {"n_nan": 0, "n_inf": 0}


def test_embedding_constant_detection():
    s = PredictionSummary("embedding")
    s.update(np.tile([[1.0, 2.0, 3.0]], (5, 1)))
    assert s.compute()["constant"]
    s.reset()
    s.update(np.random.default_rng(0).normal(size=(5, 3)))
    out = s.compute()
    assert not out["constant"]
    assert out["feature_dim"] == 3


def test_check_finite_names_where_and_sample():
    with pytest.raises(ValueError, match=r"scanner 'GT450', sample 's/2'.*1 NaN and 1 inf"):
        check_finite(
            np.array([[0.1, 0.9], [np.nan, np.inf]]),
            where="scanner 'GT450'",
            sample_ids=["s/1", "s/2"],
        )
    check_finite(np.zeros((2, 3)), where="x")
