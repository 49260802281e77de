"""Stateful scanner-consistency metrics: ``update`` / ``compute`` / ``reset``.

torchmetrics-style accumulators over the functional core in
:mod:`tia_scanner_robust.metrics.functional`; the maths is not repeated here,
so a streamed result equals the one-shot functional result.

- :class:`PairedConsistency`: per-pair consistency (Dice, agreement,
  ``|delta p|``, cosine) fed one batch at a time, e.g. scanner by scanner.
  A sample's pair score is computed as soon as both members of the pair have
  arrived; with ``scanners`` given, a specimen's buffered outputs are freed
  as soon as every scanner has been seen, so memory stays bounded by the
  specimens in flight. Label maps are buffered as packed one-hot bit planes
  (1 bit per pixel and class: 8x smaller than uint8 maps for one class).
- :class:`PairedRetrieval`: top-k retrieval of the paired embedding; needs
  every embedding of a pair at :meth:`~PairedRetrieval.compute` (they are
  small: ``N x D`` floats per scanner).
- :class:`CoVAccumulator`: the CoV of Eq. 1 over predictions streamed with
  their specimen and group ids (``CoVMetric`` is a deprecated alias).
- :class:`ScannerConsistency`: the metric set of a task (segmentation,
  classification, embedding) behind one ``update``.

Examples:
    >>> import numpy as np
    >>> from tia_scanner_robust.metrics.consistency import PairedConsistency
    >>> metric = PairedConsistency("dice", scanners=["AT2", "GT450"])
    >>> maps = np.ones((2, 4, 4), int)
    >>> metric.update(["s1", "s2"], "AT2", maps)
    >>> metric.update(["s1", "s2"], "GT450", maps)
    >>> metric.compute().average
    1.0

"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from tia_scanner_robust._validation import check_in_choices
from tia_scanner_robust.metrics._deprecation import deprecated_aliases
from tia_scanner_robust.metrics.functional.core import (
    _as_array,
    _check_nan_policy,
    _native_list,
)
from tia_scanner_robust.metrics.functional.cov import (
    COV_SCALES,
    CoVResult,
    coefficient_of_variation,
)
from tia_scanner_robust.metrics.functional.dice import (
    DEFAULT_EMPTY_PAIRS,
    PackedLabels,
    _apply_empty_policy,
    _check_empty_pairs,
    _check_num_classes,
    _dice_counts,
    _dice_from_counts,
    _empty_from_counts,
    _pack_label_maps,
    _resolve_class_values,
)
from tia_scanner_robust.metrics.functional.pairwise import (
    PAIR_SCORES,
    PairConsistencyResult,
    _aggregate_pairs,
)
from tia_scanner_robust.metrics.functional.retrieval import (
    DEFAULT_TOPK,
    _check_chunk,
    _check_ks,
    _hits,
    retrieval_ranks,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = [
    "TASK_METRICS",
    "CoVAccumulator",
    "PairedConsistency",
    "PairedRetrieval",
    "ScannerConsistency",
]

#: Tasks known to :class:`ScannerConsistency` and the metrics each computes.
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "segmentation": ("dice",),
    "classification": ("agreement", "abs_prob"),
    "embedding": ("cosine", "topk"),
}


def _batch(
    specimen_ids: Sequence[Any], scanner: str | Sequence[str], outputs: object
) -> tuple[list[Any], list[str], np.ndarray]:
    """Validate one ``update`` batch: ids, per-row scanners, outputs."""
    ids = _native_list(specimen_ids)
    arr = _as_array(outputs, "outputs")
    if arr.ndim == 0 or arr.shape[0] != len(ids):
        msg = (
            f"outputs must have one row per specimen id: got {len(ids)} ids and outputs "
            f"of shape {arr.shape}."
        )
        raise ValueError(msg)
    if isinstance(scanner, str):
        scanners = [scanner] * len(ids)
    else:
        scanners = [str(s) for s in scanner]
        if len(scanners) != len(ids):
            msg = f"scanner has {len(scanners)} entries for {len(ids)} specimen ids."
            raise ValueError(msg)
    return ids, scanners, arr


class _PairedBase:
    """Bookkeeping shared by the paired accumulators: scanner and specimen order."""

    def __init__(self, scanners: Sequence[str] | None) -> None:
        self.scanners = None if scanners is None else [str(s) for s in scanners]
        if self.scanners is not None and (
            len(set(self.scanners)) != len(self.scanners) or len(self.scanners) < 2
        ):
            msg = f"scanners must be at least 2 distinct names, got {self.scanners}."
            raise ValueError(msg)
        self.reset()

    def reset(self) -> None:
        """Forget every update."""
        self._scanner_order: list[str] = list(self.scanners or [])
        self._specimen_order: dict[Any, int] = {}
        self._seen: set[tuple[Any, str]] = set()

    def _register(self, ids: list[Any], scanner: str) -> None:
        if self.scanners is not None and scanner not in self.scanners:
            msg = f"unknown scanner {scanner!r}; expected one of {self.scanners}."
            raise ValueError(msg)
        keys = [(sid, scanner) for sid in ids]
        if len(set(keys)) != len(keys):
            msg = f"duplicate specimen ids in one batch of scanner {scanner!r}."
            raise ValueError(msg)
        repeated = [k for k in keys if k in self._seen]
        if repeated:
            msg = f"specimen {repeated[0][0]!r} was already updated for scanner {scanner!r}."
            raise ValueError(msg)

    def _commit(self, ids: list[Any], scanner: str) -> None:
        if scanner not in self._scanner_order:
            self._scanner_order.append(scanner)
        for sid in ids:
            self._specimen_order.setdefault(sid, len(self._specimen_order))
            self._seen.add((sid, scanner))

    def _pair_key(self, s1: str, s2: str) -> tuple[str, str]:
        order = {s: i for i, s in enumerate(self._scanner_order)}
        return (s1, s2) if order.get(s1, -1) <= order.get(s2, len(order)) else (s2, s1)

    def _check_ready(self) -> list[str]:
        if len(self._scanner_order) < 2 or not self._specimen_order:
            msg = "compute() needs updates from at least 2 scanners."
            raise ValueError(msg)
        return list(self._scanner_order)


class PairedConsistency(_PairedBase):
    """Streaming scanner-paired consistency (SCORPION protocol).

    ``update(specimen_ids, scanner, outputs)`` takes a batch of outputs of one
    scanner (or a per-row list of scanners). Each sample's pair score is
    computed by the functional score as soon as its partner is available;
    :meth:`compute` averages per pair and returns a
    :class:`~tia_scanner_robust.metrics.functional.PairConsistencyResult`.

    Args:
        score: ``"dice"``, ``"agreement"``, ``"abs_prob"``, ``"cosine"`` or a
            callable ``f(a, b) -> (N,)`` (assumed symmetric). A callable
            with a true ``reports_empty`` attribute returns ``(scores, empty)``
            instead (a Dice-like score that flags empty-vs-empty samples, e.g.
            the WSI canvas Dice); ``empty_pairs`` then applies to it.
        num_classes: Dice: number of classes (``None``: inferred per batch;
            the score does not depend on it).
        classes: Dice: score only these class values.
        ignore_background: Dice: skip class 0 (keyword-only).
        ignore_index: Dice: label of pixels to drop.
        scanners: The expected scanners in canonical order. Recommended: a
            specimen's buffered outputs are freed once all have been seen
            (otherwise they stay until :meth:`reset`).
        nan_policy: ``"raise"`` or ``"omit"``.
        higher_is_better: Override the score's direction.
        empty_pairs: Dice: how empty-vs-empty samples count (``"exclude"``
            by default, ``"one"``, ``"nan"``; see
            :func:`~tia_scanner_robust.metrics.functional.pairwise_consistency`).
        **score_kwargs: Extra keyword arguments of a callable score.

    Examples:
        >>> import numpy as np
        >>> m = PairedConsistency("agreement", scanners=["A", "B", "C"])
        >>> m.update(["x", "y"], "A", np.array([0, 1]))
        >>> m.update(["x", "y"], "B", np.array([0, 0]))
        >>> m.update(["x", "y"], "C", np.array([0, 1]))
        >>> res = m.compute()
        >>> res.pairs[("A", "B")], res.minimum, res.min_pair
        (0.5, 0.5, ('A', 'B'))

    """

    def __init__(
        self,
        score: str | Callable[..., np.ndarray] = "dice",
        *,
        num_classes: int | None = None,
        classes: Sequence[int] | None = None,
        ignore_background: bool = False,
        ignore_index: int | None = None,
        scanners: Sequence[str] | None = None,
        nan_policy: str = "raise",
        higher_is_better: bool | None = None,
        empty_pairs: str | None = None,
        **score_kwargs: Any,
    ) -> None:
        if callable(score):
            self._func, default_hib = score, True
            self.score = getattr(score, "__name__", "custom")
        else:
            check_in_choices(score, PAIR_SCORES, "score")
            self._func, default_hib = PAIR_SCORES[score]
            self.score = score
        self.higher_is_better = default_hib if higher_is_better is None else bool(higher_is_better)
        self.nan_policy = _check_nan_policy(nan_policy)
        self.num_classes = _check_num_classes(num_classes)
        self.classes = None if classes is None else [int(c) for c in classes]
        self.ignore_background = bool(ignore_background)
        self.ignore_index = ignore_index
        self.score_kwargs = score_kwargs
        self._is_dice = not callable(score) and score == "dice"
        self._reports_empty = self._is_dice or bool(getattr(score, "reports_empty", False))
        if empty_pairs is not None and not self._reports_empty:
            msg = f"empty_pairs applies to the 'dice' score only, not {self.score!r}."
            raise ValueError(msg)
        self.empty_pairs = (
            _check_empty_pairs(empty_pairs or DEFAULT_EMPTY_PAIRS) if self._reports_empty else None
        )
        if self._is_dice and self.classes is not None:
            self._fixed_values: np.ndarray | None = _resolve_class_values(
                -1, self.num_classes, self.classes, ignore_background=self.ignore_background
            )
        elif self._is_dice and self.num_classes is not None:
            self._fixed_values = _resolve_class_values(
                -1, self.num_classes, None, ignore_background=self.ignore_background
            )
        else:
            self._fixed_values = None
        super().__init__(scanners)

    def reset(self) -> None:
        """Forget every update (scores and buffered outputs)."""
        super().reset()
        self._buffer: dict[Any, dict[str, Any]] = {}
        self._scores: dict[tuple[str, str], dict[Any, float]] = {}
        self._empty: dict[tuple[str, str], set[Any]] = {}

    @property
    def n_buffered(self) -> int:
        """Number of (specimen, scanner) outputs currently held in memory."""
        return sum(len(v) for v in self._buffer.values())

    # -- per-score preparation and scoring ---------------------------------- #
    def _prepare(self, arr: np.ndarray) -> list[Any]:
        """Validate a batch and split it into per-sample items to buffer."""
        if self._is_dice:
            packed = _pack_label_maps(
                arr,
                self._fixed_values,
                num_classes=self.num_classes,
                ignore_index=self.ignore_index,
                nan_policy=self.nan_policy,
                name="outputs",
            )
            return [packed.take([i]) for i in range(len(packed))]
        if arr.ndim == 0 or arr.shape[0] == 0:
            msg = "outputs is empty."
            raise ValueError(msg)
        return [np.array(row, copy=True) for row in arr]

    def _score_rows(
        self, items_a: list[Any], items_b: list[Any]
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Vectorised scores of row-aligned item lists, and the empty-vs-empty rows (Dice)."""
        if self._is_dice:
            a, b = _stack_packed(items_a), _stack_packed(items_b)
            values = self._fixed_values
            if values is None:
                values = np.union1d(a.values, b.values)
                if self.ignore_background:
                    values = values[values != 0]
            counts = _dice_counts(a, b, values)
            scores = _dice_from_counts(*counts)
            bad = a.bad | b.bad
            scores[bad] = np.nan
            empty = _empty_from_counts(counts[1], counts[2], values) & ~bad
            return _apply_empty_policy(scores, empty, str(self.empty_pairs)), empty
        stacked_a, stacked_b = np.stack(items_a), np.stack(items_b)
        kwargs = dict(self.score_kwargs)
        if self.score in PAIR_SCORES and self._func is PAIR_SCORES[self.score][0]:
            kwargs["nan_policy"] = self.nan_policy
        out = self._func(stacked_a, stacked_b, **kwargs)
        if not self._reports_empty:
            return np.asarray(out, dtype=np.float64), None
        scores, empty = (np.asarray(v) for v in out)
        empty = empty.astype(bool)
        scores = _apply_empty_policy(scores.astype(np.float64), empty, str(self.empty_pairs))
        return scores, empty

    # -- public API ----------------------------------------------------------- #
    def update(
        self, specimen_ids: Sequence[Any], scanner: str | Sequence[str], outputs: object
    ) -> None:
        """Add a batch of outputs.

        Args:
            specimen_ids: ``(B,)`` specimen of each row.
            scanner: The batch's scanner, or one scanner per row.
            outputs: ``(B, ...)`` outputs (label maps, labels, probabilities
                or embeddings, by score).

        Raises:
            ValueError: On a repeated (specimen, scanner), an unknown scanner,
                mismatched lengths or invalid outputs; the state is unchanged.

        """
        ids, scanners, arr = _batch(specimen_ids, scanner, outputs)
        if isinstance(scanner, str):  # one scanner: no copy of the batch
            self._update_scanner(ids, scanner, arr)
            return
        for name in dict.fromkeys(scanners):
            rows = [i for i, s in enumerate(scanners) if s == name]
            self._update_scanner([ids[i] for i in rows], name, arr[rows])

    def _update_scanner(self, ids: list[Any], scanner: str, arr: np.ndarray) -> None:
        self._register(ids, scanner)
        items = self._prepare(arr)
        new_scores: list[tuple[tuple[str, str], list[Any], np.ndarray, np.ndarray | None]] = []
        for other in self._scanner_order:
            if other == scanner:
                continue
            rows = [i for i, sid in enumerate(ids) if other in self._buffer.get(sid, {})]
            if not rows:
                continue
            partners = [self._buffer[ids[i]][other] for i in rows]
            scores, empty = self._score_rows(partners, [items[i] for i in rows])
            key = self._pair_key(other, scanner)
            new_scores.append((key, [ids[i] for i in rows], scores, empty))
        self._commit(ids, scanner)  # state changes only after every score succeeded
        for key, sids, scores, empty in new_scores:
            bucket = self._scores.setdefault(key, {})
            bucket.update(zip(sids, scores.tolist(), strict=True))
            if empty is not None:
                self._empty.setdefault(key, set()).update(
                    sid for sid, e in zip(sids, empty.tolist(), strict=True) if e
                )
        for sid, item in zip(ids, items, strict=True):
            self._buffer.setdefault(sid, {})[scanner] = item
            if self.scanners is not None and len(self._buffer[sid]) == len(self.scanners):
                del self._buffer[sid]  # every pair of this specimen is scored

    def compute(self) -> PairConsistencyResult:
        """Average the accumulated per-sample scores per scanner pair.

        Returns:
            A :class:`~tia_scanner_robust.metrics.functional.PairConsistencyResult`;
            ``per_sample`` rows follow the order in which specimens arrived
            (NaN where a specimen lacks that pair).

        """
        scanners = self._check_ready()
        specimens = list(self._specimen_order)
        per_sample = {}
        empty: dict[tuple[str, str], np.ndarray] | None = {} if self._reports_empty else None
        for key, bucket in self._scores.items():
            values = np.full(len(specimens), np.nan)
            for sid, value in bucket.items():
                values[self._specimen_order[sid]] = value
            per_sample[key] = values
            if empty is not None:
                mask = np.zeros(len(specimens), dtype=bool)
                mask[[self._specimen_order[sid] for sid in self._empty.get(key, ())]] = True
                empty[key] = mask
        return _aggregate_pairs(
            scanners,
            per_sample,
            self.score,
            higher_is_better=self.higher_is_better,
            specimen_ids=specimens,
            empty=empty,
            empty_pairs=self.empty_pairs,
        )


def _stack_packed(items: list[PackedLabels]) -> PackedLabels:
    """Concatenate single-sample packed label maps (union of their class planes)."""
    sizes = {p.n_pixels for p in items}
    if len(sizes) != 1:
        msg = f"label maps differ in size between samples: {sorted(sizes)} pixels."
        raise ValueError(msg)
    values = items[0].values
    if any(not np.array_equal(p.values, values) for p in items):
        values = np.unique(np.concatenate([p.values for p in items]))
    planes = np.concatenate([p.select(values) for p in items])
    if any(p.valid is not None for p in items):
        valid = np.concatenate([p.valid if p.valid is not None else _all_valid(p) for p in items])
    else:
        valid = None
    bad = np.concatenate([p.bad for p in items])
    return PackedLabels(planes, values, valid, bad, items[0].n_pixels)


def _all_valid(packed: PackedLabels) -> np.ndarray:
    """A valid-pixel plane with every real pixel set (padding bits stay zero)."""
    bits = np.zeros((len(packed), packed.planes.shape[2] * 64), dtype=bool)
    bits[:, : packed.n_pixels] = True
    return np.packbits(bits, axis=1).view(np.uint64)


class PairedRetrieval(_PairedBase):
    """Streaming top-k retrieval of the paired embedding for every scanner pair.

    Embeddings are held per scanner until :meth:`compute`, which calls
    :func:`~tia_scanner_robust.metrics.functional.retrieval_ranks` on the
    specimens each pair has in common.

    Args:
        ks: The k values (default 1, 3, 5, 10).
        direction: ``"both"`` (default), ``"a_to_b"`` or ``"b_to_a"``.
        gallery: ``"cross"`` (default) or ``"joint"`` (plismbench).
        chunk_size: Query rows per matrix product.
        scanners: Expected scanners in canonical order (optional).
        nan_policy: ``"raise"`` or ``"omit"``.

    Examples:
        >>> import numpy as np
        >>> x = np.random.default_rng(0).normal(size=(6, 4))
        >>> m = PairedRetrieval(ks=(1,))
        >>> m.update(range(6), "A", x)
        >>> m.update(range(6), "B", x)
        >>> m.compute()["top1"].average
        1.0

    """

    def __init__(
        self,
        ks: Sequence[int] | int = DEFAULT_TOPK,
        *,
        direction: str = "both",
        gallery: str = "cross",
        chunk_size: int = 1024,
        scanners: Sequence[str] | None = None,
        nan_policy: str = "raise",
    ) -> None:
        self.ks = _check_ks(ks)
        self.direction = check_in_choices(direction, ("both", "a_to_b", "b_to_a"), "direction")
        self.gallery = check_in_choices(gallery, ("cross", "joint"), "gallery")
        self.chunk_size = _check_chunk(chunk_size)
        self.nan_policy = _check_nan_policy(nan_policy)
        super().__init__(scanners)

    def reset(self) -> None:
        """Forget every update."""
        super().reset()
        self._embeddings: dict[str, dict[Any, np.ndarray]] = {}

    def update(
        self, specimen_ids: Sequence[Any], scanner: str | Sequence[str], embeddings: object
    ) -> None:
        """Add ``(B, D)`` embeddings of one scanner (or one scanner per row)."""
        ids, scanners, arr = _batch(specimen_ids, scanner, embeddings)
        if arr.ndim != 2:
            msg = f"embeddings must be (B, D); got shape {arr.shape}."
            raise ValueError(msg)
        for name in dict.fromkeys(scanners):
            rows = [i for i, s in enumerate(scanners) if s == name]
            batch_ids = [ids[i] for i in rows]
            self._register(batch_ids, name)
            store = self._embeddings.setdefault(name, {})
            dims = {v.shape[0] for v in store.values()} | {arr.shape[1]}
            if len(dims) != 1:
                msg = f"embedding sizes differ for scanner {name!r}: {sorted(dims)}."
                raise ValueError(msg)
            self._commit(batch_ids, name)
            store.update(zip(batch_ids, np.array(arr[rows], copy=True), strict=True))

    def compute(self) -> dict[str, PairConsistencyResult]:
        """Top-k accuracy per pair: ``{"top1": PairConsistencyResult, "top3": ...}``."""
        scanners = self._check_ready()
        specimens = list(self._specimen_order)
        per_k: dict[int, dict[tuple[str, str], np.ndarray]] = {k: {} for k in self.ks}
        for i, a in enumerate(scanners):
            for b in scanners[i + 1 :]:
                emb_a, emb_b = self._embeddings.get(a, {}), self._embeddings.get(b, {})
                common = [sid for sid in specimens if sid in emb_a and sid in emb_b]
                if not common:
                    continue
                ranks = retrieval_ranks(
                    np.stack([emb_a[s] for s in common]),
                    np.stack([emb_b[s] for s in common]),
                    gallery=self.gallery,
                    chunk_size=self.chunk_size,
                    nan_policy=self.nan_policy,
                )
                rows = [self._specimen_order[s] for s in common]
                for k in self.ks:
                    values = np.full(len(specimens), np.nan)
                    values[rows] = _hits(ranks, k, self.direction)
                    per_k[k][(a, b)] = values
        return {
            f"top{k}": _aggregate_pairs(
                scanners, per_k[k], f"top{k}", higher_is_better=True, specimen_ids=specimens
            )
            for k in self.ks
        }


class CoVAccumulator:
    """Streaming coefficient of variation (ScanGen Eq. 1).

    ``update(predictions, specimen_ids, groups)`` appends flat predictions;
    :meth:`compute` calls
    :func:`~tia_scanner_robust.metrics.functional.coefficient_of_variation`
    on everything seen.

    Args:
        scale: ``"probability"`` (default) or ``"logit"``.
        input_scale: What the predictions hold (``None``: same as ``scale``).
        eps: Zero-mean guard.
        nan_policy: ``"raise"`` or ``"omit"``.

    Examples:
        >>> m = CoVAccumulator()
        >>> m.update([0.2, 0.5], ["s1", "s2"], "AT2")
        >>> m.update([0.4, 0.5], ["s1", "s2"], "GT450")
        >>> round(m.compute().cov, 4)
        0.1667

    """

    def __init__(
        self,
        *,
        scale: str = "probability",
        input_scale: str | None = None,
        eps: float = 1e-6,
        nan_policy: str = "raise",
    ) -> None:
        self.scale = check_in_choices(scale, COV_SCALES, "scale")
        self.input_scale = input_scale
        if input_scale is not None:
            check_in_choices(input_scale, COV_SCALES, "input_scale")
        self.eps = float(eps)
        self.nan_policy = _check_nan_policy(nan_policy)
        self.reset()

    def reset(self) -> None:
        """Forget every update."""
        self._preds: list[np.ndarray] = []
        self._specimens: list[Any] = []
        self._groups: list[Any] = []

    def update(
        self, predictions: object, specimen_ids: Sequence[Any], groups: Any | Sequence[Any]
    ) -> None:
        """Add predictions ``(B,)`` with their specimen ids and group(s).

        Args:
            predictions: ``(B,)`` predictions (probabilities or logits).
            specimen_ids: ``(B,)`` specimen ids.
            groups: The batch's group (scanner or magnification) or one per row.

        """
        preds = _as_array(predictions, "predictions").astype(np.float64).reshape(-1)
        ids = _native_list(specimen_ids)
        if len(ids) != preds.size:
            msg = f"{preds.size} predictions but {len(ids)} specimen ids."
            raise ValueError(msg)
        if isinstance(groups, (str, int, float, np.integer, np.floating)):
            group_list = [groups] * len(ids)
        else:
            group_list = _native_list(groups)
            if len(group_list) != len(ids):
                msg = f"groups has {len(group_list)} entries for {len(ids)} predictions."
                raise ValueError(msg)
        self._preds.append(preds)
        self._specimens.extend(ids)
        self._groups.extend(group_list)

    def compute(self) -> CoVResult:
        """The CoV over every prediction seen so far."""
        if not self._specimens:
            msg = "compute() called before any update."
            raise ValueError(msg)
        return coefficient_of_variation(
            np.concatenate(self._preds),
            np.asarray(self._specimens),
            np.asarray(self._groups),
            scale=self.scale,
            input_scale=self.input_scale,
            eps=self.eps,
            nan_policy=self.nan_policy,
        )


class ScannerConsistency:
    """The consistency metrics of one task behind a single ``update``.

    - ``"segmentation"``: ``dice`` on label maps.
    - ``"classification"``: ``agreement`` (argmax / threshold 0.5 of the
      probabilities) and ``abs_prob`` (``|delta p|``, lower is better).
    - ``"embedding"``: ``cosine`` and top-k retrieval (``top1``, ``top3``...).

    Args:
        task: ``"segmentation"``, ``"classification"`` or ``"embedding"``.
        scanners: Expected scanners in canonical order (frees buffers early).
        nan_policy: ``"raise"`` or ``"omit"``.
        **kwargs: Dice options (``num_classes``, ``classes``,
            ``ignore_background``, ``ignore_index``, ``empty_pairs``) or retrieval options
            (``ks``, ``direction``, ``gallery``, ``chunk_size``).

    Examples:
        >>> import numpy as np
        >>> m = ScannerConsistency("classification", scanners=["A", "B"])
        >>> m.update(["x", "y"], "A", np.array([0.9, 0.2]))
        >>> m.update(["x", "y"], "B", np.array([0.7, 0.6]))
        >>> out = m.compute()
        >>> out["agreement"].average, round(out["abs_prob"].average, 3)
        (0.5, 0.3)

    """

    def __init__(
        self,
        task: str,
        *,
        scanners: Sequence[str] | None = None,
        nan_policy: str = "raise",
        **kwargs: Any,
    ) -> None:
        self.task = check_in_choices(task, TASK_METRICS, "task")
        dice_keys = {"num_classes", "classes", "ignore_background", "ignore_index", "empty_pairs"}
        topk_keys = {"ks", "direction", "gallery", "chunk_size"}
        allowed = {"segmentation": dice_keys, "classification": set(), "embedding": topk_keys}
        unknown = set(kwargs) - allowed[task]
        if unknown:
            msg = f"unexpected option(s) {sorted(unknown)} for task {task!r}."
            raise TypeError(msg)
        common = {"scanners": scanners, "nan_policy": nan_policy}
        self.metrics: dict[str, PairedConsistency | PairedRetrieval]
        if task == "segmentation":
            self.metrics = {"dice": PairedConsistency("dice", **common, **kwargs)}
        elif task == "classification":
            self.metrics = {
                "agreement": PairedConsistency("agreement", **common),
                "abs_prob": PairedConsistency("abs_prob", **common),
            }
        else:
            self.metrics = {
                "cosine": PairedConsistency("cosine", **common),
                "topk": PairedRetrieval(**common, **kwargs),
            }

    def update(
        self, specimen_ids: Sequence[Any], scanner: str | Sequence[str], outputs: object
    ) -> None:
        """Feed the same batch to every metric of the task."""
        for metric in self.metrics.values():
            metric.update(specimen_ids, scanner, outputs)

    def compute(self) -> dict[str, PairConsistencyResult]:
        """``{metric name: PairConsistencyResult}`` (retrieval as ``top1``, ``top3``...)."""
        out: dict[str, PairConsistencyResult] = {}
        for name, metric in self.metrics.items():
            result = metric.compute()
            if isinstance(result, dict):
                out.update(result)
            else:
                out[name] = result
        return out

    def reset(self) -> None:
        """Reset every metric."""
        for metric in self.metrics.values():
            metric.reset()


# ``CoVMetric``: deprecated alias of :class:`CoVAccumulator` (warns on access).
__getattr__ = deprecated_aliases(__name__, {"CoVMetric": CoVAccumulator})
