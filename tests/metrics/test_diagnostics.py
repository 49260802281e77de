"""The warnings that keep a report from claiming a false "robust"."""

from __future__ import annotations

import warnings

import numpy as np

from tia_scanner_robust.metrics.diagnostics import robustness_warnings
from tia_scanner_robust.metrics.functional import (
    coefficient_of_variation,
    pairwise_consistency,
)
from tia_scanner_robust.metrics.summaries import PredictionSummary


def _summary(maps):
    s = PredictionSummary("segmentation")
    s.update(maps)
    return s.compute()


def test_healthy_measurement_has_no_warning():
    rng = np.random.default_rng(0)
    maps = {s: rng.integers(0, 3, size=(12, 8, 8)) for s in "AB"}
    res = pairwise_consistency(maps)
    cov = coefficient_of_variation(rng.uniform(0.2, 0.8, size=(12, 2)))
    predictions = {s: _summary(m) for s, m in maps.items()}
    assert (
        robustness_warnings(consistency=res, cov=cov, predictions=predictions, n_specimens=12) == []
    )


def test_all_background_model_gets_every_relevant_warning():
    maps = np.zeros((3, 8, 8), int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = pairwise_consistency({"A": maps, "B": maps})
        cov = coefficient_of_variation(np.array([[0.0, 0.0], [0.0, 0.0], [0.007, 0.0]]))
    lines = robustness_warnings(
        consistency=res,
        cov=cov,
        predictions={"A": _summary(maps), "B": _summary(maps)},
        n_specimens=3,
        resized={"A": {"n_resized": 3, "n_images": 3, "from": [(256, 256)], "to": (128, 128)}},
        task_scores={"A": 0.30, "B": 0.30},
        trivial={"best": "all_background", "best_score": 0.45},
        class_names={0: "background"},
    )
    text = "\n".join(lines)
    assert "Constant predictions on scanners A, B: every output is class 0 (background)" in text
    assert "Most scanner-pair comparisons are empty-vs-empty: 3 of 3" in text
    assert "undefined (NaN) for every scanner pair" in text
    assert "only 3 specimen(s)" in text
    assert "CoV is computed over only 1 specimen(s)" in text
    assert "zero-mean guard" in text
    assert "Inputs resized on scanner A: 3 of 3 image(s) from 256x256 to 128x128" in text
    assert "no better than the trivial predictor all_background (0.450)" in text
    assert all(isinstance(line, str) for line in lines)


def test_consistent_but_trivial_wording():
    maps = np.ones((12, 4, 4), int)
    res = pairwise_consistency({"A": maps, "B": maps})
    lines = robustness_warnings(
        consistency=res,
        task_scores={"A": 0.5, "B": 0.9},
        trivial={"best": "all_foreground", "best_score": 0.6},
    )
    assert len(lines) == 1
    assert lines[0].startswith("Consistent but no better than trivial: paired dice average 1.000")
    assert "(A 0.500)" in lines[0]
