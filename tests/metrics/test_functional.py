"""Tests of the functional metric core against hand-computed cases and references."""

from __future__ import annotations

import json
import math
from itertools import combinations

import numpy as np
import pytest
from scipy.spatial.distance import cosine
from sklearn.metrics import roc_auc_score

from tia_scanner_robust.metrics.functional import (
    coefficient_of_variation,
    dice_score,
    label_agreement,
    magnification_cov,
    mean_abs_prob_diff,
    paired_cosine_similarity,
    paired_dice,
    pairwise_consistency,
    pairwise_topk_retrieval,
    retrieval_ranks,
    roc_auc,
    to_jsonable,
    topk_retrieval_accuracy,
)


# --------------------------------------------------------------------------- #
# references
# --------------------------------------------------------------------------- #
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


def ranks_reference(a, b, gallery):
    """Rank by full argsort of cosine similarities."""
    ua = a / np.linalg.norm(a, axis=1, keepdims=True)
    ub = b / np.linalg.norm(b, axis=1, keepdims=True)
    n = len(a)
    ranks_ab, ranks_ba = [], []
    for i in range(n):
        for q, own, other, out in ((ua, ua, ub, ranks_ab), (ub, ub, ua, ranks_ba)):
            cands = [other]
            labels = [np.arange(n)]
            if gallery == "joint":
                cands.append(np.delete(own, i, axis=0))
                labels.append(np.full(n - 1, -1))
            sims = np.concatenate(cands) @ q[i]
            order = np.argsort(-sims, kind="stable")
            out.append(int(np.flatnonzero(np.concatenate(labels)[order] == i)[0]))
    return np.array(ranks_ab), np.array(ranks_ba)


# --------------------------------------------------------------------------- #
# CoV
# --------------------------------------------------------------------------- #
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


# --------------------------------------------------------------------------- #
# Dice
# --------------------------------------------------------------------------- #
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


# --------------------------------------------------------------------------- #
# classification and embedding scores
# --------------------------------------------------------------------------- #
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


# --------------------------------------------------------------------------- #
# pairwise consistency
# --------------------------------------------------------------------------- #
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


# --------------------------------------------------------------------------- #
# retrieval
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("gallery", ["cross", "joint"])
@pytest.mark.parametrize("chunk_size", [1, 7, 1000])
def test_retrieval_ranks_match_argsort(gallery, chunk_size):
    rng = np.random.default_rng(11)
    a = rng.normal(size=(40, 8)).astype(np.float32)
    b = a + 1.2 * rng.normal(size=a.shape).astype(np.float32)
    got = retrieval_ranks(a, b, gallery=gallery, chunk_size=chunk_size)
    ref = ranks_reference(a.astype(np.float64), b.astype(np.float64), gallery)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])


def test_topk_accuracy_against_reference_and_identity():
    rng = np.random.default_rng(12)
    a = rng.normal(size=(30, 6))
    b = a + rng.normal(size=a.shape)
    ref_ab, ref_ba = ranks_reference(a, b, "cross")
    acc = topk_retrieval_accuracy(a, b)
    for k in (1, 3, 5, 10):
        assert acc[k] == pytest.approx(0.5 * ((ref_ab < k).mean() + (ref_ba < k).mean()))
    one_way = topk_retrieval_accuracy(a, b, ks=3, direction="a_to_b")
    assert one_way == {3: pytest.approx((ref_ab < 3).mean())}
    assert topk_retrieval_accuracy(a, a, ks=(1,), gallery="joint") == {1: 1.0}
    with pytest.raises(ValueError, match="ks"):
        topk_retrieval_accuracy(a, b, ks=(0,))


def test_topk_nan_policy_and_pairwise():
    rng = np.random.default_rng(13)
    a = rng.normal(size=(10, 4))
    b = a.copy()
    b[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        topk_retrieval_accuracy(a, b)
    ranks = retrieval_ranks(a, b, nan_policy="omit")
    assert ranks[0][3] == -1
    assert topk_retrieval_accuracy(a, b, ks=1, nan_policy="omit") == {1: 1.0}
    res = pairwise_topk_retrieval({"A": a, "B": a, "C": rng.normal(size=a.shape)}, ks=(1, 10))
    assert res[1].pairs[("A", "B")] == 1.0
    assert res[10].minimum == 1.0  # k = N: every pair is retrieved
    assert res[1].score == "top1"


# --------------------------------------------------------------------------- #
# ROC AUC
# --------------------------------------------------------------------------- #
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


def test_to_jsonable_handles_nested_results():
    obj = {("a", "b"): np.array([1.0, np.nan]), "n": np.int64(3), "f": [np.float32(np.inf)]}
    assert to_jsonable(obj) == {"a|b": [1.0, None], "n": 3, "f": [None]}
