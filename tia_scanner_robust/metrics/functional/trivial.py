"""Scores of trivial predictors against ground truth (the floor a model must beat).

A model can be perfectly consistent across scanners by predicting the same
trivial output everywhere (SCORPION's "trivial but consistent prediction").
Where ground truth exists, consistency is therefore reported next to what a
constant predictor scores:

- segmentation: :func:`constant_prediction_dice`, the Dice of predicting one
  class everywhere (``all_background`` = class 0, ``all_foreground`` = class
  1 for binary masks), with the same class rules as
  :func:`~tia_scanner_robust.metrics.functional.dice_score`;
- classification: :func:`majority_class_accuracy`, the accuracy of always
  predicting the most frequent label (and an AUC of 0.5).

:func:`trivial_segmentation_scores` summarises the per-sample values.

Examples:
    >>> import numpy as np
    >>> mask = np.zeros((1, 4, 4), int)
    >>> mask[0, :1] = 1  # 25% foreground
    >>> scores = trivial_segmentation_scores(constant_prediction_dice(mask))
    >>> scores["all_background"], scores["all_foreground"], scores["best"]
    (0.428..., 0.2, 'all_background')
    >>> majority_class_accuracy([0, 1, 1, 1])
    (0.75, 1)

"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from tia_scanner_robust.metrics.functional.core import _as_array
from tia_scanner_robust.metrics.functional.dice import dice_score

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "constant_prediction_dice",
    "majority_class_accuracy",
    "trivial_name",
    "trivial_segmentation_scores",
]


def trivial_name(value: int, n_values: int) -> str:
    """Name of the constant predictor of class ``value`` among ``n_values`` mask values.

    Examples:
        >>> trivial_name(0, 2), trivial_name(1, 2), trivial_name(2, 3)
        ('all_background', 'all_foreground', 'all_class_2')

    """
    if value == 0:
        return "all_background"
    if value == 1 and n_values <= 2:
        return "all_foreground"
    return f"all_class_{value}"


def constant_prediction_dice(
    target: object,
    values: Sequence[int] | None = None,
    *,
    ignore_background: bool = False,
    ignore_index: int | None = None,
) -> dict[str, np.ndarray]:
    """Per-sample Dice of predicting one class everywhere, for each class value.

    Args:
        target: ``(N, H, W)`` (or ``(H, W)``) ground-truth label maps.
        values: Constant classes to try (default: ``0..max(1, max label)``, so
            a binary mask always gets all-background and all-foreground).
        ignore_background: As in :func:`~tia_scanner_robust.metrics.functional.dice_score`.
        ignore_index: Unlabelled target pixels (dropped).

    Returns:
        ``{name: (N,) Dice}`` with names from :func:`trivial_name`.

    Examples:
        >>> import numpy as np
        >>> t = np.array([[[0, 0, 1, 1]]])
        >>> {k: v.round(3).tolist() for k, v in constant_prediction_dice(t).items()}
        {'all_background': [0.333], 'all_foreground': [0.333]}

    """
    arr = _as_array(target, "target")
    if arr.ndim == 2:
        arr = arr[None]
    labels = arr if ignore_index is None else np.where(arr == ignore_index, 0, arr)
    if values is None:
        top = int(np.max(labels, initial=0))
        values = range(max(1, top) + 1)
    values = [int(v) for v in values]
    out = {}
    for value in values:
        pred = np.full(arr.shape, value, dtype=np.int64)
        if ignore_index is not None:
            pred = np.where(arr == ignore_index, ignore_index, pred)
        out[trivial_name(value, len(values))] = dice_score(
            pred, arr, ignore_background=ignore_background, ignore_index=ignore_index
        )
    return out


def trivial_segmentation_scores(per_sample: Mapping[str, object]) -> dict[str, Any]:
    """Mean Dice of each constant predictor and the best of them.

    Args:
        per_sample: ``{name: (N,) Dice}``, e.g. from :func:`constant_prediction_dice`
            (lists are concatenated first by the caller).

    Returns:
        ``{name: mean, ..., "best": name, "best_score": mean}`` (NaN omitted;
        ``best`` is ``None`` when nothing is finite).

    Examples:
        >>> trivial_segmentation_scores({"all_background": [0.4, 0.6], "all_foreground": [0.1]})
        {'all_background': 0.5, 'all_foreground': 0.1, 'best': 'all_background', 'best_score': 0.5}

    """
    out: dict[str, Any] = {}
    for name, values in per_sample.items():
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
        ok = ~np.isnan(arr)
        out[name] = float(arr[ok].mean()) if ok.any() else float("nan")
    finite = {k: v for k, v in out.items() if not np.isnan(v)}
    best = max(finite, key=finite.__getitem__) if finite else None
    out["best"] = best
    out["best_score"] = finite[best] if best is not None else float("nan")
    return out


def majority_class_accuracy(labels: object) -> tuple[float, int]:
    """Accuracy of always predicting the most frequent label, and that label.

    Args:
        labels: ``(N,)`` integer ground-truth labels.

    Returns:
        ``(accuracy, label)``; ties go to the smallest label.

    Raises:
        ValueError: If ``labels`` is empty.

    Examples:
        >>> majority_class_accuracy([2, 2, 0])
        (0.666..., 2)

    """
    arr = _as_array(labels, "labels").reshape(-1)
    if arr.size == 0:
        msg = "labels is empty."
        raise ValueError(msg)
    values, counts = np.unique(arr, return_counts=True)
    top = int(np.argmax(counts))
    return float(counts[top] / arr.size), int(values[top])
