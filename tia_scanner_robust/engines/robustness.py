"""Intervals, prediction summaries, trivial scores and warnings of an evaluation.

What keeps an evaluation from claiming a false "robust".

After the patch or WSI mode has measured everything,
:func:`finish_robustness` adds to the
:class:`~tia_scanner_robust.engines.results.EvaluationResult`:

- 95% bootstrap intervals over specimens (seeded, ``n_resamples``) of every
  pair score's average, minimum and worst, of each pair, and of the CoV
  (:mod:`tia_scanner_robust.metrics.functional.bootstrap`);
- per scanner, what the model predicted (``per_scanner[s]["predictions"]``:
  class pixel fractions, class histogram, NaN/inf counts) and the effective
  input resolution (``per_scanner[s]["input_resolution"]``);
- where ground truth exists, the trivial predictors' scores (``trivial``);
- the plain-sentence ``warnings``
  (:func:`~tia_scanner_robust.metrics.diagnostics.robustness_warnings`).

Examples:
    >>> sorted(TASK_METRIC)
    ['classification', 'segmentation']

"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from tia_scanner_robust.metrics.diagnostics import robustness_warnings
from tia_scanner_robust.metrics.functional import (
    bootstrap_consistency,
    bootstrap_cov,
    majority_class_accuracy,
    trivial_segmentation_scores,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from tia_scanner_robust.engines.checks import ResolutionLog
    from tia_scanner_robust.engines.results import EvaluationResult
    from tia_scanner_robust.metrics.summaries import PredictionSummary

__all__ = ["TASK_METRIC", "finish_robustness"]

#: Task -> (per-scanner key of the task performance, its name in messages).
TASK_METRIC = {"segmentation": ("mean_gt_dice", "Dice"), "classification": ("accuracy", "accuracy")}


def _trivial(
    task: str,
    trivial_samples: Mapping[str, Mapping[str, list[float]]],
    labels: Mapping[str, list[Any]],
) -> dict[str, Any] | None:
    """Trivial predictors' scores over every scanner's ground truth."""
    if task == "segmentation":
        names = sorted({n for rows in trivial_samples.values() for n in rows})
        if not names:
            return None
        pooled = {
            n: [v for rows in trivial_samples.values() for v in rows.get(n, [])] for n in names
        }
        return trivial_segmentation_scores(pooled)
    if task == "classification":
        pooled = [v for values in labels.values() for v in values]
        if not pooled or any(v is None for v in pooled):
            return None
        accuracy, label = majority_class_accuracy(np.asarray(pooled, dtype=np.int64))
        return {
            "majority_class": accuracy,
            "majority_label": label,
            "auc": 0.5,
            "best": f"majority_class (always class {label})",
            "best_score": accuracy,
        }
    return None


def finish_robustness(
    result: EvaluationResult,
    *,
    summaries: Mapping[str, PredictionSummary],
    resolution: ResolutionLog,
    trivial_samples: Mapping[str, Mapping[str, list[float]]],
    labels: Mapping[str, list[Any]],
    n_resamples: int,
    seed: int,
    model_mpp: float | None = None,
    output_rule: str | None = None,
    extra_warnings: list[str] | None = None,
) -> EvaluationResult:
    """Add intervals, summaries, trivial scores, resolution and warnings to ``result``.

    Args:
        result: The evaluation's result (changed in place and returned).
        summaries: Scanner -> its :class:`~tia_scanner_robust.metrics.summaries.PredictionSummary`.
        resolution: The images' sizes read and fed to the model.
        trivial_samples: Scanner -> trivial predictor name -> per-sample Dice.
        labels: Scanner -> per-sample labels (classification ground truth).
        n_resamples: Bootstrap resamples.
        seed: Bootstrap seed.
        model_mpp: Resolution the model reads at (µm/px), if known.
        output_rule: How model outputs were put on the input grid.
        extra_warnings: Warnings found while running (appended).

    Returns:
        ``result``.

    """
    for pair_result in result.consistency.values():
        bootstrap_consistency(pair_result, n_resamples=n_resamples, seed=seed)
    for cov in (result.cov, result.magnification_cov):
        if cov is not None:
            bootstrap_cov(cov, n_resamples=n_resamples, seed=seed)
    predictions = {s: summary.compute() for s, summary in summaries.items()}
    res_rows = resolution.to_dict(model_mpp=model_mpp, rule=output_rule)
    for scanner in result.scanners:
        row = result.per_scanner.setdefault(scanner, {})
        if scanner in predictions:
            row["predictions"] = predictions[scanner]
        if scanner in res_rows:
            row["input_resolution"] = res_rows[scanner]
    result.trivial = _trivial(result.task, trivial_samples, labels)
    key, metric = TASK_METRIC.get(result.task, (None, ""))
    task_scores = {
        s: row[key] for s, row in result.per_scanner.items() if key and row.get(key) is not None
    }
    result.warnings = robustness_warnings(
        consistency=result.primary_result,
        cov=result.cov,
        predictions=predictions,
        n_specimens=len(result.sample_ids),
        resized=resolution.resized(),
        task_scores=task_scores,
        task_metric=metric,
        trivial=result.trivial,
        class_names=result.class_dict,
    ) + list(extra_warnings or [])
    return result
