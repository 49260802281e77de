r"""Reader for CSV manifests of scanner-paired samples (patches or whole slides).

A manifest is a CSV file with one row per (specimen, scanner[, magnification])
sample. Columns (header names are case-insensitive; order is free):

=================  ========  ====================================================
column             required  meaning
=================  ========  ====================================================
``specimen_id``    yes       tissue id shared by every scanner, e.g. ``slide_1/sample_3``
``scanner``        yes       scanner name (becomes a file name: no ``/``)
``path``           yes       patch image or whole-slide image; relative paths are
                             resolved against the manifest's folder
``magnification``  no        tag such as ``20x``; pairs are formed per magnification
``mpp``            no        microns per pixel to read a WSI at (patches: informational)
``label``          no        numeric label (class index or value)
``mask_path``      no        mask / label map with the sample's size
``split``          no        ``train`` / ``val`` / ``test``...; one per specimen
``x, y``           no        WSI: top-left corner in baseline pixels; patch: crop origin
``width, height``  no        WSI: output size in pixels at ``mpp``; patch: crop size
``kind``           no        ``patch`` or ``wsi``; empty means decided from the file
=================  ========  ====================================================

``x, y, width, height`` are given all four or none. When ``kind`` is empty the
file decides: ``.svs .ndpi .mrxs .scn .bif .vms .vmu .svslide .qptiff .jp2
.dcm .zarr`` are whole slides; ``.tif``/``.tiff`` files are whole slides when
they are *tiled* TIFFs (pyramidal WSIs are) and patches otherwise; everything
else (``.png``, ``.jpg``...) is a patch. Set ``kind`` to override.

Every file is checked up front (missing ones are listed together); relative
paths may not leave the manifest's folder unless ``allow_outside=True``
(absolute paths are always accepted), so a dataset folder stays
self-contained. Pixels are decoded when a sample is loaded, or up front with
``verify=True``.

Examples:
    >>> import tempfile, pathlib, numpy as np
    >>> from tia_scanner_robust._io import atomic_write_image
    >>> from tia_scanner_robust.data.manifest import read_manifest
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> for s in ("A", "B"):
    ...     _ = atomic_write_image(d / f"{s}.png", np.zeros((4, 4, 3), np.uint8))
    >>> _ = (d / "m.csv").write_text(
    ...     "specimen_id,scanner,path,label\ns/1,A,A.png,1\ns/1,B,B.png,1\n"
    ... )
    >>> c = read_manifest(d / "m.csv")
    >>> c.scanners, c[0].label, c[0].is_wsi
    (['A', 'B'], 1, False)

"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

import tifffile

from tia_scanner_robust._validation import check_in_choices, read_utf8_text
from tia_scanner_robust.data.collection import (
    INCOMPLETE_POLICIES,
    MANIFEST_COLUMNS,
    PairedCollection,
    PairedSample,
)
from tia_scanner_robust.data.readers import verify_images

__all__ = [
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "WSI_EXTENSIONS",
    "detect_kind",
    "read_manifest",
    "read_manifest_samples",
]

#: Columns every manifest must have.
REQUIRED_COLUMNS = ("specimen_id", "scanner", "path")
#: Columns a manifest may have.
OPTIONAL_COLUMNS = tuple(c for c in MANIFEST_COLUMNS if c not in REQUIRED_COLUMNS)
#: Extensions always read as whole-slide images (``.tif``/``.tiff`` are
#: whole slides only when tiled; see :func:`detect_kind`).
WSI_EXTENSIONS = (
    ".svs",
    ".ndpi",
    ".mrxs",
    ".scn",
    ".bif",
    ".vms",
    ".vmu",
    ".svslide",
    ".qptiff",
    ".jp2",
    ".dcm",
    ".zarr",
)
_REGION_COLUMNS = ("x", "y", "width", "height")
_INT_PATTERN = re.compile(r"^[+-]?\d+$")
_MAX_LISTED = 5


def detect_kind(path: str | Path) -> str:
    """Decide whether a file is read as a ``"patch"`` or a ``"wsi"``.

    Whole-slide extensions (:data:`WSI_EXTENSIONS`) give ``"wsi"``; a
    ``.tif``/``.tiff`` gives ``"wsi"`` when its first page is tiled (pyramidal
    WSIs are; plain TIFF patches are stored in strips); anything else is a
    ``"patch"``.

    Args:
        path: The image file.

    Returns:
        ``"patch"`` or ``"wsi"``.

    Examples:
        >>> detect_kind("slide.svs"), detect_kind("tile.png")
        ('wsi', 'patch')

    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in WSI_EXTENSIONS:
        return "wsi"
    if suffix in {".tif", ".tiff"} and path.is_file():
        try:
            with tifffile.TiffFile(path) as tif:
                return "wsi" if tif.pages[0].is_tiled else "patch"
        except (tifffile.TiffFileError, OSError, IndexError):
            return "patch"  # not a readable TIFF: decoding will name the file
    return "patch"


def _parse_number(value: str) -> int | float:
    """An ``int`` for an integer literal, else the ``float`` (NaN when not a number)."""
    if _INT_PATTERN.match(value):
        return int(value)
    try:
        return float(value)
    except ValueError:
        return math.nan


class _Row:
    """Parses the cells of one manifest line, with errors naming line and column."""

    def __init__(self, cells: dict[str, str], line: int, source: Path) -> None:
        self.cells = cells
        self.line = line
        self.source = source

    def fail(self, column: str | None, message: str) -> NoReturn:
        """Raise a ``ValueError`` naming the file, line and column."""
        where = f"line {self.line}" + (f", column {column!r}" if column else "")
        msg = f"{self.source}: {where}: {message}"
        raise ValueError(msg)

    def text(self, column: str, *, required: bool = False) -> str | None:
        value = self.cells.get(column, "").strip()
        if not value:
            if required:
                msg = "empty value in a required column."
                self.fail(column, msg)
            return None
        return value

    def positive_float(self, column: str) -> float | None:
        value = self.text(column)
        if value is None:
            return None
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number) or number <= 0:
            self.fail(column, f"expected a positive number, got {value!r}.")
        return number

    def integer(self, column: str) -> int | None:
        value = self.text(column)
        if value is None:
            return None
        number = _parse_number(value)
        if isinstance(number, int):
            return number
        if not math.isfinite(number) or number != int(number):
            self.fail(column, f"expected an integer, got {value!r}.")
        return int(number)

    def label(self) -> int | float | None:
        value = self.text("label")
        if value is None:
            return None
        number = _parse_number(value)
        if isinstance(number, int):
            return number
        if not math.isfinite(number):
            self.fail("label", f"expected a numeric label (class index or value), got {value!r}.")
        return number

    def region(self) -> tuple[int, int, int, int] | None:
        values = [self.integer(c) for c in _REGION_COLUMNS]
        if all(v is None for v in values):
            return None
        if any(v is None for v in values):
            given = [c for c, v in zip(_REGION_COLUMNS, values, strict=True) if v is not None]
            self.fail(None, f"give all of x, y, width, height or none of them (got only {given}).")
        return (values[0], values[1], values[2], values[3])

    def kind(self) -> str | None:
        value = self.text("kind")
        if value is None:
            return None
        if value.lower() not in {"patch", "wsi"}:
            self.fail("kind", f"expected 'patch', 'wsi' or empty, got {value!r}.")
        return value.lower()

    def path(self, column: str, folder: Path, *, allow_outside: bool) -> Path | None:
        value = self.text(column, required=column == "path")
        if value is None:
            return None
        path = Path(value)
        if path.is_absolute():
            return path
        resolved = (folder / path).resolve()
        if not allow_outside and resolved != folder and folder not in resolved.parents:
            self.fail(
                column,
                f"relative path {value!r} escapes the manifest's folder {folder}; use an "
                "absolute path or pass allow_outside=True.",
            )
        return folder / path


def _read_header(reader: Any, source: Path) -> list[str]:
    header = next(reader, None)
    while header is not None and not any(cell.strip() for cell in header):
        header = next(reader, None)
    if header is None:
        msg = f"{source}: empty manifest (no header and no rows)."
        raise ValueError(msg)
    columns = [cell.strip().lower() for cell in header]
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated:
        msg = f"{source}: line {reader.line_num}: column(s) {duplicated} appear more than once."
        raise ValueError(msg)
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        msg = (
            f"{source}: missing required column(s) {missing}; the header has {columns}. "
            f"Required: {list(REQUIRED_COLUMNS)}."
        )
        raise ValueError(msg)
    unknown = [c for c in columns if c not in MANIFEST_COLUMNS]
    if unknown:
        msg = (
            f"{source}: unknown column(s) {unknown}; known columns: {', '.join(MANIFEST_COLUMNS)}."
        )
        raise ValueError(msg)
    return columns


def _sample_from_row(
    row: _Row, folder: Path, *, allow_outside: bool
) -> tuple[PairedSample, str | None]:
    """Build the row's sample; also return the explicit ``kind`` (None: decide later)."""
    specimen_id = row.text("specimen_id", required=True)
    scanner = row.text("scanner", required=True)
    path = row.path("path", folder, allow_outside=allow_outside)
    mask_path = row.path("mask_path", folder, allow_outside=allow_outside)
    kind = row.kind()
    try:
        sample = PairedSample(
            specimen_id=specimen_id,
            scanner=scanner,
            path=path,
            magnification=row.text("magnification"),
            mpp=row.positive_float("mpp"),
            label=row.label(),
            mask_path=mask_path,
            split=row.text("split"),
            region=row.region(),
            is_wsi=kind == "wsi",
        )
    except (TypeError, ValueError) as error:
        if str(error).startswith(str(row.source)):
            raise
        row.fail(None, str(error))
    return sample, kind


def read_manifest_samples(
    csv_path: str | Path, *, allow_outside: bool = False
) -> list[PairedSample]:
    r"""Read a manifest's rows as samples, without requiring pairs.

    The parsing, path rules and error messages of :func:`read_manifest`, but
    every row is kept whatever scanners its specimen has: the reader of the
    unpaired (domain-generalisation) protocol, where each scanner has its own
    tissue.

    Args:
        csv_path: The manifest (UTF-8, optional BOM).
        allow_outside: Accept relative paths that leave the manifest's folder.

    Returns:
        The samples in file order (patch or WSI decided per row).

    Raises:
        FileNotFoundError: If the manifest, or any file it names, is missing.
        ValueError: On a malformed manifest or a duplicate row (messages name
            the file, line and column).

    Examples:
        >>> import tempfile, pathlib, numpy as np
        >>> from tia_scanner_robust._io import atomic_write_image
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> for s in ("A", "B"):
        ...     _ = atomic_write_image(d / f"{s}.png", np.zeros((4, 4, 3), np.uint8))
        >>> _ = (d / "m.csv").write_text("specimen_id,scanner,path\na/1,A,A.png\nb/1,B,B.png\n")
        >>> [(s.specimen_id, s.scanner) for s in read_manifest_samples(d / "m.csv")]
        [('a/1', 'A'), ('b/1', 'B')]

    """
    source = Path(csv_path)
    if not source.is_file():
        msg = f"Manifest file not found: {source}"
        raise FileNotFoundError(msg)
    folder = source.parent.resolve()
    samples: list[PairedSample] = []
    lines: dict[tuple, int] = {}
    sample_lines: list[int] = []
    explicit_kinds: list[str | None] = []
    with io.StringIO(read_utf8_text(source, "manifest"), newline="") as handle:
        reader = csv.reader(handle)
        columns = _read_header(reader, source)
        for cells in reader:
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) > len(columns):
                msg = (
                    f"{source}: line {reader.line_num}: {len(cells)} fields but the header "
                    f"has {len(columns)} columns (an unquoted comma?)."
                )
                raise ValueError(msg)
            row = _Row(dict(zip(columns, cells, strict=False)), reader.line_num, source)
            sample, kind = _sample_from_row(row, folder, allow_outside=allow_outside)
            if sample.key in lines:
                row.fail(
                    None,
                    f"duplicate row: specimen {sample.specimen_id!r}, scanner "
                    f"{sample.scanner!r}, magnification {sample.magnification!r} already on "
                    f"line {lines[sample.key]}.",
                )
            lines[sample.key] = reader.line_num
            samples.append(sample)
            sample_lines.append(reader.line_num)
            explicit_kinds.append(kind)
    if not samples:
        msg = f"{source}: empty manifest (a header but no rows)."
        raise ValueError(msg)

    missing = [
        f"line {line}: {path}"
        for sample, line in zip(samples, sample_lines, strict=True)
        for path in (sample.path, sample.mask_path)
        if path is not None and not path.exists()
    ]
    if missing:
        more = f"; ... and {len(missing) - _MAX_LISTED} more" if len(missing) > _MAX_LISTED else ""
        msg = (
            f"{source}: {len(missing)} file(s) named in the manifest do not exist: "
            f"{'; '.join(missing[:_MAX_LISTED])}{more}."
        )
        raise FileNotFoundError(msg)

    # Decide patch/WSI from the file where the manifest leaves `kind` empty.
    return [
        sample if kind is not None else replace(sample, is_wsi=detect_kind(sample.path) == "wsi")
        for sample, kind in zip(samples, explicit_kinds, strict=True)
    ]


def read_manifest(
    csv_path: str | Path,
    *,
    incomplete: str = "error",
    scanners: list[str] | None = None,
    allow_outside: bool = False,
    verify: bool = False,
) -> PairedCollection:
    r"""Read a manifest CSV into a :class:`PairedCollection`.

    Args:
        csv_path: The manifest (UTF-8, optional BOM; see the module docstring
            for the columns).
        incomplete: ``"error"`` (default) if a specimen lacks a scanner that
            others have (the message names the specimens and the missing
            scanners), or ``"drop"`` to drop them with a warning.
        scanners: Canonical scanner order (the first is the reference);
            default: order of first appearance in the file.
        allow_outside: Accept relative paths that leave the manifest's folder
            (``../``). Absolute paths are always accepted.
        verify: Decode every image and mask now and list every unreadable
            file at once, instead of failing when a sample is loaded.

    Returns:
        The collection.

    Raises:
        FileNotFoundError: If the manifest, or any file it names, is missing
            (the message lists the first few missing files with their lines).
        ValueError: On an empty manifest, missing required or unknown
            columns, malformed values, duplicate (specimen, scanner,
            magnification) rows, escaping paths, incomplete specimens under
            ``incomplete="error"``, or (with ``verify``) unreadable images.
            Messages name the file, line and column.

    Examples:
        >>> import tempfile, pathlib
        >>> from tia_scanner_robust.data.manifest import read_manifest
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "m.csv").write_text("specimen_id,scanner,path,stain\n")
        >>> read_manifest(d / "m.csv")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: ...m.csv: unknown column(s) ['stain']; known columns: specimen_id, scanner, ...

    """
    check_in_choices(incomplete, INCOMPLETE_POLICIES, "incomplete")
    source = Path(csv_path)
    resolved = read_manifest_samples(source, allow_outside=allow_outside)
    collection = PairedCollection(resolved, scanners=scanners, incomplete=incomplete, source=source)
    if verify:
        verify_images(collection)
    return collection
