"""Bootstrap confidence intervals over specimens (percentile method, vectorised).

Every interval resamples **specimens** with replacement: one seeded
``(R, n)`` array of indices (:func:`bootstrap_indices`) is drawn once and
reused for every scanner pair, so the average and the minimum over pairs are
computed on the same resampled specimen sets (they are joint statistics).

- :func:`bootstrap_consistency`: 95% intervals of the average, minimum and
  worst pair score of a :class:`~tia_scanner_robust.metrics.functional.PairConsistencyResult`
  and of each pair score (for error bars);
- :func:`bootstrap_cov`: interval of the CoV (over the specimens it used);
- :func:`bootstrap_mean_ci`: interval of a plain NaN-omitting mean.

Examples:
    >>> import numpy as np
    >>> lo, hi = bootstrap_mean_ci(np.linspace(0.0, 1.0, 50), n_resamples=500, seed=0)
    >>> lo < 0.5 < hi
    True
    >>> bootstrap_indices(4, n_resamples=3, seed=0).shape
    (3, 4)

"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tia_scanner_robust.metrics.functional.cov import CoVResult
    from tia_scanner_robust.metrics.functional.pairwise import PairConsistencyResult

__all__ = [
    "DEFAULT_CONFIDENCE",
    "DEFAULT_N_RESAMPLES",
    "bootstrap_consistency",
    "bootstrap_cov",
    "bootstrap_indices",
    "bootstrap_mean_ci",
]

#: Number of bootstrap resamples used unless told otherwise.
DEFAULT_N_RESAMPLES = 1000
#: Two-sided confidence level of the intervals.
DEFAULT_CONFIDENCE = 0.95


def _check_args(n_resamples: int, confidence: float) -> tuple[int, float]:
    if isinstance(n_resamples, bool) or int(n_resamples) != n_resamples or n_resamples < 1:
        msg = f"n_resamples must be a positive integer, got {n_resamples!r}."
        raise ValueError(msg)
    if not 0.0 < float(confidence) < 1.0:
        msg = f"confidence must be in (0, 1), got {confidence!r}."
        raise ValueError(msg)
    return int(n_resamples), float(confidence)


def bootstrap_indices(n: int, n_resamples: int = DEFAULT_N_RESAMPLES, seed: int = 0) -> np.ndarray:
    """``(n_resamples, n)`` specimen indices drawn with replacement (seeded).

    Args:
        n: Number of specimens.
        n_resamples: Number of resamples ``R``.
        seed: Seed of ``numpy.random.default_rng``.

    Returns:
        ``(R, n)`` ``intp`` array.

    Examples:
        >>> idx = bootstrap_indices(5, n_resamples=2, seed=1)
        >>> idx.shape, bool((idx >= 0).all() and (idx < 5).all())
        ((2, 5), True)

    """
    n_resamples, _ = _check_args(n_resamples, DEFAULT_CONFIDENCE)
    if n < 1:
        msg = f"n must be >= 1, got {n}."
        raise ValueError(msg)
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(n_resamples, n), dtype=np.intp)


def _resampled_means(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``(R,)`` NaN-omitting means of ``values[index]`` (NaN when a resample has none)."""
    picked = values[index]  # (R, n)
    ok = ~np.isnan(picked)
    count = ok.sum(axis=1)
    total = np.where(ok, picked, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _interval(stats: np.ndarray, confidence: float) -> list[float] | None:
    """Percentile interval of the finite resampled statistics (``None``: none finite)."""
    stats = stats[np.isfinite(stats)]
    if stats.size == 0:
        return None
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    return [float(low), float(high)]


def bootstrap_mean_ci(
    values: object,
    *,
    n_resamples: int = DEFAULT_N_RESAMPLES,
    seed: int = 0,
    confidence: float = DEFAULT_CONFIDENCE,
) -> list[float] | None:
    """Percentile bootstrap interval of the mean of ``values`` (NaN omitted).

    Args:
        values: ``(n,)`` per-specimen values.
        n_resamples: Number of resamples.
        seed: Seed.
        confidence: Two-sided level (0.95: the 2.5 and 97.5 percentiles).

    Returns:
        ``[low, high]``, or ``None`` with fewer than 2 finite values.

    Examples:
        >>> bootstrap_mean_ci([0.5, 0.5, 0.5])
        [0.5, 0.5]
        >>> bootstrap_mean_ci([0.5]) is None
        True

    """
    n_resamples, confidence = _check_args(n_resamples, confidence)
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if int(np.isfinite(arr).sum()) < 2:
        return None
    index = bootstrap_indices(arr.size, n_resamples, seed)
    return _interval(_resampled_means(arr, index), confidence)


def bootstrap_consistency(
    result: PairConsistencyResult,
    *,
    n_resamples: int = DEFAULT_N_RESAMPLES,
    seed: int = 0,
    confidence: float = DEFAULT_CONFIDENCE,
) -> dict[str, Any]:
    """Bootstrap intervals of a pair-consistency result, over specimens.

    One ``(R, n)`` index array resamples the specimens (rows of
    ``result.per_sample``) jointly for every pair; per resample each pair's
    mean (NaN omitted, as in the point estimate), their average and their
    minimum / maximum over pairs are recomputed. Pairs whose point estimate
    is NaN (e.g. ``empty_pairs="nan"``) stay NaN. The result is also stored
    in ``result.ci95`` (so ``to_dict()`` gains ``average_ci95``...).

    Args:
        result: A :class:`~tia_scanner_robust.metrics.functional.PairConsistencyResult`.
        n_resamples: Number of resamples.
        seed: Seed.
        confidence: Two-sided level.

    Returns:
        The intervals
        ``{"average": [lo, hi], "minimum": ..., "maximum": ..., "worst": ...,
        "pairs": {(a, b): [lo, hi]}, "n_resamples", "seed", "confidence",
        "n_specimens"}``; an interval is ``None`` with fewer than 2 specimens.

    Examples:
        >>> import numpy as np
        >>> from tia_scanner_robust.metrics.functional import pairwise_consistency
        >>> rng = np.random.default_rng(0)
        >>> probs = {s: rng.uniform(size=40) for s in ("A", "B", "C")}
        >>> res = pairwise_consistency(probs, "abs_prob")
        >>> ci = bootstrap_consistency(res, n_resamples=200)
        >>> ci["worst"][0] <= res.worst <= ci["worst"][1]
        True
        >>> res.to_dict()["average_ci95"] == ci["average"]
        True

    """
    n_resamples, confidence = _check_args(n_resamples, confidence)
    keys = list(result.pairs)
    n = max((np.asarray(result.per_sample[k]).size for k in keys), default=0)
    out: dict[str, Any] = {
        "average": None,
        "minimum": None,
        "maximum": None,
        "worst": None,
        "pairs": dict.fromkeys(keys),
        "n_resamples": n_resamples,
        "seed": int(seed),
        "confidence": confidence,
        "n_specimens": int(n),
    }
    if n >= 2 and keys:
        index = bootstrap_indices(n, n_resamples, seed)
        means = np.full((len(keys), n_resamples), np.nan)
        for p, key in enumerate(keys):
            values = np.asarray(result.per_sample[key], dtype=np.float64)
            if values.size != n or np.isnan(result.pairs[key]):
                continue
            means[p] = _resampled_means(values, index)
            out["pairs"][key] = _interval(means[p], confidence)
        valid = ~np.isnan(means)
        has_any = valid.any(axis=0)
        count = valid.sum(axis=0)
        average = np.where(
            has_any, np.where(valid, means, 0.0).sum(0) / np.maximum(count, 1), np.nan
        )
        minimum = np.where(has_any, np.where(valid, means, np.inf).min(axis=0), np.nan)
        maximum = np.where(has_any, np.where(valid, means, -np.inf).max(axis=0), np.nan)
        out["average"] = _interval(average, confidence)
        out["minimum"] = _interval(minimum, confidence)
        out["maximum"] = _interval(maximum, confidence)
        out["worst"] = out["minimum"] if result.higher_is_better else out["maximum"]
    result.ci95 = out
    return out


def bootstrap_cov(
    result: CoVResult,
    *,
    n_resamples: int = DEFAULT_N_RESAMPLES,
    seed: int = 0,
    confidence: float = DEFAULT_CONFIDENCE,
) -> list[float] | None:
    """Bootstrap interval of the CoV over the specimens it used.

    Resamples the used specimens' ``sigma_n / |mu_n|`` (``result.per_specimen``)
    and averages; stores the interval in ``result.ci95`` (``to_dict()`` gains
    ``cov_ci95``).

    Args:
        result: A :class:`~tia_scanner_robust.metrics.functional.CoVResult`.
        n_resamples: Number of resamples.
        seed: Seed.
        confidence: Two-sided level.

    Returns:
        ``[low, high]``, or ``None`` when fewer than 2 specimens were used.

    Examples:
        >>> from tia_scanner_robust.metrics.functional import coefficient_of_variation
        >>> import numpy as np
        >>> m = np.random.default_rng(0).uniform(0.2, 0.8, size=(30, 3))
        >>> res = coefficient_of_variation(m)
        >>> lo, hi = bootstrap_cov(res, n_resamples=300)
        >>> lo <= res.cov <= hi, res.to_dict()["cov_ci95"] == [lo, hi]
        (True, True)

    """
    values = np.fromiter(result.per_specimen.values(), dtype=np.float64)
    result.ci95 = bootstrap_mean_ci(
        values, n_resamples=n_resamples, seed=seed, confidence=confidence
    )
    return result.ci95
