"""Scanner-robustness metrics: CoV, scanner-paired consistency, retrieval, analysis.

- :mod:`~tia_scanner_robust.metrics.functional`: pure functions (CoV of
  ScanGen Eq. 1, paired Dice / agreement / ``|delta p|`` / cosine, pairwise
  consistency with average and minimum over scanner pairs, plismbench top-k
  retrieval, Dice and ROC AUC against ground truth).
- :mod:`~tia_scanner_robust.metrics.consistency`: ``update`` / ``compute`` /
  ``reset`` classes over the same functions.
- ``PairConsistency`` and ``CoVMetric`` are deprecated aliases of
  :class:`PairConsistencyResult` and :class:`CoVAccumulator`.
- :mod:`~tia_scanner_robust.metrics.analysis`: paired versus unpaired
  analysis (RGB statistics, feature projections, density-contour figures).
- :mod:`~tia_scanner_robust.metrics.summaries`: what a model predicted per
  scanner (class fractions, histograms, NaN/inf counts).
- :mod:`~tia_scanner_robust.metrics.diagnostics`: :func:`robustness_warnings`,
  the sentences that keep a report from claiming a false "robust".

Examples:
    >>> import numpy as np
    >>> from tia_scanner_robust.metrics import pairwise_consistency
    >>> maps = np.ones((3, 8, 8), int)
    >>> pairwise_consistency({"AT2": maps, "GT450": maps}).average
    1.0

"""

from __future__ import annotations

from tia_scanner_robust._io import to_jsonable
from tia_scanner_robust.metrics._deprecation import deprecated_aliases
from tia_scanner_robust.metrics.analysis import (
    deviation_summary,
    paired_deviation,
    plot_paired_unpaired,
    project_2d,
    rgb_patch_statistics,
)
from tia_scanner_robust.metrics.consistency import (
    CoVAccumulator,
    PairedConsistency,
    PairedRetrieval,
    ScannerConsistency,
)
from tia_scanner_robust.metrics.diagnostics import robustness_warnings
from tia_scanner_robust.metrics.functional import (
    CoVResult,
    PairConsistencyResult,
    bootstrap_consistency,
    bootstrap_cov,
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
    topk_retrieval_accuracy,
)
from tia_scanner_robust.metrics.summaries import PredictionSummary, check_finite

__all__ = [
    "CoVAccumulator",
    "CoVResult",
    "PairConsistencyResult",
    "PairedConsistency",
    "PairedRetrieval",
    "PredictionSummary",
    "ScannerConsistency",
    "bootstrap_consistency",
    "bootstrap_cov",
    "check_finite",
    "coefficient_of_variation",
    "deviation_summary",
    "dice_score",
    "label_agreement",
    "magnification_cov",
    "mean_abs_prob_diff",
    "paired_cosine_similarity",
    "paired_deviation",
    "paired_dice",
    "pairwise_consistency",
    "pairwise_topk_retrieval",
    "plot_paired_unpaired",
    "project_2d",
    "retrieval_ranks",
    "rgb_patch_statistics",
    "robustness_warnings",
    "roc_auc",
    "to_jsonable",
    "topk_retrieval_accuracy",
]

# Deprecated aliases (warn on access): the old names of two renamed classes.
__getattr__ = deprecated_aliases(
    __name__, {"CoVMetric": CoVAccumulator, "PairConsistency": PairConsistencyResult}
)
