r"""Coefficient of variation across scanners (ScanGen Eq. 1).

:func:`coefficient_of_variation` computes
``CoV = (1/N) sum_n sigma_n / |mu_n|`` over specimens, on the probability or
the logit scale; :func:`magnification_cov` applies it across the
magnifications of each (specimen, scanner) unit.

Examples:
    >>> res = coefficient_of_variation(
    ...     [0.2, 0.4, 0.5, 0.5], ["s1", "s1", "s2", "s2"], ["AT2", "GT450", "AT2", "GT450"]
    ... )
    >>> round(res.cov, 4), res.n_used
    (0.1667, 2)

"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tia_scanner_robust._io import to_jsonable
from tia_scanner_robust._validation import check_in_choices
from tia_scanner_robust.metrics.functional.core import (
    _as_array,
    _check_nan_policy,
    _first_appearance_unique,
    _native_list,
)

__all__ = [
    "COV_SCALES",
    "LOGIT_CLIP",
    "CoVResult",
    "coefficient_of_variation",
    "magnification_cov",
]

#: Scales on which :func:`coefficient_of_variation` can be computed.
COV_SCALES = ("probability", "logit")
#: Probabilities are clipped to ``[c, 1 - c]`` before the logit transform.
LOGIT_CLIP = 1e-7

_PAIR_SEP = "|"


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
        ci95: Bootstrap interval ``[low, high]`` of ``cov`` once
            :func:`~tia_scanner_robust.metrics.functional.bootstrap_cov` has
            run (``None`` before, or with fewer than 2 used specimens).

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
    ci95: list[float] | None = None

    @property
    def n_eps_excluded(self) -> int:
        """Specimens excluded by the zero-mean guard ``|mu_n| < eps``."""
        return sum(1 for item in self.excluded if str(item["reason"]).startswith("|mean|"))

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
            "cov_ci95": self.ci95,
            "n_excluded": len(self.excluded),
            "n_eps_excluded": self.n_eps_excluded,
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
