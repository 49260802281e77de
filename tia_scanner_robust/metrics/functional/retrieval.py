"""Top-k retrieval of the paired embedding (plismbench).

:func:`retrieval_ranks` ranks each paired embedding among the candidates with
chunked matrix products (bounded memory, no full argsort);
:func:`topk_retrieval_accuracy` and :func:`pairwise_topk_retrieval` turn the
ranks into top-k accuracies, for one pair or for every scanner pair.

Examples:
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(20, 8))
    >>> topk_retrieval_accuracy(x, x, ks=(1, 5))
    {1: 1.0, 5: 1.0}

"""

from __future__ import annotations

from itertools import combinations
from typing import TYPE_CHECKING, Any

import numpy as np

from tia_scanner_robust._validation import check_in_choices
from tia_scanner_robust.metrics.functional.core import (
    _as_array,
    _check_nan_policy,
    _handle_nan_rows,
    _nan_rows,
    _same_leading,
    _unit_rows,
)
from tia_scanner_robust.metrics.functional.pairwise import (
    _aggregate_pairs,
    _check_outputs,
    _check_specimen_ids,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from tia_scanner_robust.metrics.functional.pairwise import PairConsistencyResult

__all__ = [
    "DEFAULT_TOPK",
    "pairwise_topk_retrieval",
    "retrieval_ranks",
    "topk_retrieval_accuracy",
]

#: The k of plismbench's top-k retrieval accuracy.
DEFAULT_TOPK = (1, 3, 5, 10)


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
) -> dict[int, PairConsistencyResult]:
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
        ``{k: PairConsistencyResult}`` with score names ``"top{k}"``.

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
    specimen_ids = _check_specimen_ids(specimen_ids, n)
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
