"""The empty-vs-empty policy of paired Dice: an all-empty model never scores 1.0 silently."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tia_scanner_robust.metrics import functional
from tia_scanner_robust.metrics.consistency import PairedConsistency, ScannerConsistency
from tia_scanner_robust.metrics.functional import (
    DEFAULT_EMPTY_PAIRS,
    empty_pair_mask,
    paired_dice,
    pairwise_consistency,
)


def _background_only(n=12, size=16):
    return np.zeros((n, size, size), np.int64)


def test_all_background_model_is_not_perfectly_consistent_by_default():
    maps = _background_only()
    outputs = {"AT2": maps, "GT450": maps, "P1000": maps}
    with pytest.warns(RuntimeWarning, match="empty-vs-empty"):
        res = pairwise_consistency(outputs)
    assert DEFAULT_EMPTY_PAIRS == "exclude"
    assert np.isnan(res.average)
    assert np.isnan(res.minimum)
    assert res.n_empty_total == 3 * 12
    assert res.empty_fraction == 1.0
    assert all(n == 0 for n in res.n_samples.values())
    out = res.to_dict()
    json.dumps(out, allow_nan=False)
    assert out["average"] is None
    assert out["empty_pairs"] == "exclude"
    assert out["n_empty_total"] == 36


def test_scorpion_definition_stays_reachable():
    maps = _background_only()
    res = pairwise_consistency({"A": maps, "B": maps}, empty_pairs="one")
    assert res.average == 1.0
    assert res.n_empty[("A", "B")] == 12  # counted even when they score 1
    with_bg = pairwise_consistency(
        {"A": maps, "B": maps}, ignore_background=True, empty_pairs="one"
    )
    assert with_bg.average == 1.0


def test_exclude_and_nan_differ_in_aggregation():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 3, size=(6, 8, 8))
    b = np.where(rng.random(a.shape) < 0.2, rng.integers(0, 3, a.shape), a)
    a[0] = b[0] = 0  # one empty-vs-empty sample
    excluded = pairwise_consistency({"A": a, "B": b})
    assert excluded.n_samples[("A", "B")] == 5
    assert excluded.pairs[("A", "B")] == pytest.approx(paired_dice(a[1:], b[1:]).mean())
    assert np.isnan(excluded.per_sample[("A", "B")][0])
    nan = pairwise_consistency({"A": a, "B": b}, empty_pairs="nan")
    assert np.isnan(nan.pairs[("A", "B")])
    one = pairwise_consistency({"A": a, "B": b}, empty_pairs="one")
    assert one.pairs[("A", "B")] == pytest.approx(paired_dice(a, b).mean())
    assert one.pairs[("A", "B")] > excluded.pairs[("A", "B")]


def test_empty_means_no_foreground_in_either_map():
    a = np.zeros((3, 4, 4), int)
    b = a.copy()
    b[1, 0, 0] = 2  # foreground on one side only: a real disagreement
    a[2, 1, 1] = b[2, 1, 1] = 1
    np.testing.assert_array_equal(empty_pair_mask(a, b), [True, False, False])
    np.testing.assert_array_equal(
        empty_pair_mask(a, b, ignore_background=True), [True, False, False]
    )
    got = paired_dice(a, b, empty_pairs="exclude")
    assert np.isnan(got[0])
    assert got[1] < 1.0
    with pytest.raises(ValueError, match="empty_pairs"):
        paired_dice(a, b, empty_pairs="zero")
    with pytest.raises(ValueError, match="dice"):
        pairwise_consistency({"A": np.zeros(3), "B": np.zeros(3)}, "abs_prob", empty_pairs="one")


def test_streaming_matches_functional_and_counts_empty():
    rng = np.random.default_rng(1)
    scanners = ["A", "B", "C"]
    maps = {s: rng.integers(0, 2, size=(8, 6, 6)) for s in scanners}
    for s in scanners:
        maps[s][[0, 3]] = 0
    maps["C"][3, 0, 0] = 1
    for policy in ("exclude", "one", "nan"):
        functional_res = pairwise_consistency(maps, empty_pairs=policy)
        metric = PairedConsistency("dice", scanners=scanners, empty_pairs=policy)
        for s in scanners:
            metric.update(list(range(4)), s, maps[s][:4])
            metric.update(list(range(4, 8)), s, maps[s][4:])
        streamed = metric.compute()
        assert streamed.n_empty == functional_res.n_empty
        for key, value in functional_res.pairs.items():
            assert streamed.pairs[key] == pytest.approx(value, nan_ok=True)
    assert functional_res.n_empty[("A", "B")] == 2
    assert functional_res.n_empty[("A", "C")] == 1
    task = ScannerConsistency("segmentation", scanners=scanners, empty_pairs="one")
    assert task.metrics["dice"].empty_pairs == "one"
    with pytest.raises(ValueError, match="dice"):
        PairedConsistency("agreement", empty_pairs="one")


def test_new_modules_are_reexported():
    import importlib  # noqa: PLC0415

    for name in ("bootstrap", "trivial", "dice"):
        module = importlib.import_module(f"tia_scanner_robust.metrics.functional.{name}")
        for public in module.__all__:
            assert getattr(functional, public) is getattr(module, public), (name, public)
            assert public in functional.__all__


def test_callable_score_reporting_empty_pairs():
    def canvas_like(a, b):
        scores = paired_dice(a, b, empty_pairs="one")
        return scores, empty_pair_mask(a, b)

    canvas_like.reports_empty = True
    maps = {"A": np.zeros((3, 4, 4), int), "B": np.zeros((3, 4, 4), int)}
    maps["A"][0, 0] = maps["B"][0, 0] = 1
    metric = PairedConsistency(canvas_like, scanners=["A", "B"])
    for s, m in maps.items():
        metric.update([0, 1, 2], s, m)
    res = metric.compute()
    assert res.empty_pairs == "exclude"
    assert res.n_empty[("A", "B")] == 2
    assert res.pairs[("A", "B")] == 1.0
    assert res.n_samples[("A", "B")] == 1
