"""Functional core of the scanner-robustness metrics (pure NumPy/SciPy).

Every metric here is a plain function over arrays; the stateful classes in
:mod:`tia_scanner_robust.metrics.consistency` call the same helpers, so the
streaming and the one-shot results are identical.

- :func:`coefficient_of_variation` (ScanGen Eq. 1) and
  :func:`magnification_cov`: ``CoV = (1/N) sum_n sigma_n / |mu_n|``.
- Per-sample paired scores between two scanners: :func:`paired_dice`
  (segmentation), :func:`label_agreement` and :func:`mean_abs_prob_diff`
  (classification), :func:`paired_cosine_similarity` (embeddings).
- :func:`pairwise_consistency`: every unordered scanner pair, averaged over
  samples, with the average and the minimum over pairs (SCORPION protocol).
- :func:`retrieval_ranks`, :func:`topk_retrieval_accuracy` and
  :func:`pairwise_topk_retrieval`: plismbench-style top-k retrieval of the
  paired embedding, chunked (bounded memory, no full argsort).
- Task metrics against ground truth: :func:`dice_score`, :func:`roc_auc`.

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

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np

from tia_scanner_robust._io import to_jsonable
from tia_scanner_robust._validation import check_in_choices

__all__ = [
    "COV_SCALES",
    "DEFAULT_TOPK",
    "NAN_POLICIES",
    "PAIR_SCORES",
    "CoVResult",
    "PairConsistency",
    "coefficient_of_variation",
    "dice_score",
    "label_agreement",
    "magnification_cov",
    "mean_abs_prob_diff",
    "paired_cosine_similarity",
    "paired_dice",
    "pairwise_consistency",
    "pairwise_topk_retrieval",
    "retrieval_ranks",
    "roc_auc",
    "to_jsonable",
    "topk_retrieval_accuracy",
]

#: Scales on which :func:`coefficient_of_variation` can be computed.
COV_SCALES = ("probability", "logit")
#: What to do with NaN predictions: raise a ``ValueError`` or omit the sample.
NAN_POLICIES = ("raise", "omit")
#: The k of plismbench's top-k retrieval accuracy.
DEFAULT_TOPK = (1, 3, 5, 10)
#: Probabilities are clipped to ``[c, 1 - c]`` before the logit transform.
LOGIT_CLIP = 1e-7

_PAIR_SEP = "|"
_PACK_CHUNK_PIXELS = 1 << 24  # temporary boolean planes stay below ~16 MB
_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


# --------------------------------------------------------------------------- #
# Shared helpers
# --------------------------------------------------------------------------- #
def _as_array(values: object, name: str) -> np.ndarray:
    """Return ``values`` as a NumPy array (torch tensors are detached)."""
    if values is None:
        msg = f"{name} is None."
        raise ValueError(msg)
    if hasattr(values, "detach") and hasattr(values, "cpu"):
        values = values.detach().cpu().numpy()  # type: ignore[union-attr]
    return np.asarray(values)


def _check_nan_policy(nan_policy: str) -> str:
    return check_in_choices(nan_policy, NAN_POLICIES, "nan_policy")


def _native_list(values: np.ndarray | Sequence) -> list:
    """Python natives (str, int...) for ids, so they serialise and hash plainly."""
    return np.asarray(values).tolist() if isinstance(values, np.ndarray) else list(values)


def _nan_rows(values: np.ndarray) -> np.ndarray:
    """Boolean ``(N,)``: rows of ``values`` (N, ...) that hold any NaN."""
    if not np.issubdtype(values.dtype, np.floating):
        return np.zeros(values.shape[0], dtype=bool)
    return np.isnan(values.reshape(values.shape[0], -1)).any(axis=1)


def _handle_nan_rows(bad: np.ndarray, name: str, nan_policy: str) -> np.ndarray:
    if bad.any() and nan_policy == "raise":
        first = int(np.flatnonzero(bad)[0])
        msg = (
            f"{name} contains NaN in {int(bad.sum())} sample(s) (first at index {first}); "
            "pass nan_policy='omit' to skip those samples."
        )
        raise ValueError(msg)
    return bad


def _first_appearance_unique(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique values in order of first appearance and the inverse index."""
    if np.issubdtype(values.dtype, np.integer) and values.size:
        low, high = int(values.min()), int(values.max())
        span = high - low + 1
        if span <= 4 * values.size + 1024:  # O(n) path for compact integer ids
            offset = (values - low).astype(np.intp)
            first_at = np.full(span, values.size, dtype=np.intp)
            np.minimum.at(first_at, offset, np.arange(values.size))
            present = np.flatnonzero(first_at < values.size)
            order = present[np.argsort(first_at[present], kind="stable")]
            rank = np.empty(span, dtype=np.intp)
            rank[order] = np.arange(order.size)
            return (order + low).astype(values.dtype), rank[offset]
    uniq, first, inverse = np.unique(values, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return uniq[order], rank[inverse.reshape(-1)]


# --------------------------------------------------------------------------- #
# Coefficient of variation (ScanGen Eq. 1)
# --------------------------------------------------------------------------- #
@dataclass
class CoVResult:
    """Result of :func:`coefficient_of_variation`.

    Attributes:
        cov: ``(1/N) sum_n sigma_n / |mu_n|`` over the ``n_used`` specimens
            (NaN when none is usable).
        per_specimen: Specimen id -> ``sigma_n / |mu_n|`` (used specimens only).
        per_specimen_mean: Specimen id -> ``mu_n`` (every specimen with a prediction).
        per_specimen_std: Specimen id -> ``sigma_n`` (population std, ddof=0).
        mean_sigma: Plain mean of ``sigma_n`` over the used specimens.
        n_used: Number of specimens in the average.
        n_total: Number of distinct specimens in the input.
        excluded: One dict per excluded specimen: ``specimen_id``, ``reason``,
            ``n_groups`` and ``mean``.
        scale: ``"probability"`` or ``"logit"``: the scale of the computation.
        eps: The zero-mean guard used.

    """

    cov: float
    per_specimen: dict[Any, float]
    per_specimen_mean: dict[Any, float]
    per_specimen_std: dict[Any, float]
    mean_sigma: float
    n_used: int
    n_total: int
    excluded: list[dict[str, Any]] = field(default_factory=list)
    scale: str = "probability"
    eps: float = 1e-6

    @property
    def excluded_ids(self) -> list[Any]:
        """Ids of the excluded specimens."""
        return [item["specimen_id"] for item in self.excluded]

    def to_dict(self, *, per_specimen: bool = True) -> dict[str, Any]:
        """Strict-JSON dict (NaN -> ``None``); ``per_specimen=False`` drops the maps."""
        out: dict[str, Any] = {
            "cov": self.cov,
            "mean_sigma": self.mean_sigma,
            "n_used": self.n_used,
            "n_total": self.n_total,
            "n_excluded": len(self.excluded),
            "excluded": self.excluded,
            "scale": self.scale,
            "eps": self.eps,
        }
        if per_specimen:
            out["per_specimen"] = self.per_specimen
            out["per_specimen_mean"] = self.per_specimen_mean
            out["per_specimen_std"] = self.per_specimen_std
        return to_jsonable(out)


def _to_cov_scale(values: np.ndarray, scale: str, input_scale: str) -> np.ndarray:
    values = values.astype(np.float64, copy=False)
    finite = values[np.isfinite(values)]
    if input_scale == "probability" and finite.size and (finite.min() < 0 or finite.max() > 1):
        msg = (
            "predictions must be probabilities in [0, 1] when input_scale='probability' "
            f"(got values in [{finite.min():.4g}, {finite.max():.4g}]); "
            "pass input_scale='logit' for logits."
        )
        raise ValueError(msg)
    if scale == input_scale:
        return values
    if scale == "logit":  # probabilities -> logits
        clipped = np.clip(values, LOGIT_CLIP, 1.0 - LOGIT_CLIP)
        return np.log(clipped) - np.log1p(-clipped)
    return 0.5 * (1.0 + np.tanh(0.5 * values))  # logits -> probabilities (stable sigmoid)


def _cov_matrix_inputs(
    preds: np.ndarray, specimen_ids: object
) -> tuple[np.ndarray, np.ndarray, list]:
    """Matrix form: (N, S) with NaN = missing -> flat values, row index, row ids."""
    if preds.ndim != 2:
        msg = (
            "predictions must be a (N_specimens, S) matrix when group_ids is None "
            f"(got shape {preds.shape}); for flat arrays pass specimen_ids and group_ids."
        )
        raise ValueError(msg)
    n_rows = preds.shape[0]
    ids = list(range(n_rows)) if specimen_ids is None else _native_list(specimen_ids)
    if len(ids) != n_rows:
        msg = f"specimen_ids has {len(ids)} entries but predictions has {n_rows} rows."
        raise ValueError(msg)
    if len(set(ids)) != len(ids):
        msg = "specimen_ids must be unique in the matrix form (one row per specimen)."
        raise ValueError(msg)
    present = ~np.isnan(preds)
    return preds[present], np.nonzero(present)[0], ids


def _cov_flat_inputs(
    preds: np.ndarray, specimen_ids: object, group_ids: object, nan_policy: str
) -> tuple[np.ndarray, np.ndarray, list]:
    """Flat form: check lengths and duplicates, apply the NaN policy."""
    if specimen_ids is None:
        msg = "specimen_ids is required when group_ids is given (flat form)."
        raise ValueError(msg)
    if preds.ndim != 1:
        msg = (
            f"predictions must be 1-D in the flat form, got shape {preds.shape}; "
            "pass the positive-class column (e.g. probabilities[:, 1])."
        )
        raise ValueError(msg)
    spec = _as_array(specimen_ids, "specimen_ids").reshape(-1)
    groups = _as_array(group_ids, "group_ids").reshape(-1)
    if not spec.size == groups.size == preds.size:
        msg = (
            "predictions, specimen_ids and group_ids must have the same length; got "
            f"{preds.size}, {spec.size} and {groups.size}."
        )
        raise ValueError(msg)
    uniq_spec, spec_index = _first_appearance_unique(spec)
    _, group_index = _first_appearance_unique(groups)
    n_keys = (int(spec_index.max()) + 1) * (int(group_index.max()) + 1)
    key = spec_index.astype(np.int64) * (int(group_index.max()) + 1) + group_index
    if n_keys <= 4 * key.size + 1024:  # O(n) duplicate check
        counts = np.bincount(key, minlength=n_keys)
        repeated = np.flatnonzero(counts > 1)
    else:
        uniq_key, counts = np.unique(key, return_counts=True)
        repeated = uniq_key[counts > 1]
    if repeated.size:
        dup = np.flatnonzero(key == repeated[0])[0]
        msg = (
            f"specimen {spec[dup].item()!r} has more than one prediction for group "
            f"{groups[dup].item()!r}; each (specimen, group) pair must appear once."
        )
        raise ValueError(msg)
    nan = np.isnan(preds)
    if nan.any():
        if nan_policy == "raise":
            msg = (
                f"predictions contains {int(nan.sum())} NaN value(s) "
                f"(first at index {int(np.flatnonzero(nan)[0])}); pass nan_policy='omit'."
            )
            raise ValueError(msg)
        preds, spec_index = preds[~nan], spec_index[~nan]
    return preds, spec_index, uniq_spec.tolist()


def _grouped_mean_std(
    values: np.ndarray, index: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Count, mean and population std of ``values`` per ``index`` (bincount, two passes).

    Each group is shifted by its first value first, so identical values give
    an exact zero std.
    """
    count = np.bincount(index, minlength=n_groups)
    shift = np.zeros(n_groups)
    present, first = np.unique(index, return_index=True)
    shift[present] = values[first]
    shifted = values - shift[index]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_shifted = np.bincount(index, weights=shifted, minlength=n_groups) / count
        dev = shifted - mean_shifted[index]
        sigma = np.sqrt(np.bincount(index, weights=dev * dev, minlength=n_groups) / count)
    return count, shift + mean_shifted, sigma


def coefficient_of_variation(
    predictions: object,
    specimen_ids: object = None,
    group_ids: object = None,
    *,
    scale: str = "probability",
    input_scale: str | None = None,
    eps: float = 1e-6,
    nan_policy: str = "raise",
) -> CoVResult:
    r"""Coefficient of variation of predictions across scanners (ScanGen Eq. 1).

    .. math:: \mathrm{CoV} = \frac{1}{N}\sum_{n=1}^{N} \frac{\sigma_n}{|\mu_n|}

    with ``mu_n`` and ``sigma_n`` the mean and the population standard
    deviation (ddof=0) of specimen ``n``'s predictions across its groups
    (scanners, or magnifications).

    Two input forms:

    - flat: ``predictions`` (M,), ``specimen_ids`` (M,), ``group_ids`` (M,);
      one row per (specimen, group); a repeated pair is an error.
    - matrix: ``predictions`` (N, S) with ``group_ids=None``; rows are
      specimens (labelled by ``specimen_ids`` or 0..N-1), columns groups, NaN
      marks a missing prediction.

    Exclusions (listed in ``excluded`` with a reason, never inf): a specimen
    with a single group (sigma is undefined as a spread across scanners), one
    with ``|mu_n| < eps`` (zero-mean guard), and, in the flat form with
    ``nan_policy="omit"``, one whose predictions are all NaN.

    Args:
        predictions: Predictions, flat (M,) or a (N, S) matrix.
        specimen_ids: Specimen of each prediction (flat) or row labels (matrix).
        group_ids: Scanner (or magnification) of each prediction; ``None``
            selects the matrix form.
        scale: Scale of the computation: ``"probability"`` (default: the
            positive-class probability) or ``"logit"`` (the paper's wording).
        input_scale: What ``predictions`` hold: ``"probability"`` or
            ``"logit"``; ``None`` (default) means the same as ``scale``.
            Probabilities are turned into logits with ``log(p / (1 - p))``
            after clipping to ``[1e-7, 1 - 1e-7]``; logits into probabilities
            with the sigmoid.
        eps: Zero-mean guard: specimens with ``|mu_n| < eps`` are excluded.
        nan_policy: ``"raise"`` (default) or ``"omit"`` (flat form: drop NaN
            predictions; in the matrix form NaN always means "missing").

    Returns:
        A :class:`CoVResult`.

    Raises:
        ValueError: On empty input, mismatched lengths, duplicated
            (specimen, group) pairs, inf values, NaN with ``nan_policy="raise"``,
            probabilities outside [0, 1], or an unknown ``scale``.

    Examples:
        >>> import numpy as np
        >>> m = np.array([[0.2, 0.4], [0.5, 0.5], [0.7, np.nan]])
        >>> res = coefficient_of_variation(m, specimen_ids=["a", "b", "c"])
        >>> res.per_specimen
        {'a': 0.333..., 'b': 0.0}
        >>> res.excluded
        [{'specimen_id': 'c', 'reason': 'single group (needs >= 2)', 'n_groups': 1, 'mean': 0.7}]

    """
    check_in_choices(scale, COV_SCALES, "scale")
    input_scale = scale if input_scale is None else input_scale
    check_in_choices(input_scale, COV_SCALES, "input_scale")
    _check_nan_policy(nan_policy)
    eps = float(eps)
    if not eps >= 0:
        msg = f"eps must be >= 0, got {eps}."
        raise ValueError(msg)
    preds = _as_array(predictions, "predictions")
    if not (np.issubdtype(preds.dtype, np.number) or preds.dtype == bool):
        msg = f"predictions must be numeric, got dtype {preds.dtype}."
        raise TypeError(msg)
    preds = preds.astype(np.float64)
    if preds.size == 0:
        msg = "predictions is empty."
        raise ValueError(msg)
    if np.isinf(preds).any():
        msg = f"predictions contains {int(np.isinf(preds).sum())} inf value(s)."
        raise ValueError(msg)

    if group_ids is None:
        values, spec_index, unique_ids = _cov_matrix_inputs(preds, specimen_ids)
    else:
        values, spec_index, unique_ids = _cov_flat_inputs(
            preds, specimen_ids, group_ids, nan_policy
        )
    values = _to_cov_scale(values, scale, input_scale)
    n_spec = len(unique_ids)
    count, mu, sigma = _grouped_mean_std(values, spec_index, n_spec)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = sigma / np.abs(mu)
    near_zero = np.abs(mu) < eps
    used = (count >= 2) & ~near_zero

    excluded = []
    for i in np.flatnonzero(~used):
        if count[i] == 0:
            reason = "no valid prediction"
        elif count[i] == 1:
            reason = "single group (needs >= 2)"
        else:
            reason = f"|mean| < eps ({eps:g})"
        mean_i = float(mu[i]) if count[i] else float("nan")
        excluded.append(
            {
                "specimen_id": unique_ids[i],
                "reason": reason,
                "n_groups": int(count[i]),
                "mean": mean_i,
            }
        )
    has_pred = count > 0
    n_used = int(used.sum())
    cov = float(ratio[used].mean()) if n_used else float("nan")
    mean_sigma = float(sigma[used].mean()) if n_used else float("nan")
    if not n_used:
        warnings.warn(
            "coefficient_of_variation: no specimen has >= 2 groups and |mean| >= eps; CoV is NaN.",
            RuntimeWarning,
            stacklevel=2,
        )
    ids = np.empty(n_spec, dtype=object)
    ids[:] = unique_ids
    used_ids, pred_ids = ids[used].tolist(), ids[has_pred].tolist()
    return CoVResult(
        cov=cov,
        per_specimen=dict(zip(used_ids, ratio[used].tolist(), strict=True)),
        per_specimen_mean=dict(zip(pred_ids, mu[has_pred].tolist(), strict=True)),
        per_specimen_std=dict(zip(pred_ids, sigma[has_pred].tolist(), strict=True)),
        mean_sigma=mean_sigma,
        n_used=n_used,
        n_total=n_spec,
        excluded=excluded,
        scale=scale,
        eps=eps,
    )


def magnification_cov(
    predictions: object,
    specimen_ids: object,
    scanner_ids: object,
    magnifications: object,
    *,
    scale: str = "probability",
    input_scale: str | None = None,
    eps: float = 1e-6,
    nan_policy: str = "raise",
) -> CoVResult:
    """Magnification CoV: the CoV across magnifications of the same scanner.

    Each (specimen, scanner) unit is one "specimen" of Eq. 1 whose groups are
    its magnifications (e.g. 40x and 20x); the result averages over units.
    Unit ids are ``"specimen|scanner"`` strings.

    Args:
        predictions: Flat predictions (M,).
        specimen_ids: Specimen of each prediction (M,).
        scanner_ids: Scanner of each prediction (M,).
        magnifications: Magnification of each prediction (M,).
        scale: See :func:`coefficient_of_variation`.
        input_scale: See :func:`coefficient_of_variation`.
        eps: See :func:`coefficient_of_variation`.
        nan_policy: See :func:`coefficient_of_variation`.

    Returns:
        A :class:`CoVResult` keyed by ``"specimen|scanner"``.

    Examples:
        >>> res = magnification_cov(
        ...     [0.4, 0.6, 0.5, 0.5], ["s1"] * 4, ["AT2", "AT2", "P1000", "P1000"], [40, 20, 40, 20]
        ... )
        >>> res.per_specimen
        {'s1|AT2': 0.2, 's1|P1000': 0.0}

    """
    spec = _as_array(specimen_ids, "specimen_ids").reshape(-1).astype(str)
    scanners = _as_array(scanner_ids, "scanner_ids").reshape(-1).astype(str)
    if spec.size != scanners.size:
        msg = f"specimen_ids ({spec.size}) and scanner_ids ({scanners.size}) differ in length."
        raise ValueError(msg)
    units = np.char.add(np.char.add(spec, _PAIR_SEP), scanners)
    return coefficient_of_variation(
        predictions,
        units,
        magnifications,
        scale=scale,
        input_scale=input_scale,
        eps=eps,
        nan_policy=nan_policy,
    )


# --------------------------------------------------------------------------- #
# Dice on label maps: packed one-hot bit planes + popcount
# --------------------------------------------------------------------------- #
@dataclass
class PackedLabels:
    """Label maps stored as packed one-hot bit planes (1 bit per pixel and class).

    Attributes:
        planes: ``(N, K, W)`` uint64: bit ``p`` of plane ``k`` is set where
            pixel ``p`` has label ``values[k]``.
        values: ``(K,)`` class value of each plane.
        valid: ``(N, W)`` uint64 pixels that are not ``ignore_index``
            (``None`` when nothing is ignored).
        bad: ``(N,)`` samples omitted for NaN (``nan_policy="omit"``).
        n_pixels: Pixels per map (shape check between scanners).

    """

    planes: np.ndarray
    values: np.ndarray
    valid: np.ndarray | None
    bad: np.ndarray
    n_pixels: int

    def __len__(self) -> int:
        return int(self.planes.shape[0])

    def take(self, index: np.ndarray | Sequence[int]) -> PackedLabels:
        """Rows ``index`` (a copy)."""
        index = np.asarray(index, dtype=np.intp)
        valid = None if self.valid is None else self.valid[index]
        return PackedLabels(self.planes[index], self.values, valid, self.bad[index], self.n_pixels)

    def select(self, values: np.ndarray) -> np.ndarray:
        """``(N, len(values), W)`` planes for ``values``; all-zero for an absent value."""
        values = np.asarray(values)
        if np.array_equal(values, self.values):
            return self.planes
        out = np.zeros((self.planes.shape[0], values.size, self.planes.shape[2]), np.uint64)
        pos = {int(v): k for k, v in enumerate(self.values)}
        for j, v in enumerate(values.tolist()):
            if v in pos:
                out[:, j] = self.planes[:, pos[v]]
        return out


def _popcount(words: np.ndarray) -> np.ndarray:
    """Number of set bits summed over the last axis (int64)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(words).sum(axis=-1, dtype=np.int64)
    as_bytes = words.view(np.uint8)  # pragma: no cover - NumPy < 2.0
    return _POPCOUNT8[as_bytes].sum(axis=-1, dtype=np.int64)  # pragma: no cover


def _as_label_maps(labels: object, name: str, nan_policy: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate label maps; return ``(N, P)`` integer rows and the NaN rows."""
    arr = _as_array(labels, name)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim < 2:
        msg = f"{name} must hold label maps of shape (N, H, W) or (H, W); got shape {arr.shape}."
        raise ValueError(msg)
    if arr.shape[0] == 0 or arr[0].size == 0:
        msg = f"{name} is empty (shape {arr.shape})."
        raise ValueError(msg)
    rows = arr.reshape(arr.shape[0], -1)
    bad = np.zeros(rows.shape[0], dtype=bool)
    if rows.dtype == bool:
        rows = rows.view(np.uint8)
    elif np.issubdtype(rows.dtype, np.floating):
        nan = np.isnan(rows)
        bad = _handle_nan_rows(nan.any(axis=1), name, nan_policy)
        rows = np.where(nan, 0, rows)
        if not np.array_equal(rows, np.round(rows)) or not np.isfinite(rows).all():
            msg = f"{name} must hold integer class labels (got non-integer float values)."
            raise TypeError(msg)
        rows = rows.astype(np.int64)
    elif not np.issubdtype(rows.dtype, np.integer):
        msg = f"{name} must hold integer class labels, got dtype {rows.dtype}."
        raise TypeError(msg)
    return rows, bad


def _label_range(rows: np.ndarray, ignore_index: int | None, name: str) -> int:
    """Largest label (ignoring ``ignore_index``); negative labels are an error."""
    if ignore_index is not None:
        is_ignored = rows == ignore_index
        low = np.where(is_ignored, 0, rows).min()
        high = np.where(is_ignored, -1, rows).max()
    else:
        high = rows.max()
        low = 0 if np.issubdtype(rows.dtype, np.unsignedinteger) else rows.min()
    if low < 0:
        msg = f"{name} holds negative label {int(low)}; pass ignore_index to skip such pixels."
        raise ValueError(msg)
    return int(high)


def _pack_rows(
    rows: np.ndarray, values: np.ndarray, bad: np.ndarray, ignore_index: int | None
) -> PackedLabels:
    """Pack validated ``(N, P)`` integer rows into one bit plane per class value."""
    values = np.asarray(values, dtype=np.int64)
    n, n_pix = rows.shape
    n_words, n_bytes = -(-n_pix // 64), -(-n_pix // 8)
    planes = np.zeros((n, values.size, n_words), dtype=np.uint64)
    plane_bytes = planes.view(np.uint8)  # (n, K, 8 * n_words); padding stays zero
    valid = None if ignore_index is None else np.zeros((n, n_words), dtype=np.uint64)
    step = max(1, _PACK_CHUNK_PIXELS // n_pix)
    for start in range(0, n, step):  # blocks of samples, bounded temporaries
        stop = min(start + step, n)
        block = rows[start:stop]
        for k, v in enumerate(values.tolist()):
            plane_bytes[start:stop, k, :n_bytes] = np.packbits(block == v, axis=1)
        if valid is not None:
            valid_bytes = valid.view(np.uint8)
            valid_bytes[start:stop, :n_bytes] = np.packbits(block != ignore_index, axis=1)
    return PackedLabels(planes, values, valid, bad, n_pix)


def _pack_label_maps(
    labels: object,
    values: np.ndarray | None,
    *,
    num_classes: int | None = None,
    ignore_index: int | None = None,
    nan_policy: str = "raise",
    name: str = "labels",
) -> PackedLabels:
    """Validate label maps and pack one bit plane per class value.

    ``values=None`` packs ``0..max_label`` (or ``0..num_classes-1``).
    """
    rows, bad = _as_label_maps(labels, name, nan_policy)
    high = _label_range(rows, ignore_index, name)
    if num_classes is not None and high >= num_classes:
        msg = f"{name} holds label {high} but num_classes is {num_classes}."
        raise ValueError(msg)
    if values is None:
        values = np.arange(num_classes if num_classes is not None else high + 1)
    return _pack_rows(rows, values, bad, ignore_index)


def _dice_counts(
    a: PackedLabels, b: PackedLabels, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per sample and class: ``|A_c & B_c|``, ``|A_c|``, ``|B_c|`` (each (N, K))."""
    if a.n_pixels != b.n_pixels:
        msg = f"label maps differ in size: {a.n_pixels} vs {b.n_pixels} pixels per map."
        raise ValueError(msg)
    if len(a) != len(b):
        msg = f"label maps differ in number of samples: {len(a)} vs {len(b)}."
        raise ValueError(msg)
    pa, pb = a.select(values), b.select(values)
    if a.valid is not None or b.valid is not None:
        if a.valid is None:
            mask = b.valid
        elif b.valid is None:
            mask = a.valid
        else:
            mask = a.valid & b.valid
        mask = mask[:, None, :]  # type: ignore[index]
        pa, pb = pa & mask, pb & mask
    return _popcount(pa & pb), _popcount(pa), _popcount(pb)


def _dice_from_counts(
    inter: np.ndarray, count_a: np.ndarray, count_b: np.ndarray, *, per_class: bool = False
) -> np.ndarray:
    """Dice per class (NaN where absent from both) or its mean over present classes.

    A sample with no present class (two empty maps) scores 1.
    """
    denom = count_a + count_b
    present = denom > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        per = np.where(present, 2.0 * inter / np.where(present, denom, 1), np.nan)
    if per_class:
        return per
    n_present = present.sum(axis=1)
    total = np.where(present, per, 0.0).sum(axis=1)
    return np.where(n_present > 0, total / np.maximum(n_present, 1), 1.0)


def _resolve_class_values(
    high: int,
    num_classes: int | None,
    classes: Sequence[int] | None,
    *,
    ignore_background: bool,
) -> np.ndarray:
    """Class values scored: ``classes`` or ``0..C-1``, minus 0 if ``ignore_background``."""
    if classes is not None:
        values = np.unique(np.asarray(list(classes), dtype=np.int64))
        if values.size == 0:
            msg = "classes is empty."
            raise ValueError(msg)
        if values.min() < 0 or (num_classes is not None and values.max() >= num_classes):
            msg = f"classes {values.tolist()} out of range for num_classes={num_classes}."
            raise ValueError(msg)
    else:
        values = np.arange(num_classes if num_classes is not None else high + 1)
    if ignore_background:
        values = values[values != 0]
    return values


def _check_num_classes(num_classes: int | None) -> int | None:
    if num_classes is None:
        return None
    if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 1:
        msg = f"num_classes must be a positive integer, got {num_classes!r}."
        raise ValueError(msg)
    return int(num_classes)


def _dice_between(
    labels_a: object,
    labels_b: object,
    num_classes: int | None,
    classes: Sequence[int] | None,
    *,
    ignore_background: bool,
    ignore_index: int | None,
    nan_policy: str,
    per_class: bool,
    names: tuple[str, str],
) -> tuple[np.ndarray, np.ndarray]:
    """Shared core of :func:`paired_dice` and :func:`dice_score`."""
    _check_nan_policy(nan_policy)
    num_classes = _check_num_classes(num_classes)
    rows_a, bad_a = _as_label_maps(labels_a, names[0], nan_policy)
    rows_b, bad_b = _as_label_maps(labels_b, names[1], nan_policy)
    if rows_a.shape != rows_b.shape:
        msg = (
            f"{names[0]} and {names[1]} must have the same shape (N, H, W); "
            f"got {np.shape(labels_a)} and {np.shape(labels_b)}."
        )
        raise ValueError(msg)
    high = _max_label({names[0]: rows_a, names[1]: rows_b}, ignore_index, num_classes)
    values = _resolve_class_values(high, num_classes, classes, ignore_background=ignore_background)
    a = _pack_rows(rows_a, values, bad_a, ignore_index)
    b = _pack_rows(rows_b, values, bad_b, ignore_index)
    scores = _dice_from_counts(*_dice_counts(a, b, values), per_class=per_class)
    scores[bad_a | bad_b] = np.nan
    return scores, values


def _max_label(
    rows: Mapping[str, np.ndarray], ignore_index: int | None, num_classes: int | None
) -> int:
    """Largest label over several label-map arrays, checked against ``num_classes``."""
    high = -1
    for name, r in rows.items():
        top = _label_range(r, ignore_index, name)
        if num_classes is not None and top >= num_classes:
            msg = f"{name} holds label {top} but num_classes is {num_classes}."
            raise ValueError(msg)
        high = max(high, top)
    return high


def paired_dice(
    labels_a: object,
    labels_b: object,
    num_classes: int | None = None,
    *,
    ignore_background: bool = False,
    classes: Sequence[int] | None = None,
    ignore_index: int | None = None,
    nan_policy: str = "raise",
) -> np.ndarray:
    r"""Per-sample Dice between two scanners' predicted label maps.

    Per class ``c``: ``D_c = 2 |A_c & B_c| / (|A_c| + |B_c|)``; the sample's
    score is the mean of ``D_c`` over the classes present in either map (a
    class absent from both is skipped); two empty maps score 1.

    Counting is vectorised: each map becomes packed one-hot bit planes (one
    bit per pixel and class) and the counts are popcounts of ``&``-ed words.

    Args:
        labels_a: ``(N, H, W)`` (or one ``(H, W)``) integer label maps.
        labels_b: Same shape as ``labels_a``.
        num_classes: Number of classes (labels must be below it); ``None``
            infers ``max label + 1`` (the result does not depend on it, since
            absent classes are skipped).
        ignore_background: Skip class 0 (a map with background only is then
            empty).
        classes: Score only these class values.
        ignore_index: Label of pixels to drop from both maps (e.g. -1 or 255).
        nan_policy: Float label maps with NaN: ``"raise"`` or ``"omit"`` (the
            sample scores NaN).

    Returns:
        ``(N,)`` float64 Dice per sample in ``[0, 1]``.

    Examples:
        >>> import numpy as np
        >>> a = np.array([[0, 1], [1, 1]])
        >>> b = np.array([[0, 1], [0, 1]])
        >>> paired_dice(a, b)  # class 0: 2*1/(1+2), class 1: 2*2/(3+2)
        array([0.733...])
        >>> paired_dice(np.zeros((2, 2), int), np.zeros((2, 2), int), ignore_background=True)
        array([1.])

    """
    scores, _ = _dice_between(
        labels_a,
        labels_b,
        num_classes,
        classes,
        ignore_background=ignore_background,
        ignore_index=ignore_index,
        nan_policy=nan_policy,
        per_class=False,
        names=("labels_a", "labels_b"),
    )
    return scores


def dice_score(
    preds: object,
    target: object,
    num_classes: int | None = None,
    *,
    ignore_background: bool = False,
    classes: Sequence[int] | None = None,
    ignore_index: int | None = None,
    per_class: bool = False,
    nan_policy: str = "raise",
) -> np.ndarray:
    """Dice of predicted label maps against ground truth (same class policy).

    Same per-class rule as :func:`paired_dice`: classes absent from both the
    prediction and the target are skipped; an empty prediction on an empty
    target scores 1. ``ignore_index`` is typically set for unlabelled target
    pixels.

    Args:
        preds: ``(N, H, W)`` (or ``(H, W)``) predicted labels.
        target: Ground-truth labels of the same shape.
        num_classes: Number of classes (``None``: inferred).
        ignore_background: Skip class 0.
        classes: Score only these class values.
        ignore_index: Label of pixels to drop (in either map).
        per_class: Return ``(N, K)`` per-class Dice (NaN where a class is
            absent from both) instead of the per-sample mean; column ``k`` is
            the ``k``-th scored class value in increasing order.
        nan_policy: ``"raise"`` or ``"omit"``.

    Returns:
        ``(N,)`` per-sample Dice, or ``(N, K)`` with ``per_class=True``.

    Examples:
        >>> import numpy as np
        >>> dice_score(np.array([[1, 1, 0]]), np.array([[1, 0, 0]]), per_class=True)
        array([[0.666..., 0.666...]])

    """
    scores, _ = _dice_between(
        preds,
        target,
        num_classes,
        classes,
        ignore_background=ignore_background,
        ignore_index=ignore_index,
        nan_policy=nan_policy,
        per_class=per_class,
        names=("preds", "target"),
    )
    return scores


# --------------------------------------------------------------------------- #
# Classification and embedding pair scores
# --------------------------------------------------------------------------- #
def _same_leading(a: np.ndarray, b: np.ndarray, names: tuple[str, str]) -> None:
    if a.shape[0] == 0:
        msg = f"{names[0]} is empty."
        raise ValueError(msg)
    if a.shape != b.shape:
        msg = f"{names[0]} and {names[1]} must have the same shape; got {a.shape} and {b.shape}."
        raise ValueError(msg)


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


def _unit_rows(emb: np.ndarray, name: str, *, dtype: type = np.float64) -> np.ndarray:
    """L2-normalised rows (a new array); zero-norm rows are an error (cosine undefined)."""
    emb = emb.reshape(emb.shape[0], -1).astype(dtype, copy=False)
    norms = np.sqrt(np.einsum("ij,ij->i", emb, emb, dtype=np.float64))
    zero = norms == 0
    if zero.any():
        msg = (
            f"{name} has {int(zero.sum())} all-zero embedding(s) (first at row "
            f"{int(np.flatnonzero(zero)[0])}); cosine similarity is undefined."
        )
        raise ValueError(msg)
    return emb / norms[:, None].astype(dtype)


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


# --------------------------------------------------------------------------- #
# Pairwise consistency over scanners
# --------------------------------------------------------------------------- #
#: Name -> (per-sample function, higher is better).
PAIR_SCORES: dict[str, tuple[Callable[..., np.ndarray], bool]] = {
    "dice": (paired_dice, True),
    "agreement": (label_agreement, True),
    "abs_prob": (mean_abs_prob_diff, False),
    "cosine": (paired_cosine_similarity, True),
}


@dataclass
class PairConsistency:
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

    """

    score: str
    scanners: list[str]
    matrix: np.ndarray
    pairs: dict[tuple[str, str], float]
    n_samples: dict[tuple[str, str], int]
    per_sample: dict[tuple[str, str], np.ndarray]
    specimen_ids: list[Any] | None = None
    higher_is_better: bool = True

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
) -> PairConsistency:
    """Average per-sample scores per pair (NaN omitted) into a :class:`PairConsistency`."""
    scanners = list(scanners)
    index = {s: i for i, s in enumerate(scanners)}
    matrix = np.full((len(scanners), len(scanners)), np.nan)
    pairs: dict[tuple[str, str], float] = {}
    counts: dict[tuple[str, str], int] = {}
    ordered: dict[tuple[str, str], np.ndarray] = {}
    for a, b in combinations(scanners, 2):
        values = per_sample.get((a, b))
        if values is None:
            values = per_sample.get((b, a), np.zeros(0))
        values = np.asarray(values, dtype=np.float64)
        ok = ~np.isnan(values)
        n = int(ok.sum())
        value = float(values[ok].mean()) if n else float("nan")
        pairs[(a, b)], counts[(a, b)], ordered[(a, b)] = value, n, values
        matrix[index[a], index[b]] = matrix[index[b], index[a]] = value
    return PairConsistency(
        score=score,
        scanners=scanners,
        matrix=matrix,
        pairs=pairs,
        n_samples=counts,
        per_sample=ordered,
        specimen_ids=specimen_ids,
        higher_is_better=higher_is_better,
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


def pairwise_consistency(
    outputs: Mapping[str, object],
    score: str | Callable[..., np.ndarray] = "dice",
    *,
    specimen_ids: Sequence[Any] | None = None,
    nan_policy: str = "raise",
    higher_is_better: bool | None = None,
    **score_kwargs: Any,
) -> PairConsistency:
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
        **score_kwargs: Passed to the score (e.g. ``num_classes``,
            ``ignore_background`` for Dice).

    Returns:
        A :class:`PairConsistency`.

    Examples:
        >>> import numpy as np
        >>> maps = np.zeros((2, 4, 4), int)
        >>> other = maps.copy()
        >>> other[0, :2] = 1
        >>> res = pairwise_consistency({"AT2": maps, "GT450": maps, "P1000": other})
        >>> round(res.average, 4), round(res.minimum, 4), res.min_pair
        (0.7778, 0.6667, ('AT2', 'P1000'))

    """
    _check_nan_policy(nan_policy)
    scanners, arrays, n = _check_outputs(outputs)
    if specimen_ids is not None:
        specimen_ids = _native_list(specimen_ids)
        if len(specimen_ids) != n:
            msg = f"specimen_ids has {len(specimen_ids)} entries for {n} samples."
            raise ValueError(msg)
    if callable(score):
        func, default_hib = score, True
        name = getattr(score, "__name__", "custom")
    else:
        check_in_choices(score, PAIR_SCORES, "score")
        func, default_hib = PAIR_SCORES[score]
        name = score
    hib = default_hib if higher_is_better is None else bool(higher_is_better)
    per_sample: dict[tuple[str, str], np.ndarray] = {}
    if name == "dice" and func is paired_dice:
        per_sample = _pairwise_dice(scanners, arrays, nan_policy=nan_policy, **score_kwargs)
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
        scanners, per_sample, name, higher_is_better=hib, specimen_ids=specimen_ids
    )


def _pairwise_dice(
    scanners: list[str],
    arrays: dict[str, np.ndarray],
    *,
    nan_policy: str,
    num_classes: int | None = None,
    ignore_background: bool = False,
    classes: Sequence[int] | None = None,
    ignore_index: int | None = None,
) -> dict[tuple[str, str], np.ndarray]:
    """Dice for every pair, packing each scanner's maps once."""
    num_classes = _check_num_classes(num_classes)
    rows = {s: _as_label_maps(arrays[s], f"outputs[{s!r}]", nan_policy) for s in scanners}
    high = _max_label(
        {f"outputs[{s!r}]": r for s, (r, _) in rows.items()}, ignore_index, num_classes
    )
    values = _resolve_class_values(high, num_classes, classes, ignore_background=ignore_background)
    packed = {s: _pack_rows(r, values, bad, ignore_index) for s, (r, bad) in rows.items()}
    out = {}
    for a, b in combinations(scanners, 2):
        scores = _dice_from_counts(*_dice_counts(packed[a], packed[b], values))
        scores[rows[a][1] | rows[b][1]] = np.nan
        out[(a, b)] = scores
    return out


# --------------------------------------------------------------------------- #
# Top-k retrieval of the paired embedding (plismbench)
# --------------------------------------------------------------------------- #
def _check_chunk(chunk_size: int) -> int:
    if isinstance(chunk_size, bool) or int(chunk_size) != chunk_size or chunk_size < 1:
        msg = f"chunk_size must be a positive integer, got {chunk_size!r}."
        raise ValueError(msg)
    return int(chunk_size)


def _count_above(
    queries: np.ndarray,
    gallery: np.ndarray,
    threshold: np.ndarray,
    chunk_size: int,
    *,
    columns: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Row and column counts of ``queries @ gallery.T > threshold`` off the diagonal.

    Row ``i``: ``#{j != i: q_i . g_j > threshold_i}``; column ``j``:
    ``#{i != j: q_i . g_j > threshold_j}``. One chunked float32 matrix
    product serves both.
    """
    n = queries.shape[0]
    rows = np.zeros(n, dtype=np.int64)
    cols = np.zeros(n, dtype=np.int64)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        sim = queries[start:stop] @ gallery.T  # (c, n) float32
        local = np.arange(stop - start)
        sim[local, local + start] = -np.inf  # the paired/self entry is never a competitor
        rows[start:stop] = np.count_nonzero(sim > threshold[start:stop, None], axis=1)
        if columns:
            cols += np.count_nonzero(sim > threshold[None, :], axis=0)
    return rows, cols


def retrieval_ranks(
    emb_a: object,
    emb_b: object,
    *,
    gallery: str = "cross",
    chunk_size: int = 1024,
    nan_policy: str = "raise",
) -> tuple[np.ndarray, np.ndarray]:
    """Rank of each paired embedding among the retrieval candidates (0 = best).

    For query ``a_i`` the rank of its pair ``b_i`` is the number of candidates
    with a strictly higher cosine similarity than ``cos(a_i, b_i)`` (ties count
    in the pair's favour); likewise for query ``b_i``. Candidates:
    ``gallery="cross"`` (default) every ``b_j`` (resp. ``a_j``);
    ``gallery="joint"`` (plismbench) every other embedding of both scanners.
    No argsort: row-chunked float32 matrix products and counts, so memory is
    ``O(chunk_size * N)``.

    Args:
        emb_a: ``(N, D)`` embeddings from scanner A.
        emb_b: ``(N, D)`` embeddings of the same samples from scanner B.
        gallery: ``"cross"`` or ``"joint"``.
        chunk_size: Query rows per matrix product.
        nan_policy: ``"raise"`` or ``"omit"``: rows with NaN in either scanner
            are removed from queries and candidates and get rank ``-1``.

    Returns:
        ``(rank_a_to_b, rank_b_to_a)``, two ``(N,)`` int64 arrays.

    Examples:
        >>> import numpy as np
        >>> a = np.eye(3)
        >>> retrieval_ranks(a, a[[0, 2, 1]])[0]
        array([0, 1, 1])

    """
    check_in_choices(gallery, ("cross", "joint"), "gallery")
    _check_nan_policy(nan_policy)
    chunk_size = _check_chunk(chunk_size)
    a = _as_array(emb_a, "emb_a")
    b = _as_array(emb_b, "emb_b")
    if a.ndim != 2:
        msg = f"embeddings must be (N, D); got shape {a.shape}."
        raise ValueError(msg)
    _same_leading(a, b, ("emb_a", "emb_b"))
    bad = _handle_nan_rows(_nan_rows(a) | _nan_rows(b), "embeddings", nan_policy)
    keep = np.flatnonzero(~bad)
    rank_ab = np.full(a.shape[0], -1, dtype=np.int64)
    rank_ba = np.full(a.shape[0], -1, dtype=np.int64)
    if keep.size == 0:
        return rank_ab, rank_ba
    if keep.size < a.shape[0]:
        a, b = a[keep], b[keep]
    ua = _unit_rows(a, "emb_a", dtype=np.float32)
    ub = _unit_rows(b, "emb_b", dtype=np.float32)
    threshold = np.empty(ua.shape[0], dtype=np.float32)  # cos(a_i, b_i), in float64 chunks
    for start in range(0, ua.shape[0], chunk_size):
        stop = start + chunk_size
        threshold[start:stop] = np.einsum(
            "ij,ij->i", ua[start:stop].astype(np.float64), ub[start:stop].astype(np.float64)
        )
    r_ab, r_ba = _count_above(ua, ub, threshold, chunk_size)
    if gallery == "joint":
        r_ab += _count_above(ua, ua, threshold, chunk_size, columns=False)[0]
        r_ba += _count_above(ub, ub, threshold, chunk_size, columns=False)[0]
    rank_ab[keep], rank_ba[keep] = r_ab, r_ba
    return rank_ab, rank_ba


def _check_ks(ks: Sequence[int] | int) -> tuple[int, ...]:
    ks = (ks,) if isinstance(ks, (int, np.integer)) else tuple(ks)
    if not ks or any(isinstance(k, bool) or int(k) != k or k < 1 for k in ks):
        msg = f"ks must be positive integers, got {ks!r}."
        raise ValueError(msg)
    return tuple(int(k) for k in ks)


def _hits(ranks: tuple[np.ndarray, np.ndarray], k: int, direction: str) -> np.ndarray:
    """Per-sample hit fraction (NaN for omitted samples)."""
    r_ab, r_ba = ranks
    hit_ab = (r_ab < k).astype(np.float64)
    hit_ba = (r_ba < k).astype(np.float64)
    out = {"a_to_b": hit_ab, "b_to_a": hit_ba, "both": 0.5 * (hit_ab + hit_ba)}[direction]
    out[r_ab < 0] = np.nan
    return out


def topk_retrieval_accuracy(
    emb_a: object,
    emb_b: object,
    ks: Sequence[int] | int = DEFAULT_TOPK,
    *,
    direction: str = "both",
    gallery: str = "cross",
    chunk_size: int = 1024,
    nan_policy: str = "raise",
) -> dict[int, float]:
    """Top-k retrieval accuracy of the paired embedding (plismbench).

    ``top-k = mean_i [rank_i < k]`` with the ranks of :func:`retrieval_ranks`;
    ``direction="both"`` (default, as plismbench) averages the A->B and B->A
    accuracies.

    Args:
        emb_a: ``(N, D)`` embeddings from scanner A.
        emb_b: ``(N, D)`` embeddings from scanner B, row-aligned with ``emb_a``.
        ks: The k values (default 1, 3, 5, 10).
        direction: ``"both"``, ``"a_to_b"`` or ``"b_to_a"``.
        gallery: ``"cross"`` (candidates: the other scanner's embeddings) or
            ``"joint"`` (plismbench: every other embedding of both scanners).
        chunk_size: Query rows per matrix product (memory ``O(chunk_size * N)``).
        nan_policy: ``"raise"`` or ``"omit"``.

    Returns:
        ``{k: accuracy}``; NaN if every sample was omitted.

    Examples:
        >>> import numpy as np
        >>> x = np.random.default_rng(0).normal(size=(20, 8))
        >>> topk_retrieval_accuracy(x, x, ks=(1, 5))
        {1: 1.0, 5: 1.0}

    """
    check_in_choices(direction, ("both", "a_to_b", "b_to_a"), "direction")
    ks = _check_ks(ks)
    ranks = retrieval_ranks(
        emb_a, emb_b, gallery=gallery, chunk_size=chunk_size, nan_policy=nan_policy
    )
    out = {}
    for k in ks:
        hits = _hits(ranks, k, direction)
        out[k] = float(np.nanmean(hits)) if (~np.isnan(hits)).any() else float("nan")
    return out


def pairwise_topk_retrieval(
    outputs: Mapping[str, object],
    ks: Sequence[int] | int = DEFAULT_TOPK,
    *,
    direction: str = "both",
    gallery: str = "cross",
    chunk_size: int = 1024,
    specimen_ids: Sequence[Any] | None = None,
    nan_policy: str = "raise",
) -> dict[int, PairConsistency]:
    """Top-k retrieval accuracy for every scanner pair (one matrix per k).

    Ranks are computed once per pair and reused for every k. The per-sample
    values are hit fractions (0, 0.5 or 1 with ``direction="both"``).

    Args:
        outputs: Scanner -> ``(N, D)`` embeddings aligned by index.
        ks: The k values.
        direction: See :func:`topk_retrieval_accuracy`.
        gallery: See :func:`retrieval_ranks`.
        chunk_size: See :func:`retrieval_ranks`.
        specimen_ids: Ids of the rows, stored in the results.
        nan_policy: ``"raise"`` or ``"omit"``.

    Returns:
        ``{k: PairConsistency}`` with score names ``"top{k}"``.

    Examples:
        >>> import numpy as np
        >>> x = np.random.default_rng(0).normal(size=(10, 4))
        >>> res = pairwise_topk_retrieval({"A": x, "B": x, "C": x}, ks=(1,))
        >>> res[1].average, res[1].minimum
        (1.0, 1.0)

    """
    check_in_choices(direction, ("both", "a_to_b", "b_to_a"), "direction")
    ks = _check_ks(ks)
    scanners, arrays, n = _check_outputs(outputs)
    if specimen_ids is not None:
        specimen_ids = _native_list(specimen_ids)
        if len(specimen_ids) != n:
            msg = f"specimen_ids has {len(specimen_ids)} entries for {n} samples."
            raise ValueError(msg)
    per_k: dict[int, dict[tuple[str, str], np.ndarray]] = {k: {} for k in ks}
    for a, b in combinations(scanners, 2):
        ranks = retrieval_ranks(
            arrays[a], arrays[b], gallery=gallery, chunk_size=chunk_size, nan_policy=nan_policy
        )
        for k in ks:
            per_k[k][(a, b)] = _hits(ranks, k, direction)
    return {
        k: _aggregate_pairs(
            scanners, per_k[k], f"top{k}", higher_is_better=True, specimen_ids=specimen_ids
        )
        for k in ks
    }


# --------------------------------------------------------------------------- #
# ROC AUC
# --------------------------------------------------------------------------- #
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
