"""Scanner-robustness metrics: CoV, scanner-paired consistency, retrieval, analysis.

- :mod:`~tia_scanner_robust.metrics.functional`: pure functions (CoV of
  ScanGen Eq. 1, paired Dice / agreement / ``|delta p|`` / cosine, pairwise
  consistency with average and minimum over scanner pairs, plismbench top-k
  retrieval, Dice and ROC AUC against ground truth).
- :mod:`~tia_scanner_robust.metrics.consistency`: ``update`` / ``compute`` /
  ``reset`` classes over the same functions.
- :mod:`~tia_scanner_robust.metrics.analysis`: paired versus unpaired
  analysis (RGB statistics, feature projections, density-contour figures).

Examples:
    >>> import numpy as np
    >>> from tia_scanner_robust.metrics import pairwise_consistency
    >>> maps = np.zeros((3, 8, 8), int)
    >>> pairwise_consistency({"AT2": maps, "GT450": maps}).average
    1.0

"""

from __future__ import annotations

from tia_scanner_robust.metrics.analysis import (
    deviation_summary,
    paired_deviation,
    plot_paired_unpaired,
    project_2d,
    rgb_patch_statistics,
)
from tia_scanner_robust.metrics.consistency import (
    CoVAccumulator,
    CoVMetric,
    PairedConsistency,
    PairedRetrieval,
    ScannerConsistency,
)
from tia_scanner_robust.metrics.functional import (
    CoVResult,
    PairConsistency,
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

__all__ = [
    "CoVAccumulator",
    "CoVMetric",
    "CoVResult",
    "PairConsistency",
    "PairedConsistency",
    "PairedRetrieval",
    "ScannerConsistency",
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
    "roc_auc",
    "to_jsonable",
    "topk_retrieval_accuracy",
]
