"""Batches for ScanGen and specimen-level splits.

:class:`ScanGenBatchSampler` draws batches of slide indices that always hold
attraction pairs (one specimen under two scanners) and repulsion pairs (two
specimens under one scanner); :func:`split_specimens` assigns every specimen
to one split (stratified by label), so that no tissue leaks between splits.

Examples:
    >>> sampler = ScanGenBatchSampler(["a", "a", "b", "b"], ["X", "Y", "X", "Y"], 4, seed=0)
    >>> sorted(next(iter(sampler)))
    [0, 1, 2, 3]

"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import TYPE_CHECKING

import numpy as np
from torch.utils.data import Sampler

from tia_scanner_robust.seeding import make_rng

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping, Sequence

__all__ = ["ScanGenBatchSampler", "split_specimens"]


def _check_batch_sizes(
    batch_size: int, specimens_per_batch: int | None, scanners_per_specimen: int
) -> int:
    """Validate the sampler's sizes; return ``specimens_per_batch``."""
    if scanners_per_specimen < 2:
        msg = (
            f"scanners_per_specimen must be >= 2 for attraction pairs, got {scanners_per_specimen}."
        )
        raise ValueError(msg)
    if specimens_per_batch is None:
        specimens_per_batch = batch_size // scanners_per_specimen
    if specimens_per_batch < 2:
        msg = f"specimens_per_batch must be >= 2 for repulsion pairs, got {specimens_per_batch}."
        raise ValueError(msg)
    if batch_size != specimens_per_batch * scanners_per_specimen:
        msg = (
            f"batch_size ({batch_size}) must equal specimens_per_batch ({specimens_per_batch}) "
            f"x scanners_per_specimen ({scanners_per_specimen})."
        )
        raise ValueError(msg)
    return specimens_per_batch


class ScanGenBatchSampler(Sampler[list[int]]):
    """Batches of slide indices that always contain ScanGen pairs.

    Each batch holds ``specimens_per_batch`` distinct specimens, each under
    ``scanners_per_specimen`` distinct scanners (one slide per specimen and
    scanner; if several, e.g. magnifications, one is drawn). Guarantee: every
    batch has attraction pairs (any specimen of the batch, under two
    scanners) **and** repulsion pairs: an *anchor* scanner is drawn among the
    scanners shared by at least two eligible specimens, and two of the
    batch's specimens are drawn among those scanned by it and include it.

    Args:
        specimen_ids: Specimen id of every dataset item.
        scanner_ids: Scanner of every dataset item.
        batch_size: Slides per batch; must equal
            ``specimens_per_batch * scanners_per_specimen``.
        specimens_per_batch: Specimens per batch (default
            ``batch_size // scanners_per_specimen``); at least 2.
        scanners_per_specimen: Scanners per specimen; at least 2.
        num_batches: Batches per epoch (default: enough for every eligible
            specimen once on average, at least 1).
        seed: Seed, or a NumPy generator (then epochs continue its stream).

    Raises:
        ValueError: If the pool cannot satisfy the guarantee (the message
            says why) or the sizes are inconsistent.

    Examples:
        >>> specimens = ["a", "a", "b", "b", "c", "c"]
        >>> scanners = ["X", "Y", "X", "Y", "X", "Y"]
        >>> sampler = ScanGenBatchSampler(specimens, scanners, batch_size=4, seed=0)
        >>> batch = next(iter(sampler))
        >>> len(batch), len({specimens[i] for i in batch})
        (4, 2)

    """

    def __init__(
        self,
        specimen_ids: Sequence[object],
        scanner_ids: Sequence[object],
        batch_size: int,
        specimens_per_batch: int | None = None,
        scanners_per_specimen: int = 2,
        *,
        num_batches: int | None = None,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        specimens = [str(s) for s in specimen_ids]
        scanners = [str(s) for s in scanner_ids]
        if len(specimens) != len(scanners):
            msg = (
                f"specimen_ids ({len(specimens)}) and scanner_ids ({len(scanners)}) "
                "differ in length."
            )
            raise ValueError(msg)
        specimens_per_batch = _check_batch_sizes(
            batch_size, specimens_per_batch, scanners_per_specimen
        )
        self.batch_size = batch_size
        self.specimens_per_batch = specimens_per_batch
        self.scanners_per_specimen = scanners_per_specimen

        slides: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        for index, (specimen, scanner) in enumerate(zip(specimens, scanners, strict=True)):
            slides[specimen][scanner].append(index)
        self._slides = {
            p: {s: list(v) for s, v in by_scanner.items()} for p, by_scanner in slides.items()
        }
        self.eligible = sorted(
            p for p, by_scanner in self._slides.items() if len(by_scanner) >= scanners_per_specimen
        )
        if len(self.eligible) < specimens_per_batch:
            msg = (
                f"The pool cannot fill a ScanGen batch: {len(self.eligible)} specimen(s) are "
                f"scanned by >= {scanners_per_specimen} scanners, {specimens_per_batch} are "
                "needed per batch."
            )
            raise ValueError(msg)
        by_scanner: dict[str, list[str]] = defaultdict(list)
        for specimen in self.eligible:
            for scanner in self._slides[specimen]:
                by_scanner[scanner].append(specimen)
        self._anchors = {s: sorted(ps) for s, ps in sorted(by_scanner.items()) if len(ps) >= 2}
        if not self._anchors:
            msg = (
                "The pool cannot give repulsion pairs: no scanner has scanned two or more "
                f"specimens that are each scanned by >= {scanners_per_specimen} scanners."
            )
            raise ValueError(msg)
        if num_batches is None:
            num_batches = max(1, len(self.eligible) // specimens_per_batch)
        if num_batches < 1:
            msg = f"num_batches must be positive, got {num_batches}."
            raise ValueError(msg)
        self.num_batches = num_batches
        if isinstance(seed, np.random.Generator):
            self._generator: np.random.Generator | None = seed
            self.seed = None
        else:
            self._generator = None
            self.seed = int(make_rng(seed).integers(2**31)) if seed is None else int(seed)
        self.epoch = 0

    def __len__(self) -> int:
        return self.num_batches

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration the given epoch's (reproducible per seed and epoch)."""
        self.epoch = int(epoch)

    def sample_batch(self, rng: np.random.Generator) -> list[int]:
        """Draw one batch of dataset indices (see the class docstring)."""
        k = self.scanners_per_specimen
        anchor = list(self._anchors)[rng.integers(len(self._anchors))]
        pair = list(rng.choice(self._anchors[anchor], 2, replace=False))
        others = [p for p in self.eligible if p not in pair]
        chosen = pair + list(rng.choice(others, self.specimens_per_batch - 2, replace=False))
        batch: list[int] = []
        for position, specimen in enumerate(chosen):
            available = sorted(self._slides[specimen])
            if position < 2:  # the anchor pair: include the shared scanner
                rest = [s for s in available if s != anchor]
                picked = [anchor, *rng.choice(rest, k - 1, replace=False)]
            else:
                picked = list(rng.choice(available, k, replace=False))
            for scanner in picked:
                candidates = self._slides[specimen][scanner]
                batch.append(candidates[rng.integers(len(candidates))])
        return [int(i) for i in rng.permutation(batch)]

    def __iter__(self) -> Iterator[list[int]]:
        rng = (
            self._generator
            if self._generator is not None
            else np.random.default_rng([self.seed, self.epoch])
        )
        self.epoch += 1
        for _ in range(self.num_batches):
            yield self.sample_batch(rng)


def split_specimens(
    specimen_ids: Iterable[object],
    fractions: Mapping[str, float] | Sequence[float] = (0.6, 0.2, 0.2),
    seed: int = 0,
    *,
    labels: Sequence[object] | None = None,
) -> dict[str, str]:
    """Assign every specimen to exactly one split (no specimen in two splits).

    Specimens are sorted, shuffled with ``seed`` and cut by the fractions
    (largest-remainder rounding), separately per label when ``labels`` is
    given (stratified: class balance preserved, as in the ScanGen paper).
    The result does not depend on the order of the input.

    Args:
        specimen_ids: Specimen id per slide (repeats allowed).
        fractions: ``{name: fraction}``, or a sequence of fractions named
            ``train``/``val``/``test`` (2 or 3 values) or ``split0``, ``split1``...;
            must sum to 1.
        seed: Random seed.
        labels: Optional label per slide, aligned with ``specimen_ids``; a
            specimen's slides must agree.

    Returns:
        ``{specimen_id: split_name}`` (ids as strings).

    Raises:
        ValueError: On bad fractions, mismatched lengths or conflicting labels.

    Examples:
        >>> splits = split_specimens(["a", "a", "b", "c", "d"], {"train": 0.5, "test": 0.5}, seed=0)
        >>> sorted(splits.values()).count("train"), len(splits)
        (2, 4)

    """
    ids = [str(s) for s in specimen_ids]
    if isinstance(fractions, dict) or hasattr(fractions, "items"):
        names = [str(k) for k in fractions]
        values = [float(v) for v in fractions.values()]  # type: ignore[union-attr]
    else:
        values = [float(v) for v in fractions]
        defaults = {2: ["train", "test"], 3: ["train", "val", "test"]}
        names = defaults.get(len(values), [f"split{i}" for i in range(len(values))])
    if not values or any(v < 0 for v in values) or not math.isclose(sum(values), 1.0, abs_tol=1e-6):
        given = dict(zip(names, values, strict=True))
        msg = f"fractions must be non-negative and sum to 1, got {given}."
        raise ValueError(msg)
    strata: dict[object, set[str]] = defaultdict(set)
    if labels is None:
        strata[None] = set(ids)
    else:
        if len(labels) != len(ids):
            msg = f"labels ({len(labels)}) and specimen_ids ({len(ids)}) differ in length."
            raise ValueError(msg)
        label_of: dict[str, object] = {}
        for specimen, label in zip(ids, labels, strict=True):
            if label_of.setdefault(specimen, label) != label:
                msg = (
                    f"specimen {specimen!r} has conflicting labels "
                    f"{label_of[specimen]!r} and {label!r}."
                )
                raise ValueError(msg)
        for specimen, label in label_of.items():
            strata[label].add(specimen)
    rng = make_rng(seed)
    assignment: dict[str, str] = {}
    for stratum in sorted(strata, key=str):
        members = sorted(strata[stratum])
        order = rng.permutation(len(members))
        exact = np.asarray(values) * len(members)
        counts = np.floor(exact).astype(int)
        remainder = len(members) - counts.sum()
        counts[np.argsort(-(exact - counts), kind="stable")[:remainder]] += 1
        bounds = np.concatenate([[0], np.cumsum(counts)])
        for name, start, stop in zip(names, bounds[:-1], bounds[1:], strict=True):
            for position in order[start:stop]:
                assignment[members[position]] = name
    return assignment
