"""Classification metrics against ground truth: ROC AUC.

:func:`roc_auc` is the rank (Mann-Whitney) form of the area under the ROC
curve, binary or one-vs-rest macro, equal to scikit-learn's
``roc_auc_score`` without depending on it.

Examples:
    >>> roc_auc([0, 1, 0, 1], [0.2, 0.9, 0.4, 0.6])
    1.0

"""

from __future__ import annotations

import warnings

import numpy as np

from tia_scanner_robust.metrics.functional.core import (
    _as_array,
    _check_nan_policy,
    _handle_nan_rows,
    _nan_rows,
)

__all__ = ["roc_auc"]


def _binary_auc(positive: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """AUC per column from the Mann-Whitney rank formula (average ranks for ties)."""
    from scipy.stats import rankdata  # noqa: PLC0415 - scipy.stats is slow to import

    ranks = rankdata(scores, axis=0)
    n_pos = positive.sum(axis=0).astype(np.float64)
    n_neg = positive.shape[0] - n_pos
    rank_sum = (ranks * positive).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


def roc_auc(labels: object, scores: object, *, nan_policy: str = "raise") -> float:
    """Area under the ROC curve (binary, or one-vs-rest macro for multi-class).

    Uses the rank form ``AUC = (R_pos - n_pos (n_pos + 1) / 2) / (n_pos n_neg)``
    with average ranks for ties, identical to :func:`sklearn.metrics.roc_auc_score`.

    - ``scores`` (N,): binary; the larger of the two label values is positive.
    - ``scores`` (N, 2) with two label values: column 1 is the positive score.
    - ``scores`` (N, C): labels in ``0..C-1``; the unweighted mean of the
      one-vs-rest AUCs of the classes present (sklearn's ``multi_class="ovr"``,
      ``average="macro"`` when every class is present).

    A single class in ``labels`` makes the AUC undefined: NaN with a
    ``RuntimeWarning`` (sklearn raises).

    Args:
        labels: ``(N,)`` true labels.
        scores: ``(N,)`` or ``(N, C)`` scores or probabilities.
        nan_policy: ``"raise"`` or ``"omit"`` (rows with NaN scores are dropped).

    Returns:
        The AUC in ``[0, 1]`` (or NaN).

    Examples:
        >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
        0.75

    """
    _check_nan_policy(nan_policy)
    y = _as_array(labels, "labels").reshape(-1)
    s = _as_array(scores, "scores").astype(np.float64)
    if y.size == 0:
        msg = "labels is empty."
        raise ValueError(msg)
    if s.shape[0] != y.size or s.ndim > 2:
        msg = f"scores must be (N,) or (N, C) with N = {y.size}; got shape {s.shape}."
        raise ValueError(msg)
    bad = _handle_nan_rows(_nan_rows(s), "scores", nan_policy)
    y, s = y[~bad], s[~bad]
    classes = np.unique(y)
    if s.ndim == 2 and s.shape[1] == 2 and classes.size <= 2:
        s = s[:, 1]
    if s.ndim == 1:
        if classes.size > 2:
            msg = f"labels hold {classes.size} classes; pass (N, C) scores for multi-class AUC."
            raise ValueError(msg)
        if classes.size < 2:
            warnings.warn(
                "roc_auc: only one class in labels; AUC is undefined (NaN).",
                RuntimeWarning,
                stacklevel=2,
            )
            return float("nan")
        return float(_binary_auc((y == classes[-1])[:, None], s[:, None])[0])
    n_classes = s.shape[1]
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= n_classes:
        msg = f"multi-class labels must be integers in [0, {n_classes}); got {classes.tolist()}."
        raise ValueError(msg)
    onehot = y[:, None] == np.arange(n_classes)[None, :]
    per_class = _binary_auc(onehot, s)
    if np.isnan(per_class).all():
        warnings.warn("roc_auc: AUC undefined for every class.", RuntimeWarning, stacklevel=2)
        return float("nan")
    return float(np.nanmean(per_class))
