"""Streaming classes equal the functional results; state and error handling."""

from __future__ import annotations

import numpy as np
import pytest

from tia_scanner_robust.metrics.consistency import (
    CoVAccumulator,
    CoVMetric,
    PairedConsistency,
    PairedRetrieval,
    ScannerConsistency,
)
from tia_scanner_robust.metrics.functional import (
    coefficient_of_variation,
    pairwise_consistency,
    pairwise_topk_retrieval,
)

SCANNERS = ["AT2", "GT450", "DP200", "P1000"]


def _label_maps(seed=0, n=10, size=(9, 11), n_classes=3):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, n_classes, size=(n, *size))
    out = {}
    for k, s in enumerate(SCANNERS):
        noise = rng.integers(0, n_classes, size=base.shape)
        out[s] = np.where(rng.random(base.shape) < 0.08 * (k + 1), noise, base)
    return out


def _assert_same(streamed, functional, ids):
    assert streamed.scanners == functional.scanners
    for pair, value in functional.pairs.items():
        assert streamed.pairs[pair] == pytest.approx(value, rel=1e-12)
        order = [streamed.specimen_ids.index(i) for i in ids]
        np.testing.assert_allclose(streamed.per_sample[pair][order], functional.per_sample[pair])
    assert streamed.average == pytest.approx(functional.average, rel=1e-12)
    assert streamed.minimum == pytest.approx(functional.minimum, rel=1e-12)
    assert streamed.min_pair == functional.min_pair


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"ignore_background": True}, {"num_classes": 3, "classes": [1, 2]}, {"num_classes": 4}],
)
def test_streamed_dice_equals_functional_scanner_by_scanner(kwargs):
    maps = _label_maps()
    ids = [f"slide_{i // 5}/sample_{i % 5}" for i in range(10)]
    expected = pairwise_consistency(maps, "dice", specimen_ids=ids, **kwargs)
    metric = PairedConsistency("dice", scanners=SCANNERS, **kwargs)
    rng = np.random.default_rng(1)
    for s in SCANNERS:  # one scanner at a time, shuffled batches of uneven size
        perm = rng.permutation(10)
        for chunk in (perm[:3], perm[3:4], perm[4:]):
            metric.update([ids[i] for i in chunk], s, maps[s][chunk])
    _assert_same(metric.compute(), expected, ids)
    assert metric.n_buffered == 0  # every specimen complete: buffers freed


def test_streamed_dice_specimen_major_with_growing_classes():
    maps = _label_maps(seed=2)
    maps["AT2"][0] = 0  # the first batch only holds class 0: class planes grow later
    ids = list(range(10))
    expected = pairwise_consistency(maps, "dice", specimen_ids=ids)
    metric = PairedConsistency("dice")  # scanners unknown: order of arrival
    for i in ids:  # one specimen at a time, every scanner in one batch
        metric.update([i] * 4, SCANNERS, np.stack([maps[s][i] for s in SCANNERS]))
    _assert_same(metric.compute(), expected, ids)
    assert metric.n_buffered == 40  # without `scanners` the buffer is kept


def test_streamed_dice_ignore_index_and_nan_omit():
    rng = np.random.default_rng(3)
    maps = {s: rng.integers(-1, 3, size=(6, 5, 7)) for s in SCANNERS[:3]}
    ids = list(range(6))
    expected = pairwise_consistency(maps, "dice", ignore_index=-1, specimen_ids=ids)
    metric = PairedConsistency("dice", ignore_index=-1, scanners=SCANNERS[:3])
    for s in SCANNERS[:3]:
        metric.update(ids, s, maps[s])
    _assert_same(metric.compute(), expected, ids)

    float_maps = {s: m.clip(0).astype(float) for s, m in maps.items()}
    float_maps["GT450"][2, 0, 0] = np.nan
    expected = pairwise_consistency(float_maps, "dice", nan_policy="omit", specimen_ids=ids)
    metric = PairedConsistency("dice", nan_policy="omit")
    for s in SCANNERS[:3]:
        metric.update(ids, s, float_maps[s])
    res = metric.compute()
    _assert_same(res, expected, ids)
    assert res.n_samples[("AT2", "GT450")] == 5


@pytest.mark.parametrize("score", ["agreement", "abs_prob", "cosine"])
def test_streamed_other_scores_equal_functional(score):
    rng = np.random.default_rng(4)
    shape = (12, 5) if score == "cosine" else (12,)
    outputs = {s: rng.random(shape) for s in SCANNERS}
    ids = [f"s{i}" for i in range(12)]
    expected = pairwise_consistency(outputs, score, specimen_ids=ids)
    metric = PairedConsistency(score, scanners=SCANNERS)
    for s in reversed(SCANNERS):  # arrival order differs from canonical order
        metric.update(ids[6:], s, outputs[s][6:])
    for s in SCANNERS:
        metric.update(ids[:6], s, outputs[s][:6])
    _assert_same(metric.compute(), expected, ids)


def test_missing_pairs_are_nan_and_reset():
    metric = PairedConsistency("agreement")
    metric.update(["a", "b"], "A", [0, 1])
    metric.update(["a"], "B", [0])
    metric.update(["b"], "C", [0])
    res = metric.compute()
    assert res.pairs[("A", "B")] == 1.0
    assert res.pairs[("A", "C")] == 0.0
    assert np.isnan(res.pairs[("B", "C")])
    assert res.n_samples[("B", "C")] == 0
    assert res.minimum == 0.0
    metric.reset()
    with pytest.raises(ValueError, match="at least 2 scanners"):
        metric.compute()


def test_update_errors_leave_state_unchanged():
    metric = PairedConsistency("cosine", scanners=["A", "B"])
    metric.update(["x", "y"], "A", np.ones((2, 3)))
    with pytest.raises(ValueError, match="already updated"):
        metric.update(["x"], "A", np.ones((1, 3)))
    with pytest.raises(ValueError, match="unknown scanner"):
        metric.update(["x"], "Z", np.ones((1, 3)))
    with pytest.raises(ValueError, match="one row per specimen"):
        metric.update(["x", "y"], "B", np.ones((3, 3)))
    with pytest.raises(ValueError, match="all-zero"):
        metric.update(["x", "y"], "B", np.zeros((2, 3)))
    metric.update(["x", "y"], "B", np.ones((2, 3)))  # still accepted after the failure
    assert metric.compute().pairs[("A", "B")] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="Unknown score"):
        PairedConsistency("iou")
    with pytest.raises(ValueError, match="at least 2 distinct"):
        PairedConsistency("dice", scanners=["A", "A"])


def test_paired_retrieval_equals_functional():
    rng = np.random.default_rng(5)
    base = rng.normal(size=(25, 6))
    emb = {s: base + 0.8 * rng.normal(size=base.shape) for s in SCANNERS}
    ids = list(range(25))
    expected = pairwise_topk_retrieval(emb, ks=(1, 3), gallery="joint", specimen_ids=ids)
    metric = PairedRetrieval(ks=(1, 3), gallery="joint", chunk_size=4)
    for s in SCANNERS:
        metric.update(ids[:10], s, emb[s][:10])
        metric.update(ids[10:], s, emb[s][10:])
    res = metric.compute()
    assert set(res) == {"top1", "top3"}
    _assert_same(res["top1"], expected[1], ids)
    _assert_same(res["top3"], expected[3], ids)


def test_cov_accumulator_equals_functional():
    rng = np.random.default_rng(6)
    probs = rng.uniform(0.1, 0.9, size=(20, 3))
    ids = [f"p{i}" for i in range(20)]
    metric = CoVAccumulator()
    for j, s in enumerate(["A", "B", "C"]):
        metric.update(probs[:, j], ids, s)
    expected = coefficient_of_variation(probs, specimen_ids=ids)
    res = metric.compute()
    assert res.cov == pytest.approx(expected.cov, rel=1e-12)
    assert res.per_specimen == pytest.approx(expected.per_specimen)
    metric.update([0.5], ["p0"], ["A"])
    with pytest.raises(ValueError, match="more than one prediction"):
        metric.compute()
    metric.reset()
    with pytest.raises(ValueError, match="before any update"):
        metric.compute()
    assert CoVMetric is CoVAccumulator


def test_scanner_consistency_tasks():
    rng = np.random.default_rng(7)
    seg = ScannerConsistency("segmentation", scanners=["A", "B"], ignore_background=True)
    maps = rng.integers(0, 2, size=(3, 4, 4))
    seg.update([0, 1, 2], "A", maps)
    seg.update([0, 1, 2], "B", maps)
    assert seg.compute()["dice"].average == 1.0
    emb = ScannerConsistency("embedding", ks=(1, 2))
    x = rng.normal(size=(4, 3))
    emb.update(range(4), "A", x)
    emb.update(range(4), "B", x)
    out = emb.compute()
    assert set(out) == {"cosine", "top1", "top2"}
    assert out["top1"].average == 1.0
    with pytest.raises(TypeError, match="unexpected option"):
        ScannerConsistency("classification", ks=(1,))
    with pytest.raises(ValueError, match="Unknown task"):
        ScannerConsistency("detection")
