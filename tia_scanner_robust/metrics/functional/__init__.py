"""Functional core of the scanner-robustness metrics (pure NumPy/SciPy).

Every metric here is a plain function over arrays; the stateful classes in
:mod:`tia_scanner_robust.metrics.consistency` call the same helpers, so the
streaming and the one-shot results are identical. One module per concern:

- :mod:`~tia_scanner_robust.metrics.functional.cov`:
  :func:`coefficient_of_variation` (ScanGen Eq. 1) and
  :func:`magnification_cov`: ``CoV = (1/N) sum_n sigma_n / |mu_n|``.
- :mod:`~tia_scanner_robust.metrics.functional.dice`: :func:`paired_dice`
  (two scanners' label maps) and :func:`dice_score` (against ground truth).
- :mod:`~tia_scanner_robust.metrics.functional.pair_scores`: per-sample pair
  scores :func:`label_agreement` and :func:`mean_abs_prob_diff`
  (classification), :func:`paired_cosine_similarity` (embeddings).
- :mod:`~tia_scanner_robust.metrics.functional.pairwise`:
  :func:`pairwise_consistency`: every unordered scanner pair, averaged over
  samples, with the average and the minimum over pairs (SCORPION protocol).
- :mod:`~tia_scanner_robust.metrics.functional.retrieval`:
  :func:`retrieval_ranks`, :func:`topk_retrieval_accuracy` and
  :func:`pairwise_topk_retrieval`: plismbench-style top-k retrieval of the
  paired embedding, chunked (bounded memory, no full argsort).
- :mod:`~tia_scanner_robust.metrics.functional.classification`:
  :func:`roc_auc` against ground truth.
- :mod:`~tia_scanner_robust.metrics.functional.bootstrap`: seeded,
  vectorised bootstrap intervals over specimens (:func:`bootstrap_consistency`,
  :func:`bootstrap_cov`, :func:`bootstrap_mean_ci`).
- :mod:`~tia_scanner_robust.metrics.functional.trivial`: scores of trivial
  predictors (constant label map, majority class) against ground truth.
- :mod:`~tia_scanner_robust.metrics.functional.core`: the shared array helpers.

``PairConsistency`` is a deprecated alias of :class:`PairConsistencyResult`.

Examples:
    >>> import numpy as np
    >>> from tia_scanner_robust.metrics.functional import coefficient_of_variation
    >>> res = coefficient_of_variation(
    ...     [0.2, 0.4, 0.5, 0.5], ["s1", "s1", "s2", "s2"], ["AT2", "GT450", "AT2", "GT450"]
    ... )
    >>> round(res.cov, 4), res.n_used
    (0.1667, 2)

"""

from __future__ import annotations

from tia_scanner_robust._io import to_jsonable
from tia_scanner_robust.metrics._deprecation import deprecated_aliases
from tia_scanner_robust.metrics.functional.bootstrap import (
    DEFAULT_CONFIDENCE,
    DEFAULT_N_RESAMPLES,
    bootstrap_consistency,
    bootstrap_cov,
    bootstrap_indices,
    bootstrap_mean_ci,
)
from tia_scanner_robust.metrics.functional.classification import roc_auc
from tia_scanner_robust.metrics.functional.core import NAN_POLICIES
from tia_scanner_robust.metrics.functional.cov import (
    COV_SCALES,
    LOGIT_CLIP,
    CoVResult,
    coefficient_of_variation,
    magnification_cov,
)
from tia_scanner_robust.metrics.functional.dice import (
    DEFAULT_EMPTY_PAIRS,
    EMPTY_PAIR_POLICIES,
    PackedLabels,
    dice_score,
    empty_pair_mask,
    paired_dice,
)
from tia_scanner_robust.metrics.functional.pair_scores import (
    label_agreement,
    mean_abs_prob_diff,
    paired_cosine_similarity,
)
from tia_scanner_robust.metrics.functional.pairwise import (
    PAIR_SCORES,
    PairConsistencyResult,
    pairwise_consistency,
)
from tia_scanner_robust.metrics.functional.retrieval import (
    DEFAULT_TOPK,
    pairwise_topk_retrieval,
    retrieval_ranks,
    topk_retrieval_accuracy,
)
from tia_scanner_robust.metrics.functional.trivial import (
    constant_prediction_dice,
    majority_class_accuracy,
    trivial_name,
    trivial_segmentation_scores,
)

__all__ = [
    "COV_SCALES",
    "DEFAULT_CONFIDENCE",
    "DEFAULT_EMPTY_PAIRS",
    "DEFAULT_N_RESAMPLES",
    "DEFAULT_TOPK",
    "EMPTY_PAIR_POLICIES",
    "LOGIT_CLIP",
    "NAN_POLICIES",
    "PAIR_SCORES",
    "CoVResult",
    "PackedLabels",
    "PairConsistencyResult",
    "bootstrap_consistency",
    "bootstrap_cov",
    "bootstrap_indices",
    "bootstrap_mean_ci",
    "coefficient_of_variation",
    "constant_prediction_dice",
    "dice_score",
    "empty_pair_mask",
    "label_agreement",
    "magnification_cov",
    "majority_class_accuracy",
    "mean_abs_prob_diff",
    "paired_cosine_similarity",
    "paired_dice",
    "pairwise_consistency",
    "pairwise_topk_retrieval",
    "retrieval_ranks",
    "roc_auc",
    "to_jsonable",
    "topk_retrieval_accuracy",
    "trivial_name",
    "trivial_segmentation_scores",
]

__getattr__ = deprecated_aliases(__name__, {"PairConsistency": PairConsistencyResult})
