"""Tests of ROC AUC against scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from tia_scanner_robust.metrics.functional.classification import roc_auc


def test_roc_auc_matches_sklearn():
    rng = np.random.default_rng(14)
    y = rng.integers(0, 2, size=200)
    scores = np.round(rng.random(200) + 0.3 * y, 1)  # many ties
    assert roc_auc(y, scores) == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
    two_col = np.stack([1 - scores, scores], axis=1)
    assert roc_auc(y, two_col) == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
    assert roc_auc(y + 1, scores) == pytest.approx(roc_auc_score(y + 1, scores), abs=1e-12)
    y3 = rng.integers(0, 3, size=150)
    logits = rng.normal(size=(150, 3)) + np.eye(3)[y3]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    expected = roc_auc_score(y3, probs, multi_class="ovr", average="macro")
    assert roc_auc(y3, probs) == pytest.approx(expected, abs=1e-12)


def test_roc_auc_degenerate_cases():
    with pytest.warns(RuntimeWarning, match="one class"):
        assert math.isnan(roc_auc([1, 1, 1], [0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="NaN"):
        roc_auc([0, 1], [np.nan, 0.2])
    assert roc_auc([0, 1, 1], [0.1, np.nan, 0.9], nan_policy="omit") == 1.0
    with pytest.raises(ValueError, match="multi-class"):
        roc_auc([0, 1, 2], [0.1, 0.2, 0.3])
