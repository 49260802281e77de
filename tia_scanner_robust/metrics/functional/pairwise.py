"""Pairwise consistency over scanners (the SCORPION protocol).

:func:`pairwise_consistency` scores every unordered scanner pair with a
per-sample pair score, averages over samples and reports the average and the
minimum over pairs as a :class:`PairConsistencyResult`.

Examples:
    >>> import numpy as np
    >>> maps = np.ones((3, 8, 8), int)
    >>> pairwise_consistency({"AT2": maps, "GT450": maps}).average
    1.0

"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import combinations
from typing import TYPE_CHECKING, Any

import numpy as np

from tia_scanner_robust._io import to_jsonable
from tia_scanner_robust._validation import check_in_choices
from tia_scanner_robust.metrics.functional.core import (
    _as_array,
    _check_nan_policy,
    _native_list,
)
from tia_scanner_robust.metrics.functional.dice import (
    DEFAULT_EMPTY_PAIRS,
    _check_empty_pairs,
    _pairwise_dice,
    paired_dice,
)
from tia_scanner_robust.metrics.functional.pair_scores import (
    label_agreement,
    mean_abs_prob_diff,
    paired_cosine_similarity,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["PAIR_SCORES", "PairConsistencyResult", "pairwise_consistency"]

#: Name -> (per-sample function, higher is better).
PAIR_SCORES: dict[str, tuple[Callable[..., np.ndarray], bool]] = {
    "dice": (paired_dice, True),
    "agreement": (label_agreement, True),
    "abs_prob": (mean_abs_prob_diff, False),
    "cosine": (paired_cosine_similarity, True),
}


@dataclass
class PairConsistencyResult:
    """Scanner-paired consistency: one score per unordered scanner pair.

    Attributes:
        score: Name of the per-sample score (``"dice"``, ``"agreement"``,
            ``"abs_prob"``, ``"cosine"``, ``"top1"``..., or a callable's name).
        scanners: Scanner names in canonical order.
        matrix: ``(S, S)`` symmetric pair scores, NaN on the diagonal (and for
            a pair without valid samples).
        pairs: ``(a, b)`` (``a`` before ``b`` in ``scanners``) -> pair score,
            the mean over that pair's valid samples.
        n_samples: ``(a, b)`` -> number of valid samples of that pair.
        per_sample: ``(a, b)`` -> ``(N,)`` per-sample scores (NaN: omitted).
        specimen_ids: The samples' ids (row order of ``per_sample``), if known.
        higher_is_better: ``False`` for distances such as ``abs_prob``.
        empty_pairs: Dice only: the empty-vs-empty policy used (``"exclude"``,
            ``"one"``, ``"nan"``); ``None`` for other scores.
        n_empty: Dice only: ``(a, b)`` -> number of empty-vs-empty samples
            (neither map holds foreground), whatever the policy.
        ci95: Bootstrap intervals once
            :func:`~tia_scanner_robust.metrics.functional.bootstrap_consistency`
            has run: ``{"average": [lo, hi], "minimum": ..., "worst": ...,
            "pairs": {(a, b): [lo, hi]}, "n_resamples": R, "seed": s}``.

    """

    score: str
    scanners: list[str]
    matrix: np.ndarray
    pairs: dict[tuple[str, str], float]
    n_samples: dict[tuple[str, str], int]
    per_sample: dict[tuple[str, str], np.ndarray]
    specimen_ids: list[Any] | None = None
    higher_is_better: bool = True
    empty_pairs: str | None = None
    n_empty: dict[tuple[str, str], int] | None = None
    ci95: dict[str, Any] | None = None

    @property
    def n_empty_total(self) -> int:
        """Empty-vs-empty samples summed over pairs (0 for non-Dice scores)."""
        return int(sum((self.n_empty or {}).values()))

    @property
    def empty_fraction(self) -> float:
        """Fraction of (pair, sample) comparisons that were empty-vs-empty (NaN: none scored)."""
        total = sum(len(v) for v in self.per_sample.values())
        return self.n_empty_total / total if total else float("nan")

    @property
    def average(self) -> float:
        """Mean of the pair scores (NaN pairs skipped)."""
        vals = np.array(list(self.pairs.values()), dtype=np.float64)
        return float(np.mean(vals[~np.isnan(vals)])) if (~np.isnan(vals)).any() else float("nan")

    def _extreme(self, *, lowest: bool) -> tuple[float, tuple[str, str] | None]:
        items = [(k, v) for k, v in self.pairs.items() if not math.isnan(v)]
        if not items:
            return float("nan"), None
        key, value = (min if lowest else max)(items, key=lambda kv: kv[1])
        return float(value), key

    @property
    def minimum(self) -> float:
        """Smallest pair score."""
        return self._extreme(lowest=True)[0]

    @property
    def min_pair(self) -> tuple[str, str] | None:
        """The pair with the smallest score."""
        return self._extreme(lowest=True)[1]

    @property
    def maximum(self) -> float:
        """Largest pair score."""
        return self._extreme(lowest=False)[0]

    @property
    def max_pair(self) -> tuple[str, str] | None:
        """The pair with the largest score."""
        return self._extreme(lowest=False)[1]

    @property
    def worst(self) -> float:
        """Worst pair score: the minimum, or the maximum for distances."""
        return self.minimum if self.higher_is_better else self.maximum

    @property
    def worst_pair(self) -> tuple[str, str] | None:
        """The pair with the worst score."""
        return self.min_pair if self.higher_is_better else self.max_pair

    def to_dict(self, *, per_sample: bool = True) -> dict[str, Any]:
        """Strict-JSON dict; pair keys are ``"a|b"`` strings, NaN is ``None``."""
        out: dict[str, Any] = {
            "score": self.score,
            "higher_is_better": self.higher_is_better,
            "scanners": self.scanners,
            "matrix": self.matrix,
            "pairs": self.pairs,
            "n_samples": self.n_samples,
            "average": self.average,
            "minimum": self.minimum,
            "min_pair": list(self.min_pair) if self.min_pair else None,
            "maximum": self.maximum,
            "max_pair": list(self.max_pair) if self.max_pair else None,
            "worst": self.worst,
            "worst_pair": list(self.worst_pair) if self.worst_pair else None,
        }
        if self.empty_pairs is not None:
            out["empty_pairs"] = self.empty_pairs
            out["n_empty"] = self.n_empty or {}
            out["n_empty_total"] = self.n_empty_total
            out["empty_fraction"] = self.empty_fraction
        if self.ci95 is not None:
            for key in ("average", "minimum", "worst"):
                out[f"{key}_ci95"] = self.ci95.get(key)
            out["pairs_ci95"] = self.ci95.get("pairs", {})
            out["bootstrap"] = {
                "n_resamples": self.ci95.get("n_resamples"),
                "seed": self.ci95.get("seed"),
                "confidence": self.ci95.get("confidence"),
            }
        if per_sample:
            out["specimen_ids"] = self.specimen_ids
            out["per_sample"] = self.per_sample
        return to_jsonable(out)


def _aggregate_pairs(
    scanners: Sequence[str],
    per_sample: Mapping[tuple[str, str], np.ndarray],
    score: str,
    *,
    higher_is_better: bool,
    specimen_ids: list[Any] | None = None,
    empty: Mapping[tuple[str, str], np.ndarray] | None = None,
    empty_pairs: str | None = None,
) -> PairConsistencyResult:
    """Average per-sample scores per pair (NaN omitted) into a :class:`PairConsistencyResult`.

    ``empty`` (Dice): per pair, the empty-vs-empty samples; with
    ``empty_pairs="nan"`` a pair with any of them scores NaN, with
    ``"exclude"`` they are left out (already NaN per sample). A pair left
    without samples because all were empty warns.
    """
    scanners = list(scanners)
    index = {s: i for i, s in enumerate(scanners)}
    matrix = np.full((len(scanners), len(scanners)), np.nan)
    pairs: dict[tuple[str, str], float] = {}
    counts: dict[tuple[str, str], int] = {}
    ordered: dict[tuple[str, str], np.ndarray] = {}
    n_empty: dict[tuple[str, str], int] | None = None if empty is None else {}
    all_empty: list[str] = []
    for a, b in combinations(scanners, 2):
        values = per_sample.get((a, b))
        if values is None:
            values = per_sample.get((b, a), np.zeros(0))
        values = np.asarray(values, dtype=np.float64)
        ok = ~np.isnan(values)
        n = int(ok.sum())
        value = float(values[ok].mean()) if n else float("nan")
        if n_empty is not None and empty is not None:
            mask = empty.get((a, b), empty.get((b, a)))
            k = 0 if mask is None else int(np.asarray(mask, dtype=bool).sum())
            n_empty[(a, b)] = k
            if k and empty_pairs == "nan":
                value = float("nan")
            if k and k == values.size and empty_pairs != "one":
                all_empty.append(f"{a}|{b}")
        pairs[(a, b)], counts[(a, b)], ordered[(a, b)] = value, n, values
        matrix[index[a], index[b]] = matrix[index[b], index[a]] = value
    if all_empty:
        warnings.warn(
            f"{score}: every sample of pair(s) {', '.join(all_empty)} is empty-vs-empty "
            f"(no foreground in either map); with empty_pairs={empty_pairs!r} their score is "
            "NaN, not 1.0 (empty_pairs='one' gives SCORPION's Dice of 1).",
            RuntimeWarning,
            stacklevel=3,
        )
    return PairConsistencyResult(
        score=score,
        scanners=scanners,
        matrix=matrix,
        pairs=pairs,
        n_samples=counts,
        per_sample=ordered,
        specimen_ids=specimen_ids,
        higher_is_better=higher_is_better,
        empty_pairs=empty_pairs if empty is not None else None,
        n_empty=n_empty,
    )


def _check_outputs(outputs: Mapping[str, object]) -> tuple[list[str], dict[str, np.ndarray], int]:
    if not isinstance(outputs, Mapping):
        msg = f"outputs must be a dict scanner -> array, got {type(outputs).__name__}."
        raise TypeError(msg)
    scanners = [str(s) for s in outputs]
    if len(scanners) < 2:
        msg = f"outputs needs at least 2 scanners, got {len(scanners)}."
        raise ValueError(msg)
    arrays = {str(s): _as_array(v, f"outputs[{s!r}]") for s, v in outputs.items()}
    lengths = {s: (a.shape[0] if a.ndim else 0) for s, a in arrays.items()}
    if len(set(lengths.values())) != 1:
        msg = f"every scanner needs the same number of samples (aligned by index); got {lengths}."
        raise ValueError(msg)
    n = next(iter(lengths.values()))
    if n == 0:
        msg = "outputs are empty (0 samples)."
        raise ValueError(msg)
    return scanners, arrays, n


def _check_specimen_ids(specimen_ids: Sequence[Any] | None, n: int) -> list[Any] | None:
    """Specimen ids as a plain list of ``n`` entries (``None`` stays ``None``)."""
    if specimen_ids is None:
        return None
    ids = _native_list(specimen_ids)
    if len(ids) != n:
        msg = f"specimen_ids has {len(ids)} entries for {n} samples."
        raise ValueError(msg)
    return ids


def pairwise_consistency(
    outputs: Mapping[str, object],
    score: str | Callable[..., np.ndarray] = "dice",
    *,
    specimen_ids: Sequence[Any] | None = None,
    nan_policy: str = "raise",
    higher_is_better: bool | None = None,
    empty_pairs: str | None = None,
    **score_kwargs: Any,
) -> PairConsistencyResult:
    """Consistency of every unordered scanner pair, averaged over samples.

    The SCORPION protocol: for each of the ``S (S - 1) / 2`` pairs compute the
    per-sample score between the paired outputs, average over samples (NaN
    samples omitted), then report the average and the minimum over pairs.

    Args:
        outputs: Scanner -> ``(N, ...)`` outputs, aligned by index (row ``i``
            of every scanner is the same specimen). Dict order is the scanner
            order.
        score: ``"dice"`` (label maps), ``"agreement"`` (labels or
            probabilities), ``"abs_prob"`` (probabilities, a distance),
            ``"cosine"`` (embeddings), or a callable
            ``f(a, b, **score_kwargs) -> (N,)`` (assumed symmetric).
        specimen_ids: Ids of the ``N`` rows, stored in the result.
        nan_policy: ``"raise"`` or ``"omit"`` (per pair, a sample with NaN in
            either output is skipped). A callable score handles NaN itself;
            NaN values it returns are skipped in the pair means.
        higher_is_better: Override the direction (default: from the score;
            ``True`` for callables).
        empty_pairs: Dice only: how a sample whose two maps hold no
            foreground (empty-vs-empty) counts: ``"exclude"`` (default: left
            out of the pair mean; a pair with only such samples is NaN, with
            a ``RuntimeWarning``), ``"one"`` (SCORPION: Dice 1) or ``"nan"``
            (the pair score becomes NaN). Their number per pair is always in
            ``n_empty``.
        **score_kwargs: Passed to the score (e.g. ``num_classes``,
            ``ignore_background`` for Dice).

    Returns:
        A :class:`PairConsistencyResult`.

    Examples:
        >>> import numpy as np
        >>> maps = np.zeros((2, 4, 4), int)
        >>> other = maps.copy()
        >>> other[0, :2] = 1
        >>> outputs = {"AT2": maps, "GT450": maps, "P1000": other}
        >>> res = pairwise_consistency(outputs, empty_pairs="one")  # SCORPION
        >>> round(res.average, 4), round(res.minimum, 4), res.min_pair
        (0.7778, 0.6667, ('AT2', 'P1000'))
        >>> res.n_empty  # background-only on both sides
        {('AT2', 'GT450'): 2, ('AT2', 'P1000'): 1, ('GT450', 'P1000'): 1}
        >>> other[1, 0] = 1
        >>> res = pairwise_consistency(outputs)  # default "exclude": empty samples left out
        >>> round(res.average, 4), res.n_samples[("AT2", "P1000")]
        (0.381, 2)

    """
    _check_nan_policy(nan_policy)
    scanners, arrays, n = _check_outputs(outputs)
    specimen_ids = _check_specimen_ids(specimen_ids, n)
    if callable(score):
        func, default_hib = score, True
        name = getattr(score, "__name__", "custom")
    else:
        check_in_choices(score, PAIR_SCORES, "score")
        func, default_hib = PAIR_SCORES[score]
        name = score
    hib = default_hib if higher_is_better is None else bool(higher_is_better)
    per_sample: dict[tuple[str, str], np.ndarray] = {}
    empty: dict[tuple[str, str], np.ndarray] | None = None
    is_dice = name == "dice" and func is paired_dice
    if empty_pairs is not None and not is_dice:
        msg = f"empty_pairs applies to the 'dice' score only, not {name!r}."
        raise ValueError(msg)
    if is_dice:
        empty_pairs = _check_empty_pairs(empty_pairs or DEFAULT_EMPTY_PAIRS)
        per_sample, empty = _pairwise_dice(
            scanners, arrays, nan_policy=nan_policy, empty_pairs=empty_pairs, **score_kwargs
        )
    else:
        kwargs = dict(score_kwargs)
        if not callable(score):
            kwargs["nan_policy"] = nan_policy
        for a, b in combinations(scanners, 2):
            values = np.asarray(func(arrays[a], arrays[b], **kwargs), dtype=np.float64)
            if values.shape != (n,):
                msg = f"score {name!r} returned shape {values.shape}; expected ({n},)."
                raise ValueError(msg)
            per_sample[(a, b)] = values
    return _aggregate_pairs(
        scanners,
        per_sample,
        name,
        higher_is_better=hib,
        specimen_ids=specimen_ids,
        empty=empty,
        empty_pairs=empty_pairs,
    )
