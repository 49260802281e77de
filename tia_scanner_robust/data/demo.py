"""Scanner-paired data from single-scanner images through simulated scanners.

When no multi-scanner scans exist, the scanner simulator
(:mod:`tia_scanner_robust.augmentations.scanner`) stands in for the scanners:
every input image (or each of ``n_tiles`` tissue tiles cut from it) becomes a
specimen, every simulator profile a scanner. The output is the SCORPION
layout ``out_dir/<image name>/sample_<k>/<profile>.png`` plus
``out_dir/manifest.csv`` and ``out_dir/scanners.txt`` (profile order), readable with
:func:`~tia_scanner_robust.data.scorpion.read_scorpion` or
:func:`~tia_scanner_robust.data.manifest.read_manifest`.

:func:`build_demo_dataset` does this for the H&E image that TIAToolbox ships
(``tiatoolbox.data.stain_norm_target()``, 1000 x 1000 pixels): offline,
deterministic, and reused when the folder already holds a complete demo set
built with the same parameters.

Examples:
    >>> import tempfile
    >>> from tia_scanner_robust.data.demo import build_demo_dataset
    >>> collection = build_demo_dataset(tempfile.mkdtemp(), tile_size=128, n_tiles=2)
    >>> len(collection.specimens), collection.reference_scanner
    (2, 'reference')

"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from tqdm.auto import tqdm

from tia_scanner_robust._io import atomic_write_image, atomic_write_json
from tia_scanner_robust._validation import (
    check_in_choices,
    check_rgb_image,
    read_rgb_image,
    safe_output_path,
)
from tia_scanner_robust.data.collection import PairedCollection, PairedSample, natural_key
from tia_scanner_robust.data.manifest import detect_kind, read_manifest
from tia_scanner_robust.data.readers import open_wsi
from tia_scanner_robust.data.registration import sample_region_centres, tissue_mask
from tia_scanner_robust.data.scorpion import SCANNER_ORDER_FILE, write_scanner_order
from tia_scanner_robust.seeding import make_rng

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tia_scanner_robust.augmentations.scanner import ScannerProfile

__all__ = [
    "DEMO_MARKER",
    "build_demo_dataset",
    "build_paired_from_images",
    "tissue_fraction",
]

#: File in a demo folder recording the parameters it was built with.
DEMO_MARKER = "demo_dataset.json"
_IMAGE_FORMATS = ("png", "jpg")
_DEMO_FORMAT_VERSION = 1


def tissue_fraction(
    image: np.ndarray, *, white_level: int = 220, max_saturation: int = 25
) -> float:
    """Fraction of pixels that are not slide background.

    Background is bright (grayscale ``>= white_level``) and unsaturated (HSV
    saturation ``< max_saturation``), or near-black padding (``<= 10``). A
    fixed rule rather than Otsu, so an all-tissue tile scores about 1.

    Args:
        image: RGB uint8 image.
        white_level: Grayscale level from which an unsaturated pixel is background.
        max_saturation: Saturation (0-255) below which a bright pixel is background.

    Returns:
        The tissue fraction in ``[0, 1]``.

    Examples:
        >>> import numpy as np
        >>> img = np.full((10, 10, 3), 255, np.uint8)
        >>> img[:, :3] = (150, 80, 160)
        >>> tissue_fraction(img)
        0.3

    """
    check_rgb_image(image, "image")
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    saturation = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)[..., 1]
    background = ((gray >= white_level) & (saturation < max_saturation)) | (gray <= 10)
    return float(1.0 - background.mean())


def _resolve_profiles(
    profiles: Sequence[str | ScannerProfile] | None,
) -> list[ScannerProfile]:
    from tia_scanner_robust.augmentations.scanner import (  # noqa: PLC0415 - optional heavy import
        SCANNER_PROFILES,
        ScannerProfile,
    )

    if profiles is None:
        return list(SCANNER_PROFILES.values())
    if isinstance(profiles, (str, ScannerProfile)):
        profiles = [profiles]
    resolved = []
    for profile in profiles:
        if isinstance(profile, ScannerProfile):
            resolved.append(profile)
        else:
            check_in_choices(profile, list(SCANNER_PROFILES), "scanner profile")
            resolved.append(SCANNER_PROFILES[profile])
    names = [p.name for p in resolved]
    if len(set(names)) != len(names) or not names:
        msg = f"profiles must be a non-empty list of distinct profiles, got {names}."
        raise ValueError(msg)
    return resolved


def _named_inputs(
    images: Sequence[str | Path | np.ndarray] | Mapping[str, str | Path | np.ndarray],
) -> list[tuple[str, str | Path | np.ndarray]]:
    if isinstance(images, (str, Path, np.ndarray)):
        images = [images]
    if isinstance(images, Mapping):
        items = [(str(k), v) for k, v in images.items()]
    else:
        items = [
            (Path(im).stem if isinstance(im, (str, Path)) else f"image_{i}", im)
            for i, im in enumerate(images, start=1)
        ]
    if not items:
        msg = "images is empty: give at least one image (array or file)."
        raise ValueError(msg)
    names = [n for n, _ in items]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        msg = f"Input names must be distinct (they become folder names); repeated: {duplicated}."
        raise ValueError(msg)
    for name in names:
        if not name or "/" in name or "\\" in name or name in {".", ".."}:
            msg = f"Input name {name!r} is not a valid folder name."
            raise ValueError(msg)
    return items


def _grid_tiles(
    image: np.ndarray,
    *,
    tile_size: int,
    n_tiles: int | None,
    stride: int,
    min_tissue_fraction: float,
    rng: np.random.Generator,
    name: str,
) -> list[tuple[int, int]]:
    height, width = image.shape[:2]
    if tile_size > height or tile_size > width:
        msg = f"tile_size {tile_size} exceeds the image {name!r} of size {width}x{height}."
        raise ValueError(msg)
    positions = [
        (x, y)
        for y in range(0, height - tile_size + 1, stride)
        for x in range(0, width - tile_size + 1, stride)
    ]
    positions = [
        (x, y)
        for x, y in positions
        if tissue_fraction(image[y : y + tile_size, x : x + tile_size]) >= min_tissue_fraction
    ]
    if n_tiles is None:
        return positions
    if n_tiles > len(positions):
        msg = (
            f"Image {name!r} ({width}x{height}) holds only {len(positions)} tissue tile(s) of "
            f"{tile_size} px at stride {stride}; asked for n_tiles={n_tiles}. Use a smaller "
            "tile_size, a smaller stride or fewer tiles."
        )
        raise ValueError(msg)
    chosen = np.sort(rng.choice(len(positions), size=n_tiles, replace=False))
    return [positions[i] for i in chosen]


def _wsi_tiles(
    path: Path,
    *,
    tile_size: int,
    n_tiles: int,
    target_mpp: float,
    thumb_mpp: float,
    min_tissue_fraction: float,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    reader = open_wsi(path)
    thumb = np.ascontiguousarray(
        np.asarray(reader.slide_thumbnail(resolution=thumb_mpp, units="mpp"))[..., :3]
    ).astype(np.uint8)
    centres = sample_region_centres(
        tissue_mask(thumb),
        n_tiles,
        tile_size * target_mpp / thumb_mpp,
        min_tissue_fraction=min_tissue_fraction,
        seed=rng,
    )
    base_w, base_h = (float(v) for v in reader.info.slide_dimensions)
    factor = np.array([base_w / thumb.shape[1], base_h / thumb.shape[0]])
    scale = target_mpp / np.asarray(reader.info.mpp, dtype=np.float64)
    tiles = []
    for centre in centres:
        top_left = np.round(centre * factor - tile_size / 2 * scale).astype(int)
        tile = reader.read_rect(
            tuple(int(v) for v in top_left),
            (tile_size, tile_size),
            resolution=target_mpp,
            units="mpp",
            pad_constant_values=255,
        )
        tiles.append(np.ascontiguousarray(np.asarray(tile)[..., :3]).astype(np.uint8))
    return tiles


def _input_tiles(
    name: str,
    source: str | Path | np.ndarray,
    *,
    tile_size: int | None,
    n_tiles: int | None,
    stride: int | None,
    target_mpp: float | None,
    thumb_mpp: float,
    min_tissue_fraction: float,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    if isinstance(source, (str, Path)) and detect_kind(source) == "wsi":
        if tile_size is None or target_mpp is None:
            msg = f"Whole-slide input {source} needs tile_size and target_mpp."
            raise ValueError(msg)
        return _wsi_tiles(
            Path(source),
            tile_size=tile_size,
            n_tiles=n_tiles or 10,
            target_mpp=target_mpp,
            thumb_mpp=thumb_mpp,
            min_tissue_fraction=min_tissue_fraction,
            rng=rng,
        )
    image = (
        read_rgb_image(source)
        if isinstance(source, (str, Path))
        else check_rgb_image(source, f"images[{name!r}]")
    )
    if image.dtype != np.uint8:
        msg = f"images[{name!r}] must be uint8 RGB, got {image.dtype}."
        raise TypeError(msg)
    if tile_size is None:
        return [np.ascontiguousarray(image)]
    positions = _grid_tiles(
        image,
        tile_size=tile_size,
        n_tiles=n_tiles,
        stride=stride or tile_size,
        min_tissue_fraction=min_tissue_fraction,
        rng=rng,
        name=name,
    )
    return [np.ascontiguousarray(image[y : y + tile_size, x : x + tile_size]) for x, y in positions]


def build_paired_from_images(
    images: Sequence[str | Path | np.ndarray] | Mapping[str, str | Path | np.ndarray],
    out_dir: str | Path,
    *,
    profiles: Sequence[str | ScannerProfile] | None = None,
    tile_size: int | None = None,
    n_tiles: int | None = None,
    stride: int | None = None,
    target_mpp: float | None = None,
    thumb_mpp: float = 8.0,
    min_tissue_fraction: float = 0.5,
    image_format: str = "png",
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
) -> PairedCollection:
    """Turn single-scanner images into a scanner-paired set with the simulator.

    Each input image (or each tile cut from it) is a specimen
    ``"<name>/sample_<k>"`` (``k`` from 1); each simulator profile is a
    scanner (``simulate_scanner(tile, profile)``), the first profile being the
    reference.

    Args:
        images: Image files, RGB uint8 arrays, or a mapping name -> either.
            Names (file stems, ``image_<i>`` for arrays, or the mapping's
            keys) become folder names and must be distinct. Whole-slide files
            (see :func:`~tia_scanner_robust.data.manifest.detect_kind`) are
            tiled in tissue at ``target_mpp``.
        out_dir: Output folder (must be empty unless ``overwrite``).
        profiles: Profile names or :class:`ScannerProfile` objects
            (default: every profile of ``SCANNER_PROFILES``, in order).
        tile_size: Tile side in pixels; ``None`` keeps each (patch) image whole.
        n_tiles: Tiles per image (default: every tissue tile of the grid for
            patches, 10 for whole slides), chosen at random with ``seed``.
        stride: Grid step for patch tiling (default ``tile_size``: no overlap).
        target_mpp: Resolution of whole-slide tiles (required for WSIs).
        thumb_mpp: Thumbnail resolution used to find tissue on whole slides.
        min_tissue_fraction: Least tissue fraction of a tile
            (:func:`tissue_fraction`).
        image_format: ``"png"`` (lossless, default) or ``"jpg"``.
        seed: Seed of the tile choice.
        overwrite: Allow a non-empty ``out_dir`` (files are replaced).
        progress: Show a tqdm progress bar.

    Returns:
        The written :class:`PairedCollection` (also saved as ``manifest.csv``).

    Examples:
        >>> import tempfile, numpy as np
        >>> from tia_scanner_robust.data.demo import build_paired_from_images
        >>> image = np.full((64, 64, 3), (180, 90, 170), np.uint8)
        >>> c = build_paired_from_images(
        ...     {"he": image}, tempfile.mkdtemp(), tile_size=32, progress=False
        ... )
        >>> len(c.specimens), len(c.scanners)
        (4, 5)

    """
    check_in_choices(image_format, _IMAGE_FORMATS, "image_format")
    for name, value in (("tile_size", tile_size), ("n_tiles", n_tiles), ("stride", stride)):
        if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
            msg = f"{name} must be a positive integer or None, got {value!r}."
            raise ValueError(msg)
    if target_mpp is not None and not (math.isfinite(target_mpp) and target_mpp > 0):
        msg = f"target_mpp must be a positive number, got {target_mpp!r}."
        raise ValueError(msg)
    resolved = _resolve_profiles(profiles)
    items = _named_inputs(images)
    out_dir = Path(out_dir)
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        msg = f"out_dir {out_dir} is not empty; choose an empty folder or pass overwrite=True."
        raise ValueError(msg)
    from tia_scanner_robust.augmentations.scanner import (  # noqa: PLC0415 - optional heavy import
        simulate_scanner,
    )

    rng = make_rng(seed)
    samples: list[PairedSample] = []
    for name, source in tqdm(items, desc="simulate scanners", disable=not progress):
        tiles = _input_tiles(
            name,
            source,
            tile_size=tile_size,
            n_tiles=n_tiles,
            stride=stride,
            target_mpp=target_mpp,
            thumb_mpp=thumb_mpp,
            min_tissue_fraction=min_tissue_fraction,
            rng=rng,
        )
        for k, tile in enumerate(tiles, start=1):
            specimen_id = f"{name}/sample_{k}"
            for profile in resolved:
                path = safe_output_path(out_dir, f"{specimen_id}/{profile.name}.{image_format}")
                atomic_write_image(path, simulate_scanner(tile, profile))
                samples.append(PairedSample(specimen_id, profile.name, path=path, mpp=target_mpp))
    if not samples:
        msg = "No tile had enough tissue; lower min_tissue_fraction or check the inputs."
        raise ValueError(msg)
    collection = PairedCollection(samples, scanners=[p.name for p in resolved], source=out_dir)
    write_scanner_order(out_dir, collection.scanners)
    collection.to_manifest(out_dir / "manifest.csv")
    return collection


def _demo_parameters(
    tile_size: int, n_tiles: int, profiles: list[ScannerProfile], seed: int, image: np.ndarray
) -> dict[str, Any]:
    from tia_scanner_robust import __version__  # noqa: PLC0415

    return {
        "format_version": _DEMO_FORMAT_VERSION,
        "package_version": __version__,
        "source": "tiatoolbox.data.stain_norm_target",
        "source_sha256": hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest(),
        "tile_size": int(tile_size),
        "n_tiles": int(n_tiles),
        "seed": int(seed),
        "profiles": [repr(p) for p in profiles],
    }


def _read_marker(out_dir: Path) -> dict[str, Any] | None:
    marker = out_dir / DEMO_MARKER
    if not marker.is_file():
        return None
    try:
        content = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return content if isinstance(content, dict) else None


def _remove_demo_files(out_dir: Path, marker: dict[str, Any]) -> None:
    """Delete the files an earlier demo build listed (and folders left empty)."""
    files = marker.get("files", [])
    for relative in [*files, "manifest.csv", SCANNER_ORDER_FILE, DEMO_MARKER]:
        path = safe_output_path(out_dir, relative)
        path.unlink(missing_ok=True)
    folders = {safe_output_path(out_dir, f).parent for f in files}
    root = out_dir.resolve()
    for leaf in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        folder = leaf
        while folder != root and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent


def build_demo_dataset(
    out_dir: str | Path,
    *,
    tile_size: int = 256,
    n_tiles: int = 9,
    profiles: Sequence[str | ScannerProfile] | None = None,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = False,
) -> PairedCollection:
    """Build (or reuse) the offline demo set from TIAToolbox's bundled H&E image.

    ``n_tiles`` non-overlapping ``tile_size`` tiles of the 1000 x 1000 image
    (chosen with ``seed`` when fewer than the grid holds) become specimens
    ``"he/sample_<k>"``; every profile of the scanner simulator becomes a
    scanner. Defaults (9 tiles of 256 px x 5 profiles) build in about a
    second on a 2-core CPU.

    If ``out_dir`` already holds a complete demo set built with the same
    parameters (recorded in ``demo_dataset.json`` together with a hash of
    the source image and the profiles' parameters), it is read and returned
    without rebuilding. A demo set built with other parameters is replaced; a
    non-empty folder that is not a demo set is refused unless ``overwrite``.

    Args:
        out_dir: The demo folder.
        tile_size: Tile side in pixels.
        n_tiles: Number of tiles (at most ``(1000 // tile_size) ** 2``).
        profiles: Scanner profiles (default: all, in ``SCANNER_PROFILES`` order).
        seed: Seed of the tile choice.
        overwrite: Build into a non-empty folder that is not a demo set.
        progress: Show a progress bar.

    Returns:
        The :class:`PairedCollection` (``out_dir/manifest.csv`` holds it too).

    Examples:
        >>> import tempfile
        >>> from tia_scanner_robust.data.demo import build_demo_dataset
        >>> d = tempfile.mkdtemp()
        >>> first = build_demo_dataset(d, tile_size=200, n_tiles=3, seed=1)
        >>> again = build_demo_dataset(d, tile_size=200, n_tiles=3, seed=1)  # reused
        >>> [s.path for s in first] == [s.path for s in again]
        True
        >>> first.specimens
        ['he/sample_1', 'he/sample_2', 'he/sample_3']

    """
    from tiatoolbox.data import stain_norm_target  # noqa: PLC0415 - tiatoolbox is slow to import

    image = np.ascontiguousarray(stain_norm_target())
    resolved = _resolve_profiles(profiles)
    params = _demo_parameters(tile_size, n_tiles, resolved, seed, image)
    out_dir = Path(out_dir)
    marker = _read_marker(out_dir) if out_dir.is_dir() else None
    if marker is not None:
        files = marker.get("files", [])
        complete = (out_dir / "manifest.csv").is_file() and all(
            safe_output_path(out_dir, f).is_file() for f in files
        )
        if marker.get("parameters") == params and complete and files:
            return read_manifest(out_dir / "manifest.csv", scanners=[p.name for p in resolved])
        _remove_demo_files(out_dir, marker)
    elif out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        msg = (
            f"out_dir {out_dir} is not empty and holds no demo set ({DEMO_MARKER} missing); "
            "choose an empty folder or pass overwrite=True."
        )
        raise ValueError(msg)
    collection = build_paired_from_images(
        {"he": image},
        out_dir,
        profiles=resolved,
        tile_size=tile_size,
        n_tiles=n_tiles,
        min_tissue_fraction=0.0,
        seed=seed,
        overwrite=True,
        progress=progress,
    )
    root = out_dir.resolve()
    files = sorted(
        (Path(s.path).resolve().relative_to(root).as_posix() for s in collection),
        key=natural_key,
    )
    # Written last: its presence marks a complete build.
    atomic_write_json(out_dir / DEMO_MARKER, {"parameters": params, "files": files})
    return collection
