"""Tests of the packed bit-plane Dice against a brute-force reference."""

from __future__ import annotations

import numpy as np
import pytest

from tia_scanner_robust.metrics.functional.dice import dice_score, paired_dice


def dice_reference(a, b, classes, ignore_index=None):
    """Per-sample per-class Python loop (the definition, written plainly)."""
    out = []
    for x, y in zip(a, b, strict=True):
        valid = np.ones(x.shape, bool)
        if ignore_index is not None:
            valid = (x != ignore_index) & (y != ignore_index)
        scores = []
        for c in classes:
            xa, yb = (x == c) & valid, (y == c) & valid
            denom = xa.sum() + yb.sum()
            if denom == 0:
                continue
            scores.append(2.0 * (xa & yb).sum() / denom)
        out.append(np.mean(scores) if scores else 1.0)
    return np.array(out)


@pytest.mark.parametrize(
    ("kwargs", "classes"),
    [
        ({}, [0, 1, 2, 3]),
        ({"ignore_background": True}, [1, 2, 3]),
        ({"classes": [1, 3]}, [1, 3]),
        ({"num_classes": 6}, [0, 1, 2, 3, 4, 5]),
    ],
)
def test_paired_dice_matches_bruteforce(kwargs, classes):
    rng = np.random.default_rng(2)
    a = rng.integers(0, 4, size=(8, 7, 9))  # 63 pixels: not a multiple of 64
    b = np.where(rng.random(a.shape) < 0.3, rng.integers(0, 4, size=a.shape), a)
    b[0] = 0  # a map with background only
    a[1] = b[1] = 0  # both background only: empty with ignore_background
    got = paired_dice(a, b, **kwargs)
    np.testing.assert_allclose(got, dice_reference(a, b, classes), rtol=1e-12)
    np.testing.assert_allclose(paired_dice(b, a, **kwargs), got, rtol=1e-12)
    if kwargs.get("ignore_background"):
        assert got[1] == 1.0


def test_paired_dice_ignore_index_matches_bruteforce():
    rng = np.random.default_rng(3)
    a = rng.integers(-1, 3, size=(5, 130))[:, None, :]  # 130 pixels per map: 3 words
    b = rng.integers(-1, 3, size=(5, 130))[:, None, :]
    got = paired_dice(a, b, ignore_index=-1)
    np.testing.assert_allclose(got, dice_reference(a, b, [0, 1, 2], ignore_index=-1))
    with pytest.raises(ValueError, match="negative label"):
        paired_dice(a, b)


def test_paired_dice_hand_cases():
    a = np.array([[0, 1], [1, 1]])
    b = np.array([[0, 1], [0, 1]])
    assert paired_dice(a, b)[0] == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert paired_dice(a, a)[0] == 1.0
    assert paired_dice(np.zeros((3, 3), int), np.ones((3, 3), int))[0] == 0.0
    empty = np.zeros((2, 4, 4), np.uint8)
    np.testing.assert_array_equal(paired_dice(empty, empty, ignore_background=True), [1.0, 1.0])
    assert paired_dice(a.astype(bool), b.astype(bool))[0] == pytest.approx(paired_dice(a, b)[0])


def test_paired_dice_num_classes_does_not_change_score():
    rng = np.random.default_rng(4)
    a, b = rng.integers(0, 3, size=(2, 4, 16, 16))
    np.testing.assert_allclose(paired_dice(a, b), paired_dice(a, b, num_classes=10))


def test_paired_dice_errors_and_nan_policy():
    a = np.zeros((2, 4, 4))
    b = a.copy()
    b[1, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        paired_dice(a, b)
    got = paired_dice(a, b, nan_policy="omit")
    assert got[0] == 1.0
    assert np.isnan(got[1])
    with pytest.raises(TypeError, match="integer class labels"):
        paired_dice(a + 0.5, a)
    with pytest.raises(ValueError, match="num_classes"):
        paired_dice(np.full((2, 2), 3), np.zeros((2, 2), int), num_classes=3)
    with pytest.raises(ValueError, match="same shape"):
        paired_dice(np.zeros((2, 4, 4), int), np.zeros((2, 4, 5), int))
    with pytest.raises(ValueError, match="empty"):
        paired_dice(np.zeros((0, 4, 4), int), np.zeros((0, 4, 4), int))


def test_dice_score_per_class_against_ground_truth():
    rng = np.random.default_rng(5)
    pred = rng.integers(0, 3, size=(6, 10, 10))
    target = rng.integers(0, 3, size=(6, 10, 10))
    target[0][target[0] == 2] = 1  # class 2 absent from the target of sample 0
    pred[0][pred[0] == 2] = 0  # and from the prediction: skipped -> NaN
    per_class = dice_score(pred, target, per_class=True)
    assert per_class.shape == (6, 3)
    assert np.isnan(per_class[0, 2])
    for c in range(3):
        for i in range(1, 6):
            p, t = pred[i] == c, target[i] == c
            assert per_class[i, c] == pytest.approx(2 * (p & t).sum() / (p.sum() + t.sum()))
    np.testing.assert_allclose(dice_score(pred, target), np.nanmean(per_class, axis=1))
