"""Dice on label maps: packed one-hot bit planes and popcount.

Each label map becomes one bit plane per class value (1 bit per pixel), so the
per-class counts ``|A_c & B_c|``, ``|A_c|`` and ``|B_c|`` are popcounts of
``&``-ed 64-bit words. :func:`paired_dice` compares two scanners'
predictions, :func:`dice_score` a prediction with the ground truth.

Examples:
    >>> import numpy as np
    >>> paired_dice(np.array([[0, 1], [1, 1]]), np.array([[0, 1], [0, 1]]))
    array([0.733...])

"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import TYPE_CHECKING

import numpy as np

from tia_scanner_robust._validation import check_in_choices
from tia_scanner_robust.metrics.functional.core import (
    _as_array,
    _check_nan_policy,
    _handle_nan_rows,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "DEFAULT_EMPTY_PAIRS",
    "EMPTY_PAIR_POLICIES",
    "PackedLabels",
    "dice_score",
    "empty_pair_mask",
    "paired_dice",
]

#: How a sample whose two maps hold no foreground ("empty-vs-empty") is scored:
#: ``"exclude"`` (NaN, left out of the pair means), ``"one"`` (Dice 1, the
#: SCORPION definition) or ``"nan"`` (NaN that propagates to the pair score).
EMPTY_PAIR_POLICIES = ("exclude", "one", "nan")
#: The consistency default: an all-empty model cannot reach 1.0 silently.
DEFAULT_EMPTY_PAIRS = "exclude"

_PACK_CHUNK_PIXELS = 1 << 24  # temporary boolean planes stay below ~16 MB
_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


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


def _check_empty_pairs(empty_pairs: str) -> str:
    return check_in_choices(empty_pairs, EMPTY_PAIR_POLICIES, "empty_pairs")


def _empty_from_counts(count_a: np.ndarray, count_b: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``(N,)`` samples whose two maps hold no scored foreground class (value != 0)."""
    foreground = np.asarray(values) != 0
    return (count_a[:, foreground] + count_b[:, foreground]).sum(axis=1) == 0


def _apply_empty_policy(scores: np.ndarray, empty: np.ndarray, empty_pairs: str) -> np.ndarray:
    """Per-sample scores with the empty-pair policy applied (NaN unless ``"one"``)."""
    if empty_pairs != "one" and empty.any():
        scores = scores.copy()
        scores[empty] = np.nan
    return scores


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
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shared core of :func:`paired_dice` and :func:`dice_score`: scores, values, empty."""
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
    counts = _dice_counts(a, b, values)
    scores = _dice_from_counts(*counts, per_class=per_class)
    scores[bad_a | bad_b] = np.nan
    empty = _empty_from_counts(counts[1], counts[2], values) & ~(bad_a | bad_b)
    return scores, values, empty


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
    empty_pairs: str = "one",
) -> np.ndarray:
    r"""Per-sample Dice between two scanners' predicted label maps.

    Per class ``c``: ``D_c = 2 |A_c & B_c| / (|A_c| + |B_c|)``; the sample's
    score is the mean of ``D_c`` over the classes present in either map (a
    class absent from both is skipped).

    Empty-vs-empty samples (neither map holds a scored foreground class,
    i.e. a value other than 0: two background-only maps) follow
    ``empty_pairs``: ``"one"`` (default here, SCORPION's per-sample
    definition: Dice 1, which is the class-0 Dice when the background is
    scored) or ``"exclude"`` / ``"nan"`` (NaN). The aggregating functions
    (:func:`~tia_scanner_robust.metrics.functional.pairwise_consistency`,
    the streaming classes and the evaluator) default to ``"exclude"`` and
    count these samples; :func:`empty_pair_mask` finds them.

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
        empty_pairs: ``"one"``, ``"exclude"`` or ``"nan"`` (see above).

    Returns:
        ``(N,)`` float64 Dice per sample in ``[0, 1]`` (NaN: omitted or empty).

    Examples:
        >>> import numpy as np
        >>> a = np.array([[0, 1], [1, 1]])
        >>> b = np.array([[0, 1], [0, 1]])
        >>> paired_dice(a, b)  # class 0: 2*1/(1+2), class 1: 2*2/(3+2)
        array([0.733...])
        >>> paired_dice(np.zeros((2, 2), int), np.zeros((2, 2), int), ignore_background=True)
        array([1.])
        >>> paired_dice(np.zeros((2, 2), int), np.zeros((2, 2), int), empty_pairs="exclude")
        array([nan])

    """
    _check_empty_pairs(empty_pairs)
    scores, _, empty = _dice_between(
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
    return _apply_empty_policy(scores, empty, empty_pairs)


def empty_pair_mask(
    labels_a: object,
    labels_b: object,
    *,
    ignore_background: bool = False,
    classes: Sequence[int] | None = None,
    ignore_index: int | None = None,
) -> np.ndarray:
    """``(N,)`` True where neither map holds a scored foreground class (empty-vs-empty).

    Args:
        labels_a: ``(N, H, W)`` (or ``(H, W)``) integer label maps.
        labels_b: Same shape as ``labels_a``.
        ignore_background: As in :func:`paired_dice`.
        classes: As in :func:`paired_dice`.
        ignore_index: As in :func:`paired_dice`.

    Returns:
        Boolean ``(N,)``.

    Examples:
        >>> import numpy as np
        >>> a = np.zeros((2, 4, 4), int)
        >>> b = a.copy()
        >>> b[1, 0, 0] = 1
        >>> empty_pair_mask(a, b)
        array([ True, False])

    """
    _, _, empty = _dice_between(
        labels_a,
        labels_b,
        None,
        classes,
        ignore_background=ignore_background,
        ignore_index=ignore_index,
        nan_policy="omit",
        per_class=False,
        names=("labels_a", "labels_b"),
    )
    return empty


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
    scores, _, _ = _dice_between(
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


def _pairwise_dice(
    scanners: list[str],
    arrays: dict[str, np.ndarray],
    *,
    nan_policy: str,
    num_classes: int | None = None,
    ignore_background: bool = False,
    classes: Sequence[int] | None = None,
    ignore_index: int | None = None,
    empty_pairs: str = DEFAULT_EMPTY_PAIRS,
) -> tuple[dict[tuple[str, str], np.ndarray], dict[tuple[str, str], np.ndarray]]:
    """Dice and empty-vs-empty masks for every pair, packing each scanner's maps once."""
    _check_empty_pairs(empty_pairs)
    num_classes = _check_num_classes(num_classes)
    rows = {s: _as_label_maps(arrays[s], f"outputs[{s!r}]", nan_policy) for s in scanners}
    high = _max_label(
        {f"outputs[{s!r}]": r for s, (r, _) in rows.items()}, ignore_index, num_classes
    )
    values = _resolve_class_values(high, num_classes, classes, ignore_background=ignore_background)
    packed = {s: _pack_rows(r, values, bad, ignore_index) for s, (r, bad) in rows.items()}
    out, empties = {}, {}
    for a, b in combinations(scanners, 2):
        counts = _dice_counts(packed[a], packed[b], values)
        scores = _dice_from_counts(*counts)
        bad = rows[a][1] | rows[b][1]
        scores[bad] = np.nan
        empty = _empty_from_counts(counts[1], counts[2], values) & ~bad
        out[(a, b)] = _apply_empty_policy(scores, empty, empty_pairs)
        empties[(a, b)] = empty
    return out, empties
