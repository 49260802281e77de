"""Per-sample pair scores between two scanners (classification and embeddings).

:func:`label_agreement` and :func:`mean_abs_prob_diff` compare predicted
labels and probabilities, :func:`paired_cosine_similarity` paired embeddings;
:func:`~tia_scanner_robust.metrics.functional.paired_dice` is the
segmentation score.

Examples:
    >>> label_agreement([0, 1, 1], [0, 0, 1])
    array([1., 0., 1.])

"""

from __future__ import annotations

import numpy as np

from tia_scanner_robust.metrics.functional.core import (
    _as_array,
    _check_nan_policy,
    _handle_nan_rows,
    _nan_rows,
    _same_leading,
    _unit_rows,
)

__all__ = ["label_agreement", "mean_abs_prob_diff", "paired_cosine_similarity"]


def _as_class_labels(values: np.ndarray) -> np.ndarray:
    """Integer labels from labels, (N, C) probabilities (argmax) or (N,) probabilities."""
    if values.dtype == bool or np.issubdtype(values.dtype, np.integer):
        return values
    if values.ndim == 1:  # positive-class probability
        return (values >= 0.5).astype(np.int64)
    if values.ndim == 2:
        return np.argmax(values, axis=1)
    msg = (
        f"float outputs of shape {values.shape} are ambiguous for label agreement; "
        "pass integer labels (N, ...), (N,) probabilities or (N, C) probabilities."
    )
    raise TypeError(msg)


def label_agreement(labels_a: object, labels_b: object, *, nan_policy: str = "raise") -> np.ndarray:
    """Per-sample agreement of predicted labels between two scanners.

    Integer labels ``(N,)`` give 1/0 per sample; integer maps ``(N, ...)`` the
    fraction of equal elements. Float inputs are turned into labels first:
    ``(N,)`` probabilities at threshold 0.5, ``(N, C)`` probabilities by argmax.

    Args:
        labels_a: Labels or probabilities from scanner A.
        labels_b: The same from scanner B.
        nan_policy: ``"raise"`` or ``"omit"`` (the sample scores NaN).

    Returns:
        ``(N,)`` float64 in ``[0, 1]``.

    Examples:
        >>> label_agreement([0, 1, 1], [0, 0, 1])
        array([1., 0., 1.])
        >>> label_agreement([[0.9, 0.1], [0.2, 0.8]], [[0.6, 0.4], [0.7, 0.3]])
        array([1., 0.])

    """
    _check_nan_policy(nan_policy)
    a, b = _as_array(labels_a, "labels_a"), _as_array(labels_b, "labels_b")
    _same_leading(a, b, ("labels_a", "labels_b"))
    bad = _handle_nan_rows(_nan_rows(a) | _nan_rows(b), "labels", nan_policy)
    la, lb = _as_class_labels(a), _as_class_labels(b)
    eq = (la == lb).reshape(la.shape[0], -1).mean(axis=1)
    eq[bad] = np.nan
    return eq


def mean_abs_prob_diff(
    probs_a: object, probs_b: object, *, nan_policy: str = "raise"
) -> np.ndarray:
    """Per-sample absolute difference of predicted probabilities (lower is better).

    ``(N,)`` positive-class probabilities give ``|p - q|``; ``(N, C)`` class
    probabilities give the total variation ``0.5 * sum_c |p_c - q_c|``, which
    equals ``|p_1 - q_1|`` for two classes. The pair score is its mean over
    samples.

    Args:
        probs_a: Probabilities in ``[0, 1]`` from scanner A, ``(N,)`` or ``(N, C)``.
        probs_b: The same from scanner B.
        nan_policy: ``"raise"`` or ``"omit"`` (the sample scores NaN).

    Returns:
        ``(N,)`` float64 in ``[0, 1]``.

    Examples:
        >>> mean_abs_prob_diff([0.9, 0.2], [0.7, 0.2])
        array([0.2, 0. ])
        >>> mean_abs_prob_diff([[0.1, 0.9]], [[0.3, 0.7]])
        array([0.2])

    """
    _check_nan_policy(nan_policy)
    a = _as_array(probs_a, "probs_a").astype(np.float64)
    b = _as_array(probs_b, "probs_b").astype(np.float64)
    _same_leading(a, b, ("probs_a", "probs_b"))
    if a.ndim > 2:
        msg = f"probabilities must be (N,) or (N, C); got shape {a.shape}."
        raise ValueError(msg)
    bad = _handle_nan_rows(_nan_rows(a) | _nan_rows(b), "probabilities", nan_policy)
    for arr, name in ((a, "probs_a"), (b, "probs_b")):
        finite = arr[np.isfinite(arr)]
        if np.isinf(arr).any() or (finite.size and (finite.min() < 0 or finite.max() > 1)):
            msg = f"{name} must hold probabilities in [0, 1]."
            raise ValueError(msg)
    diff = np.abs(a - b)
    out = diff if diff.ndim == 1 else 0.5 * diff.sum(axis=1)
    out = out.astype(np.float64)
    out[bad] = np.nan
    return out


def paired_cosine_similarity(
    emb_a: object, emb_b: object, *, nan_policy: str = "raise"
) -> np.ndarray:
    """Per-sample cosine similarity of paired embeddings.

    Args:
        emb_a: ``(N, D)`` embeddings from scanner A (trailing dims are flattened).
        emb_b: ``(N, D)`` embeddings of the same samples from scanner B.
        nan_policy: ``"raise"`` or ``"omit"`` (the sample scores NaN).

    Returns:
        ``(N,)`` float64 in ``[-1, 1]``.

    Raises:
        ValueError: On shape mismatch, NaN (``nan_policy="raise"``) or an
            all-zero embedding.

    Examples:
        >>> paired_cosine_similarity([[1.0, 0.0], [1.0, 1.0]], [[2.0, 0.0], [-1.0, -1.0]])
        array([ 1., -1.])

    """
    _check_nan_policy(nan_policy)
    a = _as_array(emb_a, "emb_a").astype(np.float64)
    b = _as_array(emb_b, "emb_b").astype(np.float64)
    if a.ndim < 2:
        msg = f"embeddings must be (N, D); got shape {a.shape}."
        raise ValueError(msg)
    _same_leading(a, b, ("emb_a", "emb_b"))
    bad = _handle_nan_rows(_nan_rows(a) | _nan_rows(b), "embeddings", nan_policy)
    out = np.full(a.shape[0], np.nan)
    keep = ~bad
    if keep.any():
        ua, ub = _unit_rows(a[keep], "emb_a"), _unit_rows(b[keep], "emb_b")
        out[keep] = np.clip(np.einsum("ij,ij->i", ua, ub), -1.0, 1.0)
    return out
