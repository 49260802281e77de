"""Shared array helpers of :mod:`tia_scanner_robust.metrics.functional`.

Input conversion (torch tensors are detached), the NaN policy, row checks and
row normalisation used by the metric modules of the package (and by the
streaming classes of :mod:`tia_scanner_robust.metrics.consistency`). The
underscore helpers are internal to :mod:`tia_scanner_robust.metrics`.

Examples:
    >>> import numpy as np
    >>> NAN_POLICIES
    ('raise', 'omit')
    >>> _nan_rows(np.array([[1.0, np.nan], [0.0, 1.0]]))
    array([ True, False])

"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tia_scanner_robust._validation import check_in_choices

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["NAN_POLICIES"]

#: What to do with NaN predictions: raise a ``ValueError`` or omit the sample.
NAN_POLICIES = ("raise", "omit")


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


def _same_leading(a: np.ndarray, b: np.ndarray, names: tuple[str, str]) -> None:
    if a.shape[0] == 0:
        msg = f"{names[0]} is empty."
        raise ValueError(msg)
    if a.shape != b.shape:
        msg = f"{names[0]} and {names[1]} must have the same shape; got {a.shape} and {b.shape}."
        raise ValueError(msg)


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
