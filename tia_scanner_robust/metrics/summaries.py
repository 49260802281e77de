"""What a model predicted on one scanner: class fractions, histograms, non-finite values.

Consistency alone cannot tell a robust model from one that predicts the same
trivial output everywhere. :class:`PredictionSummary` accumulates, per
scanner, what the model actually predicted:

- segmentation: the pixel fraction of every class, how many maps hold no
  foreground (only class 0) and how many hold one class only;
- classification: the histogram of predicted classes and the mean
  probabilities;
- embedding: the feature size, mean norm and the spread across samples.

Every task also counts NaN and inf values (:func:`nonfinite_counts`);
:func:`check_finite` raises on them, naming where they were found.
:mod:`tia_scanner_robust.metrics.diagnostics` turns summaries into warnings.

Examples:
    >>> import numpy as np
    >>> summary = PredictionSummary("segmentation")
    >>> summary.update(np.zeros((3, 4, 4), int))
    >>> out = summary.compute()
    >>> out["class_pixel_fractions"], out["n_empty"], out["constant"]
    ({'0': 1.0}, 3, True)

"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from tia_scanner_robust._validation import check_in_choices
from tia_scanner_robust.metrics.functional.core import _as_array

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["SUMMARY_TASKS", "PredictionSummary", "check_finite", "nonfinite_counts"]

#: Tasks :class:`PredictionSummary` knows.
SUMMARY_TASKS = ("segmentation", "classification", "embedding")

#: Relative spread below which embeddings count as constant across samples.
_CONSTANT_RTOL = 1e-6


def nonfinite_counts(values: object) -> dict[str, int]:
    """Number of NaN and of infinite values in ``values``.

    Examples:
        >>> nonfinite_counts([1.0, float("nan"), float("inf"), -float("inf")])
        {'n_nan': 1, 'n_inf': 2}

    """
    arr = _as_array(values, "values")
    if not np.issubdtype(arr.dtype, np.floating) and not np.issubdtype(
        arr.dtype, np.complexfloating
    ):
        return {"n_nan": 0, "n_inf": 0}
    return {"n_nan": int(np.isnan(arr).sum()), "n_inf": int(np.isinf(arr).sum())}


def check_finite(values: object, *, where: str, sample_ids: Sequence[Any] | None = None) -> None:
    """Raise if ``values`` (one row per sample) holds NaN or inf.

    Args:
        values: ``(N, ...)`` model outputs.
        where: What produced them, for the message (e.g. ``"scanner 'AT2'"``).
        sample_ids: Ids of the ``N`` rows; the message names the first bad one.

    Raises:
        ValueError: ``"non-finite model output on <where>, sample <id>: ..."``.

    Examples:
        >>> check_finite([[0.2, 0.8]], where="scanner 'A'")
        >>> check_finite(
        ...     [[0.2, 0.8], [float("nan"), 0.1]], where="scanner 'A'", sample_ids=["x", "y"]
        ... )
        Traceback (most recent call last):
        ...
        ValueError: non-finite model output on scanner 'A', sample 'y': 1 NaN and 0 inf value(s) ...

    """
    arr = _as_array(values, "values")
    counts = nonfinite_counts(arr)
    if not counts["n_nan"] and not counts["n_inf"]:
        return
    rows = arr.reshape(arr.shape[0], -1) if arr.ndim else arr.reshape(1, 1)
    first = int(np.flatnonzero(~np.isfinite(rows).all(axis=1))[0])
    sample = sample_ids[first] if sample_ids is not None else first
    msg = (
        f"non-finite model output on {where}, sample {sample!r}: {counts['n_nan']} NaN and "
        f"{counts['n_inf']} inf value(s) in this batch. Scores of such outputs are meaningless "
        "(argmax of NaN is class 0); check the weights (NaN after training?) and the input "
        "normalisation."
    )
    raise ValueError(msg)


class PredictionSummary:
    """Streaming summary of one scanner's predictions (see the module docstring).

    Args:
        task: ``"segmentation"`` (label maps), ``"classification"``
            (``(N, C)`` probabilities) or ``"embedding"`` (``(N, D)`` features).
        num_classes: Segmentation / classification: classes to report even
            when never predicted.

    Examples:
        >>> import numpy as np
        >>> s = PredictionSummary("classification")
        >>> s.update(np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]]))
        >>> out = s.compute()
        >>> out["class_histogram"], out["constant"]
        ({'0': 2, '1': 1}, False)

    """

    def __init__(self, task: str, *, num_classes: int | None = None) -> None:
        self.task = check_in_choices(task, SUMMARY_TASKS, "task")
        self.num_classes = None if num_classes is None else int(num_classes)
        self.reset()

    def reset(self) -> None:
        """Forget every update."""
        self._n = 0
        self._n_nan = 0
        self._n_inf = 0
        self._counts = np.zeros(self.num_classes or 0, dtype=np.int64)
        self._n_empty = 0
        self._n_single = 0
        self._n_pixels = 0
        self._sum = None
        self._sum_sq = None
        self._norm_sum = 0.0
        self._prob_sum = None

    def _grow(self, size: int) -> None:
        if size > self._counts.size:
            self._counts = np.pad(self._counts, (0, size - self._counts.size))

    def update(self, outputs: object) -> None:
        """Add a batch of one scanner's outputs.

        Args:
            outputs: ``(B, H, W)`` label maps (or a list of maps of any size),
                ``(B, C)`` probabilities, or ``(B, D)`` features.

        """
        if self.task == "segmentation" and isinstance(outputs, (list, tuple)):
            for item in outputs:
                self.update(np.asarray(item)[None])
            return
        arr = _as_array(outputs, "outputs")
        if arr.ndim == 0 or arr.shape[0] == 0:
            return
        counts = nonfinite_counts(arr)
        self._n_nan += counts["n_nan"]
        self._n_inf += counts["n_inf"]
        self._n += int(arr.shape[0])
        if self.task == "segmentation":
            self._update_maps(arr)
        elif self.task == "classification":
            self._update_probabilities(arr)
        else:
            self._update_features(arr)

    def update_fractions(self, fractions: object, n_pixels: object) -> None:
        """Add segmentation samples known only by their class pixel fractions.

        For label maps too large to hold (whole-slide regions read block by
        block): ``fractions`` ``(B, K)`` per sample, ``n_pixels`` ``(B,)`` (or
        one number) pixels per sample; NaN rows (no pixel) are skipped.

        Examples:
            >>> s = PredictionSummary("segmentation")
            >>> s.update_fractions([[1.0, 0.0], [0.5, 0.5]], 100)
            >>> out = s.compute()
            >>> out["class_pixel_fractions"], out["n_empty"]
            ({'0': 0.75, '1': 0.25}, 1)

        """
        frac = np.atleast_2d(np.asarray(fractions, dtype=np.float64))
        pixels = np.broadcast_to(np.asarray(n_pixels, dtype=np.float64), frac.shape[:1])
        keep = np.isfinite(frac).all(axis=1) & (pixels > 0)
        frac, pixels = frac[keep], pixels[keep]
        if not frac.shape[0]:
            return
        counts = np.rint(frac * pixels[:, None]).astype(np.int64)
        self._grow(counts.shape[1])
        self._counts[: counts.shape[1]] += counts.sum(axis=0)
        self._n += int(frac.shape[0])
        self._n_pixels += int(counts.sum())
        self._n_empty += int((counts[:, 1:].sum(axis=1) == 0).sum())
        self._n_single += int(((counts > 0).sum(axis=1) <= 1).sum())

    def _update_maps(self, arr: np.ndarray) -> None:
        rows = arr.reshape(arr.shape[0], -1)
        if np.issubdtype(rows.dtype, np.floating):
            rows = np.where(np.isfinite(rows), rows, 0)
        rows = rows.astype(np.int64)
        if rows.size and rows.min() < 0:
            rows = np.where(rows < 0, 0, rows)  # ignore-index style labels count as background
        top = int(rows.max(initial=0)) + 1
        self._grow(top)
        self._counts[:top] += np.bincount(rows.ravel(), minlength=top)
        self._n_pixels += int(rows.size)
        self._n_empty += int((rows.max(axis=1) == 0).sum())
        self._n_single += int((rows.min(axis=1) == rows.max(axis=1)).sum())

    def _update_probabilities(self, arr: np.ndarray) -> None:
        probs = arr.reshape(arr.shape[0], -1).astype(np.float64)
        if probs.shape[1] == 1:  # (N,) positive-class probabilities
            probs = np.concatenate([1.0 - probs, probs], axis=1)
        labels = np.argmax(np.where(np.isfinite(probs), probs, -np.inf), axis=1)
        self._grow(probs.shape[1])
        self._counts[: probs.shape[1]] += np.bincount(labels, minlength=probs.shape[1])
        finite = np.where(np.isfinite(probs), probs, 0.0).sum(axis=0)
        self._prob_sum = finite if self._prob_sum is None else self._prob_sum + finite

    def _update_features(self, arr: np.ndarray) -> None:
        feats = arr.reshape(arr.shape[0], -1).astype(np.float64)
        feats = np.where(np.isfinite(feats), feats, 0.0)
        if self._sum is None:
            self._sum = np.zeros(feats.shape[1])
            self._sum_sq = np.zeros(feats.shape[1])
        if feats.shape[1] != self._sum.size:
            msg = f"feature size changed from {self._sum.size} to {feats.shape[1]}."
            raise ValueError(msg)
        self._sum += feats.sum(axis=0)
        self._sum_sq += (feats * feats).sum(axis=0)
        self._norm_sum += float(np.linalg.norm(feats, axis=1).sum())

    def compute(self) -> dict[str, Any]:
        """The summary as a plain dict (JSON-ready; class keys are strings)."""
        out: dict[str, Any] = {"n_samples": self._n, "n_nan": self._n_nan, "n_inf": self._n_inf}
        if self._n == 0:
            out["constant"] = False
            return out
        if self.task == "segmentation":
            fractions = self._counts / max(1, self._n_pixels)
            present = np.flatnonzero(self._counts)
            out["class_pixel_fractions"] = {str(c): float(f) for c, f in enumerate(fractions)}
            out["classes_predicted"] = present.tolist()
            out["n_empty"] = self._n_empty
            out["empty_fraction"] = self._n_empty / self._n
            out["n_single_class"] = self._n_single
            out["constant"] = bool(present.size <= 1)
        elif self.task == "classification":
            present = np.flatnonzero(self._counts)
            out["class_histogram"] = {str(c): int(v) for c, v in enumerate(self._counts)}
            out["classes_predicted"] = present.tolist()
            out["mean_probabilities"] = (self._prob_sum / self._n).tolist()
            out["constant"] = bool(present.size <= 1)
        else:
            mean = self._sum / self._n
            var = np.maximum(self._sum_sq / self._n - mean * mean, 0.0)
            spread = float(np.sqrt(var).mean())
            norm = self._norm_sum / self._n
            out["feature_dim"] = int(mean.size)
            out["mean_feature_norm"] = norm
            out["mean_feature_std"] = spread
            out["constant"] = bool(self._n > 1 and spread <= _CONSTANT_RTOL * max(norm, 1e-12))
        return out
