"""Tests of the coefficient of variation (ScanGen Eq. 1) against hand-computed cases."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tia_scanner_robust.metrics.functional.cov import coefficient_of_variation, magnification_cov


def test_cov_hand_computed():
    res = coefficient_of_variation(
        [0.2, 0.4, 0.5, 0.5], ["s1", "s1", "s2", "s2"], ["AT2", "GT450", "AT2", "GT450"]
    )
    # s1: mu 0.3, sigma 0.1 (ddof=0) -> 1/3; s2: 0
    assert res.per_specimen == pytest.approx({"s1": 1 / 3, "s2": 0.0})
    assert res.cov == pytest.approx(1 / 6)
    assert res.mean_sigma == pytest.approx(0.05)
    assert res.n_used == 2
    assert res.excluded == []


def test_cov_matches_numpy_reference_with_missing():
    rng = np.random.default_rng(0)
    m = rng.uniform(0.05, 0.95, size=(40, 5))
    m[rng.random(m.shape) < 0.2] = np.nan
    res = coefficient_of_variation(m)
    counts = (~np.isnan(m)).sum(1)
    ok = counts >= 2
    ref = np.nanstd(m[ok], axis=1) / np.abs(np.nanmean(m[ok], axis=1))
    assert res.n_used == ok.sum()
    assert res.cov == pytest.approx(ref.mean(), rel=1e-12)
    assert res.mean_sigma == pytest.approx(np.nanstd(m[ok], axis=1).mean(), rel=1e-12)
    assert {e["specimen_id"] for e in res.excluded} == set(np.flatnonzero(~ok).tolist())


def test_cov_flat_equals_matrix_and_is_order_invariant():
    rng = np.random.default_rng(1)
    m = rng.uniform(0.1, 0.9, size=(12, 4))
    spec = np.repeat(np.arange(12), 4)
    grp = np.tile(["A", "B", "C", "D"], 12)
    flat = coefficient_of_variation(m.ravel(), spec, grp)
    mat = coefficient_of_variation(m)
    assert flat.cov == pytest.approx(mat.cov, rel=1e-12)
    perm = rng.permutation(m.size)
    shuffled = coefficient_of_variation(m.ravel()[perm], spec[perm], grp[perm])
    assert shuffled.cov == pytest.approx(flat.cov, rel=1e-12)
    assert shuffled.per_specimen == pytest.approx(flat.per_specimen)
    cols = coefficient_of_variation(m[:, ::-1])
    assert cols.cov == pytest.approx(mat.cov, rel=1e-12)


def test_cov_identical_predictions_is_zero():
    res = coefficient_of_variation(np.full((5, 3), 0.7))
    assert res.cov == 0.0
    assert res.n_used == 5


def test_cov_zero_mean_guard_never_inf():
    with pytest.warns(RuntimeWarning, match="CoV is NaN"):
        res = coefficient_of_variation(
            [-1.0, 1.0, 0.0], ["a", "a", "b"], ["x", "y", "x"], scale="logit"
        )
    assert math.isnan(res.cov)
    reasons = {e["specimen_id"]: e["reason"] for e in res.excluded}
    assert reasons["a"].startswith("|mean| < eps")
    assert reasons["b"].startswith("single group")
    assert res.n_used == 0
    res2 = coefficient_of_variation(
        [-1.0, 1.0, 1.0, 3.0], ["a", "a", "b", "b"], ["x", "y", "x", "y"], scale="logit"
    )
    assert res2.per_specimen == {"b": pytest.approx(0.5)}
    assert np.isfinite(res2.cov)


def test_cov_scale_conversions():
    p = np.array([0.2, 0.6, 0.7, 0.9])
    spec, grp = ["a", "a", "b", "b"], [0, 1, 0, 1]
    logits = np.log(p / (1 - p))
    via_prob = coefficient_of_variation(p, spec, grp, scale="logit", input_scale="probability")
    direct = coefficient_of_variation(logits, spec, grp, scale="logit")
    assert via_prob.cov == pytest.approx(direct.cov, rel=1e-9)
    back = coefficient_of_variation(logits, spec, grp, input_scale="logit")
    assert back.cov == pytest.approx(coefficient_of_variation(p, spec, grp).cov, rel=1e-9)


def test_cov_errors_and_nan_policy():
    with pytest.raises(ValueError, match="empty"):
        coefficient_of_variation([], [], [])
    with pytest.raises(ValueError, match="more than one prediction"):
        coefficient_of_variation([0.1, 0.2], ["a", "a"], ["x", "x"])
    with pytest.raises(ValueError, match="same length"):
        coefficient_of_variation([0.1, 0.2], ["a"], ["x", "y"])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        coefficient_of_variation([0.1, 2.0], ["a", "a"], ["x", "y"])
    with pytest.raises(ValueError, match="inf"):
        coefficient_of_variation([0.1, np.inf], ["a", "a"], ["x", "y"])
    with pytest.raises(ValueError, match="Unknown scale"):
        coefficient_of_variation([0.1, 0.2], ["a", "a"], ["x", "y"], scale="raw")
    with pytest.raises(ValueError, match="nan_policy='omit'"):
        coefficient_of_variation([0.1, np.nan, 0.3], ["a", "a", "a"], ["x", "y", "z"])
    res = coefficient_of_variation(
        [0.1, np.nan, 0.3, np.nan], ["a", "a", "a", "b"], ["x", "y", "z", "x"], nan_policy="omit"
    )
    assert res.per_specimen == {"a": pytest.approx(0.5)}
    assert res.excluded[0]["reason"] == "no valid prediction"


def test_magnification_cov():
    res = magnification_cov(
        [0.4, 0.6, 0.5, 0.5, 0.2, 0.2],
        ["s1", "s1", "s1", "s1", "s2", "s2"],
        ["AT2", "AT2", "P", "P", "AT2", "P"],
        ["40x", "20x", "40x", "20x", "40x", "40x"],
    )
    assert res.per_specimen == pytest.approx({"s1|AT2": 0.2, "s1|P": 0.0})
    assert res.cov == pytest.approx(0.1)
    assert sorted(res.excluded_ids) == ["s2|AT2", "s2|P"]


def test_cov_to_dict_is_strict_json():
    m = np.array([[0.2, 0.4], [0.7, np.nan]])
    out = coefficient_of_variation(m, specimen_ids=["a", "b"]).to_dict()
    text = json.dumps(out, allow_nan=False)
    assert json.loads(text)["per_specimen"] == {"a": pytest.approx(1 / 3)}
