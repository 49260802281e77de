"""Tests of the top-k retrieval of the paired embedding against a full argsort."""

from __future__ import annotations

import numpy as np
import pytest

from tia_scanner_robust.metrics.functional.retrieval import (
    pairwise_topk_retrieval,
    retrieval_ranks,
    topk_retrieval_accuracy,
)


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
