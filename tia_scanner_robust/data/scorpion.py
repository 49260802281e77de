"""Reader for the SCORPION folder layout of scanner-paired patches.

The layout of the SCORPION dataset (Lunit, 2025), which
:func:`~tia_scanner_robust.data.build_paired.build_paired_from_wsis` and
:func:`~tia_scanner_robust.data.demo.build_paired_from_images` also write::

    root/
      slide_1/
        sample_1/
          AT2.jpg  DP200.jpg  GT450.jpg  P1000.jpg  Philips.jpg
          mask.png              # optional: one mask shared by every scanner
          masks/AT2.png ...     # optional: one mask per scanner (wins over mask.png)
        sample_2/ ...
      slide_2/ ...

Every folder two levels below ``root`` is a specimen, with id
``"<slide folder>/<sample folder>"``; every image file in it is one scanner's
view, the scanner being the file's stem. Scanner names are read from the
files, never hard-coded. Image extensions: ``.jpg .jpeg .png .tif .tiff
.bmp .webp`` (any case). Other files (``README``, ``manifest.csv``...) and
hidden entries are ignored; image files at the wrong depth are an error.
``mask`` is a reserved stem (the shared mask), ``masks`` a reserved folder.

The scanner order (the first scanner is the reference) is, in priority: the
``scanners`` argument, an optional ``root/scanners.txt`` (one name per line,
written by this package's builders), or the names sorted naturally.

Examples:
    >>> import tempfile, pathlib, numpy as np
    >>> from tia_scanner_robust._io import atomic_write_image
    >>> from tia_scanner_robust.data.scorpion import read_scorpion
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for scanner in ("GT450", "AT2"):
    ...     _ = atomic_write_image(
    ...         root / "slide_1" / "sample_1" / f"{scanner}.png", np.zeros((4, 4, 3), np.uint8)
    ...     )
    >>> collection = read_scorpion(root)
    >>> collection.scanners, collection.specimens
    (['AT2', 'GT450'], ['slide_1/sample_1'])

"""

from __future__ import annotations

from pathlib import Path

from tia_scanner_robust._io import atomic_write_text
from tia_scanner_robust._validation import check_in_choices
from tia_scanner_robust.data.collection import (
    INCOMPLETE_POLICIES,
    PairedCollection,
    PairedSample,
    natural_key,
)
from tia_scanner_robust.data.readers import verify_images

__all__ = [
    "IMAGE_EXTENSIONS",
    "MASKS_FOLDER",
    "SCANNER_ORDER_FILE",
    "SHARED_MASK_STEM",
    "read_scorpion",
    "write_scanner_order",
]

#: File extensions recognised as patch images (compared case-insensitively).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")
#: Stem of the mask shared by every scanner of a sample (``sample_j/mask.png``).
SHARED_MASK_STEM = "mask"
#: Folder holding per-scanner masks (``sample_j/masks/{scanner}.png``).
MASKS_FOLDER = "masks"
#: Optional file in the dataset root listing the scanners in canonical order.
SCANNER_ORDER_FILE = "scanners.txt"


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def _visible(entries: list[Path]) -> list[Path]:
    return sorted(
        (p for p in entries if not p.name.startswith(".")), key=lambda p: natural_key(p.name)
    )


def _images_by_stem(folder: Path, what: str) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in _visible(list(folder.iterdir())):
        if not _is_image(path):
            continue
        if path.stem in found:
            msg = (
                f"Two {what} files for {path.stem!r} in {folder}: {found[path.stem].name} and "
                f"{path.name}; keep one."
            )
            raise ValueError(msg)
        found[path.stem] = path
    return found


def _layout_error(path: Path, root: Path) -> ValueError:
    msg = (
        f"Unexpected image file {path} in {root}: the SCORPION layout is "
        "root/<slide>/<sample>/<scanner>.<ext> (images exactly two folders below root). "
        "Did you pass a slide folder, or the parent of the dataset folder, as root?"
    )
    return ValueError(msg)


def _read_sample_folder(sample_dir: Path, specimen_id: str) -> list[PairedSample]:
    images = _images_by_stem(sample_dir, "image")
    shared_mask = images.pop(SHARED_MASK_STEM, None)
    masks: dict[str, Path] = {}
    masks_dir = sample_dir / MASKS_FOLDER
    if masks_dir.is_dir():
        masks = _images_by_stem(masks_dir, "mask")
        unknown = sorted(set(masks) - set(images), key=natural_key)
        if unknown:
            msg = (
                f"Masks for unknown scanner(s) {unknown} in {masks_dir}: mask stems must match "
                f"the sample's image stems {sorted(images, key=natural_key)}."
            )
            raise ValueError(msg)
    for entry in _visible(list(sample_dir.iterdir())):
        if (
            entry.is_dir()
            and entry.name != MASKS_FOLDER
            and any(_is_image(p) for p in entry.rglob("*"))
        ):
            msg = (
                f"Unexpected folder {entry} with images inside sample {specimen_id!r}: the "
                "SCORPION layout has image files directly in root/<slide>/<sample>/ (and "
                f"optional per-scanner masks in a '{MASKS_FOLDER}' folder)."
            )
            raise ValueError(msg)
    return [
        PairedSample(
            specimen_id=specimen_id,
            scanner=scanner,
            path=path,
            mask_path=masks.get(scanner, shared_mask),
        )
        for scanner, path in images.items()
    ]


def read_scorpion(
    root: str | Path,
    *,
    incomplete: str = "error",
    scanners: list[str] | None = None,
    verify: bool = False,
) -> PairedCollection:
    """Read a SCORPION-layout folder into a :class:`PairedCollection`.

    Args:
        root: The dataset folder (holding the ``slide_*`` folders).
        incomplete: ``"error"`` (default) if a sample lacks a scanner that
            others have (the message names the samples and missing scanners),
            or ``"drop"`` to drop such samples with a warning.
        scanners: Canonical scanner order (the first is the reference).
            Default: the order in ``root/scanners.txt`` when present, else
            the scanner names sorted naturally and case-insensitively (for
            SCORPION: AT2, DP200, GT450, P1000, Philips; AT2 is the paper's
            reference).
        verify: Decode every image (and mask) now and report every unreadable
            file at once, instead of failing when a sample is loaded.

    Returns:
        The collection; samples have ``path`` set (and ``mask_path`` when a
        mask exists) and no magnification, mpp, label or split (use a
        manifest for those).

    Raises:
        FileNotFoundError: If ``root`` is not a folder.
        ValueError: On an empty folder, images at the wrong depth, two images
            with the same scanner stem, masks for unknown scanners, incomplete
            samples under ``incomplete="error"``, or (with ``verify``)
            unreadable images.

    Examples:
        >>> import tempfile, pathlib, numpy as np
        >>> from tia_scanner_robust._io import atomic_write_image
        >>> from tia_scanner_robust.data.scorpion import read_scorpion
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> for j, scanners in ((1, ("A", "B")), (2, ("A",))):
        ...     for s in scanners:
        ...         _ = atomic_write_image(
        ...             root / "slide_1" / f"sample_{j}" / f"{s}.png", np.zeros((4, 4, 3), np.uint8)
        ...         )
        >>> read_scorpion(root)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: ...: 1 specimen(s) lack scanners ...: slide_1/sample_2 (missing: B)...
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     read_scorpion(root, incomplete="drop").specimens
        ['slide_1/sample_1']

    """
    check_in_choices(incomplete, INCOMPLETE_POLICIES, "incomplete")
    root = Path(root)
    if not root.is_dir():
        msg = f"SCORPION dataset folder not found: {root}"
        raise FileNotFoundError(msg)
    samples: list[PairedSample] = []
    for slide_dir in _visible(list(root.iterdir())):
        if not slide_dir.is_dir():
            continue
        for entry in _visible(list(slide_dir.iterdir())):
            if _is_image(entry):
                raise _layout_error(entry, root)
            if entry.is_dir():
                specimen_id = f"{slide_dir.name}/{entry.name}"
                samples.extend(_read_sample_folder(entry, specimen_id))
    if not samples:
        msg = (
            f"No images found in {root}: expected the SCORPION layout "
            "root/<slide>/<sample>/<scanner>.<ext> with extensions "
            f"{', '.join(IMAGE_EXTENSIONS)}."
        )
        raise ValueError(msg)
    if scanners is None:
        scanners = _read_scanner_order(root)
    if scanners is None:
        scanners = sorted({s.scanner for s in samples}, key=natural_key)
    collection = PairedCollection(samples, scanners=scanners, incomplete=incomplete, source=root)
    if verify:
        verify_images(collection)
    return collection


def _read_scanner_order(root: Path) -> list[str] | None:
    path = root / SCANNER_ORDER_FILE
    if not path.is_file():
        return None
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    names = [n for n in names if n and not n.startswith("#")]
    return names or None


def write_scanner_order(root: str | Path, scanners: list[str]) -> Path:
    r"""Write ``root/scanners.txt`` (canonical scanner order, reference first).

    Examples:
        >>> import tempfile
        >>> path = write_scanner_order(tempfile.mkdtemp(), ["AT2", "GT450"])
        >>> path.read_text()
        'AT2\nGT450\n'

    """
    return atomic_write_text(Path(root) / SCANNER_ORDER_FILE, "".join(f"{s}\n" for s in scanners))
