"""The scanner-paired data model: one specimen seen by several scanners.

A *specimen* is a piece of tissue (a region of a slide, or a whole slide).
Each :class:`PairedSample` is that specimen as one scanner saw it, optionally
at one of several magnifications, with an optional label, mask and split. A
:class:`PairedCollection` holds the samples, checks that
``(specimen_id, scanner, magnification)`` is unique, applies the
incomplete-pair policy and orders everything canonically, so that index ``i``
of :meth:`PairedCollection.by_scanner` is the same specimen for every scanner.

This module holds no pixels: :mod:`~tia_scanner_robust.data.readers` reads
them and :mod:`~tia_scanner_robust.data.datasets` wraps a collection as torch
datasets. It imports neither torch nor TIAToolbox.

Examples:
    >>> from tia_scanner_robust.data.collection import PairedCollection, PairedSample
    >>> samples = [
    ...     PairedSample("slide_1/sample_1", scanner, path=None) for scanner in ("AT2", "GT450")
    ... ]
    >>> collection = PairedCollection(samples)
    >>> collection.scanners, collection.specimens, len(collection)
    (['AT2', 'GT450'], ['slide_1/sample_1'], 2)

"""

from __future__ import annotations

import csv
import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np

from tia_scanner_robust._io import atomic_open
from tia_scanner_robust._validation import check_in_choices

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

__all__ = [
    "INCOMPLETE_POLICIES",
    "MANIFEST_COLUMNS",
    "PairedCollection",
    "PairedSample",
    "natural_key",
]

#: Policies for a specimen that lacks a scanner other specimens have.
INCOMPLETE_POLICIES = ("error", "drop")

#: Every column a manifest may hold, in the order :meth:`PairedCollection.to_manifest`
#: writes them. The first three are required.
MANIFEST_COLUMNS = (
    "specimen_id",
    "scanner",
    "path",
    "magnification",
    "mpp",
    "label",
    "mask_path",
    "split",
    "x",
    "y",
    "width",
    "height",
    "kind",
)

_SCANNER_FORBIDDEN = re.compile(r"[/\\:*?\"<>|\x00-\x1f]")


def natural_key(text: str) -> tuple:
    """Sort key that orders embedded numbers numerically (``slide_2 < slide_10``).

    Examples:
        >>> sorted(["slide_10", "slide_2", "Slide_1"], key=natural_key)
        ['Slide_1', 'slide_2', 'slide_10']

    """
    parts = re.split(r"(\d+)", text)
    return tuple((0, int(p), p) if p.isdigit() else (1, p.lower(), p) for p in parts if p)


def _check_specimen_id(specimen_id: object) -> str:
    """A specimen id is a relative POSIX-style id such as ``slide_1/sample_3``."""
    if not isinstance(specimen_id, str) or not specimen_id.strip():
        msg = f"specimen_id must be a non-empty string, got {specimen_id!r}."
        raise ValueError(msg)
    if specimen_id != specimen_id.strip():
        msg = f"specimen_id {specimen_id!r} has leading or trailing whitespace."
        raise ValueError(msg)
    parts = PurePosixPath(specimen_id).parts
    if (
        "\\" in specimen_id
        or specimen_id.startswith("/")
        or any(p in {".", ".."} for p in specimen_id.split("/"))
        or "" in specimen_id.split("/")
        or not parts
    ):
        msg = (
            f"specimen_id {specimen_id!r} must be a relative id made of '/'-separated "
            "names (no '.', '..', empty parts, backslashes or leading '/'), "
            "e.g. 'slide_1/sample_3'."
        )
        raise ValueError(msg)
    return specimen_id


def _check_scanner(scanner: object) -> str:
    """A scanner name becomes a file name: no path separators, not '.'/'..'."""
    if not isinstance(scanner, str) or not scanner.strip():
        msg = f"scanner must be a non-empty string, got {scanner!r}."
        raise ValueError(msg)
    if scanner != scanner.strip() or scanner in {".", ".."} or _SCANNER_FORBIDDEN.search(scanner):
        msg = (
            f"scanner {scanner!r} is not a valid scanner name: it becomes a file name, so it "
            'may not contain path separators, control characters or any of :*?"<>|, '
            "nor be '.' or '..'."
        )
        raise ValueError(msg)
    return scanner


def _check_optional_name(value: object, name: str) -> None:
    if value is not None and (not isinstance(value, str) or not value.strip()):
        msg = f"{name} must be a non-empty string or None, got {value!r}."
        raise ValueError(msg)


def _check_region(region: object, *, is_wsi: bool) -> tuple[int, int, int, int]:
    values = tuple(region) if isinstance(region, (tuple, list, np.ndarray)) else ()
    if len(values) != 4 or any(
        isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in values
    ):
        msg = f"region must be four integers (x, y, width, height), got {region!r}."
        raise ValueError(msg)
    x, y, w, h = (int(v) for v in values)
    if w <= 0 or h <= 0:
        msg = f"region width and height must be positive, got {(x, y, w, h)!r}."
        raise ValueError(msg)
    if not is_wsi and (x < 0 or y < 0):
        msg = f"region x and y must be non-negative for a patch image, got {(x, y, w, h)!r}."
        raise ValueError(msg)
    return (x, y, w, h)


@dataclass(frozen=True)
class PairedSample:
    """One specimen as one scanner saw it.

    Attributes:
        specimen_id: Identifier of the tissue, shared by every scanner's
            sample of it, e.g. ``"slide_1/sample_3"``.
        scanner: Scanner name, e.g. ``"AT2"``.
        path: Image file (a patch such as PNG/JPEG, or a whole-slide image).
        magnification: Optional magnification tag (e.g. ``"20x"``); samples
            of the same specimen and magnification are paired.
        mpp: Microns per pixel: for a whole-slide image the resolution the
            region is read at; for a patch, informational.
        label: Optional numeric label (class index or regression target).
        mask_path: Optional mask / label-map image with the sample's size.
        split: Optional split name (``"train"``, ``"val"``, ``"test"``...).
        region: Optional ``(x, y, width, height)``. For a whole-slide image:
            ``x, y`` is the top-left corner in baseline (level 0) pixels and
            ``width, height`` the output size in pixels at ``mpp``
            (TIAToolbox's ``read_rect`` convention). For a patch: a crop in
            the image's pixels.
        is_wsi: ``True`` to read ``path`` with TIAToolbox's ``WSIReader``.

    Examples:
        >>> s = PairedSample("slide_1/sample_1", "AT2", path=None, mpp=0.5)
        >>> s.key
        ('slide_1/sample_1', 'AT2', None)
        >>> PairedSample("../x", "AT2", path=None)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: specimen_id '../x' must be a relative id made of '/'-separated names ...

    """

    specimen_id: str
    scanner: str
    path: Path | None = None
    magnification: str | None = None
    mpp: float | None = None
    label: int | float | None = None
    mask_path: Path | None = None
    split: str | None = None
    region: tuple[int, int, int, int] | None = None
    is_wsi: bool = False

    def __post_init__(self) -> None:
        """Validate the fields and normalise paths and numbers."""
        _check_specimen_id(self.specimen_id)
        _check_scanner(self.scanner)
        if self.path is not None:
            object.__setattr__(self, "path", Path(self.path))
        if self.mask_path is not None:
            object.__setattr__(self, "mask_path", Path(self.mask_path))
        _check_optional_name(self.magnification, "magnification")
        _check_optional_name(self.split, "split")
        if self.mpp is not None:
            mpp = float(self.mpp)
            if not math.isfinite(mpp) or mpp <= 0:
                msg = f"mpp must be a positive number, got {self.mpp!r}."
                raise ValueError(msg)
            object.__setattr__(self, "mpp", mpp)
        if self.label is not None and (
            isinstance(self.label, bool) or not isinstance(self.label, (int, float, np.number))
        ):
            msg = f"label must be an int, a float or None, got {self.label!r}."
            raise TypeError(msg)
        if not isinstance(self.is_wsi, bool):
            msg = f"is_wsi must be a bool, got {self.is_wsi!r}."
            raise TypeError(msg)
        if self.region is not None:
            object.__setattr__(self, "region", _check_region(self.region, is_wsi=self.is_wsi))

    @property
    def key(self) -> tuple[str, str, str | None]:
        """The unique key ``(specimen_id, scanner, magnification)``."""
        return (self.specimen_id, self.scanner, self.magnification)

    @property
    def group(self) -> tuple[str, str | None]:
        """The pairing unit ``(specimen_id, magnification)``."""
        return (self.specimen_id, self.magnification)


def _group_sort_key(group: tuple[str, str | None]) -> tuple:
    specimen, magnification = group
    return (natural_key(specimen), natural_key(magnification or ""))


class PairedCollection:
    """A validated, canonically ordered set of scanner-paired samples.

    The pairing unit is a *group* ``(specimen_id, magnification)``: samples
    of the same group are the same tissue seen by different scanners. A
    collection is always *complete*: every group has every scanner (groups
    that lack one raise an error or are dropped, as ``incomplete`` says), so
    the samples form a full groups x scanners table.

    Args:
        samples: The samples. ``(specimen_id, scanner, magnification)`` must be
            unique.
        scanners: Canonical scanner order (the first is the reference scanner).
            Defaults to the order of first appearance. When given it must list
            every scanner present (extra names are not allowed).
        incomplete: What to do with groups that lack a scanner: ``"error"``
            (default; the message names the specimens and missing scanners) or
            ``"drop"`` (drop them with a warning giving the count).
        source: Where the samples came from (a file or folder), used in error
            messages.

    Raises:
        ValueError: On an empty collection, duplicate keys, incomplete groups
            under ``incomplete="error"``, a specimen with several splits, or a
            ``scanners`` list that does not match the samples.

    Examples:
        >>> from tia_scanner_robust.data.collection import PairedCollection, PairedSample
        >>> samples = [
        ...     PairedSample(f"slide_1/sample_{j}", s, path=None)
        ...     for j in (2, 10, 1)
        ...     for s in ("GT450", "AT2")
        ... ]
        >>> c = PairedCollection(samples, scanners=["AT2", "GT450"])
        >>> [s.specimen_id for s in c.by_scanner("GT450")]
        ['slide_1/sample_1', 'slide_1/sample_2', 'slide_1/sample_10']
        >>> samples.append(PairedSample("slide_2/sample_1", "AT2", path=None))
        >>> PairedCollection(samples)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: 1 specimen(s) lack scanners that others have: slide_2/sample_1 ...

    """

    def __init__(
        self,
        samples: Iterable[PairedSample],
        *,
        scanners: Sequence[str] | None = None,
        incomplete: str = "error",
        source: str | Path | None = None,
    ) -> None:
        check_in_choices(incomplete, INCOMPLETE_POLICIES, "incomplete")
        self.source = None if source is None else str(source)
        prefix = f"{self.source}: " if self.source else ""
        samples = list(samples)
        for sample in samples:
            if not isinstance(sample, PairedSample):
                msg = f"{prefix}samples must be PairedSample objects, got {type(sample).__name__}."
                raise TypeError(msg)
        if not samples:
            msg = f"{prefix}no samples: a paired collection needs at least one sample."
            raise ValueError(msg)

        seen: dict[tuple, PairedSample] = {}
        for sample in samples:
            if sample.key in seen:
                msg = (
                    f"{prefix}duplicate sample for specimen {sample.specimen_id!r}, scanner "
                    f"{sample.scanner!r}, magnification {sample.magnification!r}: "
                    f"{seen[sample.key].path} and {sample.path}."
                )
                raise ValueError(msg)
            seen[sample.key] = sample

        present = list(dict.fromkeys(s.scanner for s in samples))
        if scanners is None:
            order = present
        else:
            order = [_check_scanner(s) for s in scanners]
            if len(set(order)) != len(order):
                msg = f"{prefix}scanners lists a scanner twice: {order}."
                raise ValueError(msg)
            unknown = [s for s in present if s not in order]
            extra = [s for s in order if s not in present]
            if unknown or extra:
                msg = (
                    f"{prefix}scanners {order} does not match the samples' scanners {present}"
                    + (f" (not listed: {unknown})" if unknown else "")
                    + (f" (no samples: {extra})" if extra else "")
                    + "."
                )
                raise ValueError(msg)

        splits: dict[str, str | None] = {}
        for sample in samples:
            previous = splits.setdefault(sample.specimen_id, sample.split)
            if previous != sample.split:
                msg = (
                    f"{prefix}specimen {sample.specimen_id!r} is assigned to several splits "
                    f"({previous!r} and {sample.split!r}): every scanner's sample of a "
                    "specimen must be in the same split (otherwise the same tissue leaks "
                    "between splits)."
                )
                raise ValueError(msg)

        samples = _apply_incomplete_policy(samples, order, incomplete, prefix)
        present = {s.scanner for s in samples}
        self._scanners = [s for s in order if s in present]
        rank = {s: i for i, s in enumerate(self._scanners)}
        self._samples = tuple(
            sorted(samples, key=lambda s: (*_group_sort_key(s.group), rank[s.scanner]))
        )
        self._index = {s.key: s for s in self._samples}

    # ------------------------------------------------------------------ views
    @property
    def samples(self) -> tuple[PairedSample, ...]:
        """All samples, ordered by specimen, magnification, then scanner."""
        return self._samples

    @property
    def scanners(self) -> list[str]:
        """Scanner names in canonical order (the first is the reference)."""
        return list(self._scanners)

    @property
    def reference_scanner(self) -> str:
        """The first scanner of :attr:`scanners`."""
        return self._scanners[0]

    @property
    def specimens(self) -> list[str]:
        """Specimen ids in natural order (``slide_2`` before ``slide_10``)."""
        return sorted({s.specimen_id for s in self._samples}, key=natural_key)

    @property
    def magnifications(self) -> list[str | None]:
        """Distinct magnification tags (``[None]`` when none is given)."""
        return sorted({s.magnification for s in self._samples}, key=lambda m: natural_key(m or ""))

    @property
    def groups(self) -> list[tuple[str, str | None]]:
        """Pairing units ``(specimen_id, magnification)`` in canonical order."""
        return sorted({s.group for s in self._samples}, key=_group_sort_key)

    @property
    def splits(self) -> list[str | None]:
        """Distinct split names (``None`` for samples without a split)."""
        return sorted({s.split for s in self._samples}, key=lambda m: natural_key(m or ""))

    def __len__(self) -> int:
        return len(self._samples)

    def __iter__(self) -> Iterator[PairedSample]:
        return iter(self._samples)

    def __getitem__(self, index: int) -> PairedSample:
        return self._samples[index]

    def __repr__(self) -> str:
        mags = self.magnifications
        mag = "" if mags == [None] else f", magnifications={mags}"
        return (
            f"PairedCollection({len(self.specimens)} specimens x {len(self._scanners)} "
            f"scanners {self._scanners}{mag}, {len(self)} samples)"
        )

    def get(self, specimen_id: str, scanner: str, magnification: str | None = None) -> PairedSample:
        """Return the sample with this key (``KeyError`` naming it if absent)."""
        key = (specimen_id, scanner, magnification)
        if key not in self._index:
            msg = (
                f"No sample for specimen {specimen_id!r}, scanner {scanner!r}, "
                f"magnification {magnification!r}."
            )
            raise KeyError(msg)
        return self._index[key]

    def by_scanner(self, scanner: str, magnification: str | None = None) -> list[PairedSample]:
        """Samples of one scanner, ordered by group.

        Index ``i`` of every scanner's list is the same
        ``(specimen, magnification)`` group (collections are complete).

        Args:
            scanner: A name from :attr:`scanners`.
            magnification: Keep only this magnification (default: all).

        Returns:
            The scanner's samples in canonical group order.

        Examples:
            >>> from tia_scanner_robust.data.collection import PairedCollection, PairedSample
            >>> c = PairedCollection([PairedSample("a/1", "X"), PairedSample("a/1", "Y")])
            >>> [s.scanner for s in c.by_scanner("Y")]
            ['Y']

        """
        check_in_choices(scanner, self._scanners, "scanner")
        return [
            s
            for s in self._samples
            if s.scanner == scanner and (magnification is None or s.magnification == magnification)
        ]

    def by_specimen(
        self, specimen_id: str, magnification: str | None = None
    ) -> dict[str, PairedSample]:
        """Map scanner -> sample for one group, in canonical scanner order."""
        found = {
            s.scanner: s
            for s in self._samples
            if s.specimen_id == specimen_id and s.magnification == magnification
        }
        if not found:
            msg = f"No samples for specimen {specimen_id!r} at magnification {magnification!r}."
            raise KeyError(msg)
        return found

    def filter(
        self,
        *,
        split: str | Sequence[str] | None = None,
        scanners: Sequence[str] | None = None,
        specimens: Iterable[str] | None = None,
        magnification: str | None = None,
    ) -> PairedCollection:
        """Return a sub-collection (the scanner order is kept).

        Args:
            split: Keep samples of this split (or of any of these splits).
            scanners: Keep these scanners (in the collection's order).
            specimens: Keep these specimen ids.
            magnification: Keep this magnification.

        Returns:
            A new :class:`PairedCollection`.

        Raises:
            ValueError: If a scanner is unknown or nothing is left.

        Examples:
            >>> from tia_scanner_robust.data.collection import PairedCollection, PairedSample
            >>> c = PairedCollection(
            ...     PairedSample(f"s/{i}", sc, split="train" if i else "test")
            ...     for i in range(3)
            ...     for sc in ("A", "B", "C")
            ... )
            >>> sub = c.filter(split="train", scanners=["C", "A"])
            >>> sub.scanners, sub.specimens
            (['A', 'C'], ['s/1', 's/2'])

        """
        kept = list(self._samples)
        if split is not None:
            wanted = {split} if isinstance(split, str) else set(split)
            kept = [s for s in kept if s.split in wanted]
        if scanners is not None:
            scanners = [scanners] if isinstance(scanners, str) else list(scanners)
            for name in scanners:
                check_in_choices(name, self._scanners, "scanner")
            kept = [s for s in kept if s.scanner in set(scanners)]
        if specimens is not None:
            wanted_specimens = {specimens} if isinstance(specimens, str) else set(specimens)
            kept = [s for s in kept if s.specimen_id in wanted_specimens]
        if magnification is not None:
            kept = [s for s in kept if s.magnification == magnification]
        if not kept:
            msg = (
                f"filter(split={split!r}, scanners={scanners!r}, magnification={magnification!r}) "
                "left no samples."
            )
            raise ValueError(msg)
        order = [s for s in self._scanners if any(k.scanner == s for k in kept)]
        return PairedCollection(kept, scanners=order, incomplete="error", source=self.source)

    def to_manifest(self, path: str | Path) -> Path:
        """Write the collection as a manifest CSV (atomically).

        Paths inside the manifest's folder are written relative to it (POSIX
        separators), others absolute, so the folder can be moved as a whole.
        Every column of :data:`MANIFEST_COLUMNS` is written; empty cells mean
        "not given". :func:`~tia_scanner_robust.data.manifest.read_manifest`
        reads it back to an equal collection.

        Args:
            path: Destination ``.csv`` file.

        Returns:
            The path written.

        Examples:
            >>> import tempfile, pathlib
            >>> from tia_scanner_robust.data.collection import PairedCollection, PairedSample
            >>> d = pathlib.Path(tempfile.mkdtemp())
            >>> c = PairedCollection([PairedSample("a/1", "X", path=d / "a/1/X.png")])
            >>> out = c.to_manifest(d / "manifest.csv")
            >>> out.read_text().splitlines()[1]
            'a/1,X,a/1/X.png,,,,,,,,,,patch'

        """
        path = Path(path)
        folder = path.parent.resolve()
        rows = [_sample_to_row(s, folder) for s in self._samples]
        with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(MANIFEST_COLUMNS), lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        return path


def _relative_or_absolute(path: Path | None, folder: Path) -> str:
    if path is None:
        return ""
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(folder).as_posix()
    except ValueError:
        return str(resolved)


def _format_number(value: float | None) -> str:
    if value is None:
        return ""
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return repr(float(value))


def _sample_to_row(sample: PairedSample, folder: Path) -> dict[str, str]:
    region = sample.region or ("", "", "", "")
    return {
        "specimen_id": sample.specimen_id,
        "scanner": sample.scanner,
        "path": _relative_or_absolute(sample.path, folder),
        "magnification": sample.magnification or "",
        "mpp": _format_number(sample.mpp),
        "label": _format_number(sample.label),
        "mask_path": _relative_or_absolute(sample.mask_path, folder),
        "split": sample.split or "",
        "x": str(region[0]),
        "y": str(region[1]),
        "width": str(region[2]),
        "height": str(region[3]),
        "kind": "wsi" if sample.is_wsi else "patch",
    }


def _missing(
    samples: Iterable[PairedSample], scanners: Sequence[str]
) -> dict[tuple[str, str | None], list[str]]:
    have: dict[tuple[str, str | None], set[str]] = {}
    for sample in samples:
        have.setdefault(sample.group, set()).add(sample.scanner)
    return {
        group: [s for s in scanners if s not in got]
        for group, got in sorted(have.items(), key=lambda kv: _group_sort_key(kv[0]))
        if len(got) < len(scanners)
    }


def _describe_group(group: tuple[str, str | None]) -> str:
    specimen, magnification = group
    return specimen if magnification is None else f"{specimen} @ {magnification}"


def _apply_incomplete_policy(
    samples: list[PairedSample], scanners: Sequence[str], policy: str, prefix: str
) -> list[PairedSample]:
    """Error on (or drop, with a warning) groups that lack some scanner."""
    missing = _missing(samples, scanners)
    if not missing:
        return samples
    if policy == "error":
        shown = list(missing.items())[:10]
        listing = "; ".join(f"{_describe_group(g)} (missing: {', '.join(m)})" for g, m in shown)
        more = f"; ... and {len(missing) - len(shown)} more" if len(missing) > len(shown) else ""
        msg = (
            f"{prefix}{len(missing)} specimen(s) lack scanners that others have: "
            f"{listing}{more}. Pass incomplete='drop' to drop incomplete specimens."
        )
        raise ValueError(msg)
    kept = [s for s in samples if s.group not in missing]
    dropped = len(samples) - len(kept)
    if not kept:
        msg = (
            f"{prefix}every specimen lacks at least one scanner "
            f"({len(missing)} incomplete specimen(s)); nothing is left after incomplete='drop'."
        )
        raise ValueError(msg)
    first_group, first_missing = next(iter(missing.items()))
    warnings.warn(
        f"{prefix}dropped {len(missing)} incomplete specimen(s) ({dropped} sample(s)) that "
        f"lack some of the scanners {list(scanners)}, e.g. "
        f"{_describe_group(first_group)} (missing: {', '.join(first_missing)}).",
        UserWarning,
        stacklevel=3,
    )
    return kept
