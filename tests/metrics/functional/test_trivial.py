"""Trivial predictors' scores against ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from tia_scanner_robust.metrics.functional import (
    constant_prediction_dice,
    dice_score,
    majority_class_accuracy,
    trivial_segmentation_scores,
)


def test_constant_dice_equals_dice_of_a_constant_map():
    rng = np.random.default_rng(0)
    masks = (rng.random((5, 16, 16)) < 0.3).astype(np.int64)
    got = constant_prediction_dice(masks)
    assert set(got) == {"all_background", "all_foreground"}
    np.testing.assert_allclose(got["all_background"], dice_score(np.zeros_like(masks), masks))
    np.testing.assert_allclose(got["all_foreground"], dice_score(np.ones_like(masks), masks))
    summary = trivial_segmentation_scores(got)
    assert summary["best"] == "all_background"
    assert summary["best_score"] == pytest.approx(got["all_background"].mean())
    fg_only = constant_prediction_dice(masks, ignore_background=True)
    np.testing.assert_allclose(fg_only["all_background"], 0.0)


def test_multiclass_and_majority():
    mask = np.array([[[0, 1, 2, 2]]])
    assert list(constant_prediction_dice(mask)) == ["all_background", "all_class_1", "all_class_2"]
    assert majority_class_accuracy(np.array([1, 1, 0, 2])) == (0.5, 1)
    with pytest.raises(ValueError, match="empty"):
        majority_class_accuracy([])
