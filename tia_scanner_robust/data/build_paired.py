"""Scanner-paired regions from whole-slide images of the same slides (the cohort builder).

:func:`build_paired_from_wsis` (CLI: ``tia-scanner-robust build-paired wsis``)
runs the registration of :mod:`~tia_scanner_robust.data.registration` over a
listing of multi-scanner WSIs and writes the aligned regions. Per slide:

1. Thumbnails of every scan at one physical resolution ``thumb_mpp``
   (``None``, the default: chosen from the slide, the reference's long side
   over 2048 px, between its baseline mpp and 8 um/px), tissue masks, ORB +
   RANSAC affine per scan, the thumbnail failure rule
   (:func:`~tia_scanner_robust.data.registration.check_registration`). A
   failed slide raises :class:`RegistrationError` (``on_failure="error"``,
   before any region is written) or is skipped with a warning.
2. Region centres sampled at random (seeded) in tissue common to every scan
   (:func:`~tia_scanner_robust.data.registration.sample_region_centres`).
   When fewer than ``n_regions`` fit, the warning names the ``region_um``
   that would fit them all.
3. Every region read at ``target_mpp``, warped by the affine's rotation and
   scale and, with ``refine=True`` (default), refined by phase correlation at
   the target resolution
   (:func:`~tia_scanner_robust.data.registration.refine_region`). The
   residual per region and scan is reported in target pixels and um; a
   region whose residual exceeds ``max_region_residual_px`` (2 target px) is
   left out, and a slide whose median region residual exceeds it fails like
   a slide whose thumbnail registration failed (its regions are not written).

Input: a CSV listing with columns ``slide_id, scanner, path`` (optional
``mpp`` overriding a missing or wrong baseline resolution; relative paths
resolved against the CSV's folder), or a folder ``root/<slide_id>/<scanner>.<ext>``
of WSIs. Output: the SCORPION layout ``out_dir/<slide_id>/sample_<k>/<scanner>.png``,
``out_dir/manifest.csv``, ``out_dir/scanners.txt`` (reference first) and
``out_dir/registration.json`` (parameters, per-scan matrices and residuals,
per region the centres in every scan's baseline pixels and the refinement).

Examples:
    >>> from tia_scanner_robust.data.build_paired import format_registration_report
    >>> report = {"slides": {}}
    >>> format_registration_report(report).split()[:3]
    ['slide', 'scanner', 'status']

"""

from __future__ import annotations

import csv
import io
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from tia_scanner_robust._io import atomic_write_image, atomic_write_json
from tia_scanner_robust._validation import (
    check_in_choices,
    check_range,
    read_utf8_text,
    safe_output_path,
)
from tia_scanner_robust.data.collection import (
    INCOMPLETE_POLICIES,
    PairedCollection,
    PairedSample,
    natural_key,
)
from tia_scanner_robust.data.manifest import WSI_EXTENSIONS
from tia_scanner_robust.data.readers import open_wsi
from tia_scanner_robust.data.registration import (
    AffineRegistration,
    RegistrationError,
    check_registration,
    estimate_affine,
    extract_aligned_region,
    refine_region,
    sample_region_centres,
    tissue_mask,
)
from tia_scanner_robust.data.scorpion import write_scanner_order

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "WSIScan",
    "auto_thumb_mpp",
    "build_paired_from_wsis",
    "format_registration_report",
    "read_wsi_listing",
]

_LISTING_COLUMNS = ("slide_id", "scanner", "path", "mpp")
_FAILURE_POLICIES = ("error", "skip")
_IMAGE_FORMATS = ("png", "jpg")
#: Automatic thumbnails: about this many pixels on the reference's long side ...
_AUTO_THUMB_PX = 2048
#: ... and never coarser than this (um/px).
_MAX_THUMB_MPP = 8.0


@dataclass(frozen=True)
class WSIScan:
    """One scan of one slide in a WSI listing.

    Attributes:
        slide_id: The slide (a single folder name).
        scanner: The scanner (a file name stem).
        path: The whole-slide image.
        mpp: Baseline mpp overriding the file's metadata (``None``: use it).

    """

    slide_id: str
    scanner: str
    path: Path
    mpp: float | None = None


def _check_slide_id(slide_id: str, where: str) -> str:
    if not slide_id or "/" in slide_id or "\\" in slide_id or slide_id in {".", ".."}:
        msg = f"{where}: slide_id {slide_id!r} must be a single folder name (no '/', '\\', '..')."
        raise ValueError(msg)
    return slide_id


def read_wsi_listing(source: str | Path) -> list[WSIScan]:
    """Read the scans to register: a CSV listing or a folder of WSIs.

    CSV: columns ``slide_id, scanner, path`` and optional ``mpp``; relative
    paths are resolved against the CSV's folder. Folder:
    ``source/<slide_id>/<scanner>.<ext>`` with a whole-slide extension
    (``.svs .tif .tiff .ndpi .mrxs``...).

    Args:
        source: The CSV file or the folder.

    Returns:
        The scans, in listing order (folders: natural order).

    Raises:
        FileNotFoundError: If ``source`` or a listed file is missing.
        ValueError: On malformed rows, unknown columns or duplicate
            (slide, scanner) pairs; messages name the line and column.

    """
    source = Path(source)
    if source.is_dir():
        scans = [
            WSIScan(slide.name, path.stem, path)
            for slide in sorted(source.iterdir(), key=lambda p: natural_key(p.name))
            if slide.is_dir() and not slide.name.startswith(".")
            for path in sorted(slide.iterdir(), key=lambda p: natural_key(p.name))
            if path.suffix.lower() in (*WSI_EXTENSIONS, ".tif", ".tiff")
        ]
        where = str(source)
        lines = [0] * len(scans)
    elif source.is_file():
        scans, lines = _read_listing_csv(source)
        where = str(source)
    else:
        msg = f"WSI listing not found: {source}"
        raise FileNotFoundError(msg)
    if not scans:
        msg = (
            f"{where}: no whole-slide images found (CSV with slide_id, scanner, path; or "
            "folder root/<slide_id>/<scanner>.<ext>)."
        )
        raise ValueError(msg)
    seen: dict[tuple[str, str], Path] = {}
    for scan in scans:
        _check_slide_id(scan.slide_id, where)
        key = (scan.slide_id, scan.scanner)
        if key in seen:
            msg = f"{where}: slide {scan.slide_id!r} has two scans for scanner {scan.scanner!r}."
            raise ValueError(msg)
        seen[key] = scan.path
    missing = [
        f"line {line}: {s.path}" if line else str(s.path)
        for s, line in zip(scans, lines, strict=True)
        if not s.path.exists()
    ]
    if missing:
        msg = f"{where}: {len(missing)} listed WSI file(s) do not exist: {'; '.join(missing[:5])}."
        raise FileNotFoundError(msg)
    return scans


def _read_listing_csv(source: Path) -> tuple[list[WSIScan], list[int]]:
    scans, lines = [], []
    with io.StringIO(read_utf8_text(source, "WSI listing"), newline="") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip().lower() for c in (reader.fieldnames or [])]
        missing = [c for c in _LISTING_COLUMNS[:3] if c not in columns]
        unknown = [c for c in columns if c not in _LISTING_COLUMNS]
        if missing or unknown:
            msg = (
                f"{source}: WSI listing needs columns slide_id, scanner, path (optional mpp); "
                f"missing {missing}, unknown {unknown}."
            )
            raise ValueError(msg)
        for raw in reader:
            row = {k.strip().lower(): (v or "").strip() for k, v in raw.items() if k}
            if not any(row.values()):
                continue
            where = f"{source}: line {reader.line_num}"
            for column in _LISTING_COLUMNS[:3]:
                if not row.get(column):
                    msg = f"{where}, column {column!r}: empty value in a required column."
                    raise ValueError(msg)
            mpp = None
            if row.get("mpp"):
                try:
                    mpp = float(row["mpp"])
                except ValueError:
                    mpp = math.nan
                if not math.isfinite(mpp) or mpp <= 0:
                    msg = f"{where}, column 'mpp': expected a positive number, got {row['mpp']!r}."
                    raise ValueError(msg)
            path = Path(row["path"])
            scans.append(
                WSIScan(
                    _check_slide_id(row["slide_id"], where),
                    row["scanner"],
                    path if path.is_absolute() else source.parent / path,
                    mpp,
                )
            )
            lines.append(reader.line_num)
    return scans, lines


# ------------------------------------------------------------------ builder
@dataclass
class _SlideResult:
    slide_id: str
    scans: dict[str, WSIScan]
    status: str = "ok"
    reason: str | None = None
    thumb_mpp: float = _MAX_THUMB_MPP
    registrations: dict[str, AffineRegistration] = field(default_factory=dict)
    regions: list[dict[str, Any]] = field(default_factory=list)
    median_residual_px: dict[str, float] = field(default_factory=dict)
    region_um_hint: float | None = None  # a region size at which n_regions would fit


def _open_reader(scan: WSIScan) -> Any:
    reader = open_wsi(scan.path, scan.mpp)
    mpp = reader.info.mpp
    if mpp is None or not np.all(np.isfinite(np.asarray(mpp, dtype=float))):
        msg = (
            f"{scan.path} has no baseline mpp in its metadata; give it in the listing's "
            "'mpp' column."
        )
        raise ValueError(msg)
    return reader


def auto_thumb_mpp(reader: Any) -> float:
    """Thumbnail resolution for a slide: its long side over 2048 px, within [baseline, 8] um/px.

    A typical 20 x 15 mm slide gets 8 um/px (the SCORPION-like default); a
    small 1.5 mm region scanned at 0.5 um/px gets about 0.7 um/px, enough
    keypoints for ORB where 8 um/px would leave a thumbnail of 200 px.

    Examples:
        >>> from types import SimpleNamespace
        >>> info = SimpleNamespace(mpp=(0.5, 0.5), slide_dimensions=(3000, 2200))
        >>> auto_thumb_mpp(SimpleNamespace(info=info))
        0.732
        >>> info = SimpleNamespace(mpp=(0.25, 0.25), slide_dimensions=(100000, 80000))
        >>> auto_thumb_mpp(SimpleNamespace(info=info))
        8.0

    """
    mpp = float(np.max(np.asarray(reader.info.mpp, dtype=np.float64)))
    long_um = float(max(reader.info.slide_dimensions)) * mpp
    return round(min(_MAX_THUMB_MPP, max(mpp, long_um / _AUTO_THUMB_PX)), 3)


def _thumbnail(reader: Any, thumb_mpp: float) -> np.ndarray:
    thumb = np.asarray(reader.slide_thumbnail(resolution=float(thumb_mpp), units="mpp"))
    return np.ascontiguousarray(thumb[..., :3]).astype(np.uint8)


def _load_slide(
    result: _SlideResult, reference: str, thumb_mpp: float | None
) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Open every scan of a slide; choose the thumbnail mpp; read thumbnails and masks."""
    readers = {s: _open_reader(scan) for s, scan in result.scans.items()}
    result.thumb_mpp = auto_thumb_mpp(readers[reference]) if thumb_mpp is None else thumb_mpp
    thumbs = {s: _thumbnail(r, result.thumb_mpp) for s, r in readers.items()}
    masks = {s: tissue_mask(t) for s, t in thumbs.items()}
    return readers, thumbs, masks


def _register_slide(
    result: _SlideResult,
    order: list[str],
    thumbs: dict[str, np.ndarray],
    masks: dict[str, np.ndarray],
    params: dict[str, Any],
) -> None:
    reference = order[0]
    identity = AffineRegistration(
        np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), (0, 0), 0, 0, 0.0, result.thumb_mpp
    )
    result.registrations[reference] = identity
    for scanner in order[1:]:
        try:
            registration = estimate_affine(
                thumbs[reference],
                thumbs[scanner],
                reference_mask=masks[reference],
                moving_mask=masks[scanner],
                ransac_threshold_px=params["ransac_threshold_px"],
                full_affine=params["full_affine"],
                thumb_mpp=result.thumb_mpp,
                seed=params["seed"],
            )
        except RegistrationError as error:
            result.status, result.reason = "failed", f"{scanner}: {error}"
            return
        result.registrations[scanner] = registration
        reason = check_registration(
            registration,
            min_inliers=params["min_inliers"],
            max_residual_px=params["max_residual_px"],
            scale_range=params["scale_range"],
        )
        if reason is not None:
            result.status, result.reason = "failed", f"{scanner}: {reason}"
            return


def _slide_report(result: _SlideResult) -> dict[str, Any]:
    scans = {}
    for scanner, scan in result.scans.items():
        entry: dict[str, Any] = {"path": str(scan.path)}
        if scanner in result.registrations:
            entry.update(result.registrations[scanner].to_dict())
        if scanner in result.median_residual_px:
            entry["median_region_residual_px"] = round(result.median_residual_px[scanner], 3)
        scans[scanner] = entry
    return {
        "status": result.status,
        "reason": result.reason,
        "thumb_mpp": result.thumb_mpp,
        "reference": next(iter(result.scans)),
        "scans": scans,
        "regions": result.regions,
    }


def format_registration_report(report: dict[str, Any]) -> str:
    """One line per scan: status, inliers, RMS residual, angle, scale, region residual.

    ``rms_px``/``rms_um`` are the thumbnail affine's inlier residual (thumbnail
    pixels / um); ``reg_px`` is the median region residual at the target
    resolution (target pixels, after refinement when it is on).

    Args:
        report: The dict written to ``registration.json``.

    Returns:
        A printable table.

    """
    header = (
        f"{'slide':<16} {'scanner':<12} {'status':<7} {'inliers':>7} {'rms_px':>7} "
        f"{'rms_um':>7} {'rot_deg':>8} {'scale':>6} {'reg_px':>7}"
    )
    lines = [header]
    for slide_id, slide in report["slides"].items():
        for scanner, scan in slide["scans"].items():
            is_reference = scanner == slide["reference"]
            status = "ref" if is_reference else slide["status"]
            if "n_inliers" in scan and not is_reference:
                region = scan.get("median_region_residual_px")
                numbers = (
                    f"{scan['n_inliers']:>7d} {scan['rms_px']:>7.2f} {scan['rms_um']:>7.1f} "
                    f"{scan['rotation_deg']:>8.2f} {scan['scale']:>6.3f} "
                    + (f"{region:>7.2f}" if region is not None else f"{'-':>7}")
                )
            else:
                numbers = f"{'-':>7} {'-':>7} {'-':>7} {'-':>8} {'-':>6} {'-':>7}"
            lines.append(f"{slide_id:<16} {scanner:<12} {status:<7} {numbers}")
        if slide["status"] != "ok":
            lines.append(f"  -> slide {slide_id} FAILED: {slide['reason']}")
    return "\n".join(lines)


def _prepare_out_dir(out_dir: Path, *, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        msg = f"out_dir {out_dir} exists and is not a folder."
        raise ValueError(msg)
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            msg = f"out_dir {out_dir} is not empty; choose an empty folder or pass overwrite=True."
            raise ValueError(msg)
        for name in ("manifest.csv", "registration.json", "scanners.txt"):
            (out_dir / name).unlink(missing_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)


def _group_scans(
    scans: list[WSIScan], reference: str | None, incomplete: str
) -> tuple[list[str], dict[str, dict[str, WSIScan]]]:
    scanners = list(dict.fromkeys(s.scanner for s in scans))
    if reference is not None:
        check_in_choices(reference, scanners, "reference")
        scanners = [reference, *[s for s in scanners if s != reference]]
    slides: dict[str, dict[str, WSIScan]] = {}
    for scan in scans:
        slides.setdefault(scan.slide_id, {})[scan.scanner] = scan
    missing = {
        slide: [s for s in scanners if s not in have]
        for slide, have in slides.items()
        if len(have) < len(scanners)
    }
    if missing:
        listing = "; ".join(f"{k} (missing: {', '.join(v)})" for k, v in list(missing.items())[:10])
        if incomplete == "error":
            msg = (
                f"{len(missing)} slide(s) lack scans that others have: {listing}. "
                "Pass incomplete='drop' to skip them."
            )
            raise ValueError(msg)
        warnings.warn(
            f"Skipping {len(missing)} slide(s) that lack some scanner: {listing}.",
            UserWarning,
            stacklevel=3,
        )
        slides = {k: v for k, v in slides.items() if k not in missing}
        if not slides:
            msg = "Every slide lacks some scanner; nothing to build."
            raise ValueError(msg)
    ordered = {k: {s: v[s] for s in scanners} for k, v in slides.items()}
    return scanners, ordered


def _check_parameters(values: dict[str, Any], n_regions: int) -> None:
    for name, value in values.items():
        if value is None and name == "thumb_mpp":
            continue
        if not (math.isfinite(float(value)) and float(value) > 0):
            msg = f"{name} must be a positive number, got {value!r}."
            raise ValueError(msg)
    if int(n_regions) < 1:
        msg = f"n_regions must be at least 1, got {n_regions!r}."
        raise ValueError(msg)


def build_paired_from_wsis(
    listing: str | Path | Sequence[WSIScan],
    out_dir: str | Path,
    *,
    n_regions: int = 10,
    region_um: float = 800.0,
    target_mpp: float = 800.0 / 1024,
    thumb_mpp: float | None = None,
    reference: str | None = None,
    min_tissue_fraction: float = 0.5,
    min_inliers: int = 20,
    max_residual_px: float = 2.5,
    ransac_threshold_px: float = 4.0,
    scale_range: tuple[float, float] = (0.9, 1.1),
    full_affine: bool = False,
    refine: bool = True,
    max_region_residual_px: float = 2.0,
    on_failure: str = "error",
    incomplete: str = "error",
    image_format: str = "png",
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
) -> tuple[PairedCollection, dict[str, Any]]:
    """Register multi-scanner WSIs of the same slides and cut aligned regions.

    See the module docstring for the method. Defaults follow SCORPION: 10
    regions of 800 um per slide, written as 1024 x 1024 pixels
    (``target_mpp = 800 / 1024``).

    Args:
        listing: CSV listing, folder of WSIs (see :func:`read_wsi_listing`) or
            a list of :class:`WSIScan`.
        out_dir: Output folder (must be empty unless ``overwrite``).
        n_regions: Regions per slide (fewer when the tissue runs out; the
            warning names the ``region_um`` that would fit them all).
        region_um: Region side in micrometres.
        target_mpp: Output resolution; region side in pixels is
            ``round(region_um / target_mpp)``.
        thumb_mpp: Resolution of the registration thumbnails; ``None``: per
            slide, :func:`auto_thumb_mpp` (8 um/px for a whole slide).
        reference: Reference scanner (default: the first in the listing).
        min_tissue_fraction: Least tissue fraction in every scan's region.
        min_inliers: Thumbnail failure rule: fewest RANSAC inliers.
        max_residual_px: Thumbnail failure rule: largest inlier RMS (thumbnail px).
        ransac_threshold_px: RANSAC inlier threshold (thumbnail pixels).
        scale_range: Thumbnail failure rule: accepted transform scale.
        full_affine: 6-DOF affine instead of rotation + scale + translation.
        refine: Refine every region by phase correlation at the target
            resolution (``False``: the thumbnail affine only; the residual is
            still measured and reported).
        max_region_residual_px: Region failure rule, in target pixels: a
            region whose residual is larger is left out, and a slide whose
            median region residual (for any scan) is larger fails.
        on_failure: ``"error"``: raise :class:`RegistrationError` naming the
            failed slides (thumbnail failures before any region is written;
            region-residual failures before that slide's regions are
            written; ``registration.json`` is still written); ``"skip"``:
            leave failed slides out, with a warning.
        incomplete: Slides missing a scanner: ``"error"`` or ``"drop"``.
        image_format: ``"png"`` (lossless, default) or ``"jpg"``.
        seed: Seed of the region sampling and of RANSAC.
        overwrite: Allow a non-empty ``out_dir``.
        progress: Show tqdm progress bars.

    Returns:
        The :class:`PairedCollection` that was written and the report (the
        content of ``registration.json``).

    Raises:
        RegistrationError: If a slide fails under ``on_failure="error"``, or
            no slide yields a region (the message says which option to change).
        ValueError: On bad arguments or listings.

    """
    check_in_choices(on_failure, _FAILURE_POLICIES, "on_failure")
    check_in_choices(incomplete, INCOMPLETE_POLICIES, "incomplete")
    check_in_choices(image_format, _IMAGE_FORMATS, "image_format")
    scale_range = check_range(scale_range, "scale_range", low=0.0)
    _check_parameters(
        {
            "region_um": region_um,
            "target_mpp": target_mpp,
            "thumb_mpp": thumb_mpp,
            "max_residual_px": max_residual_px,
            "ransac_threshold_px": ransac_threshold_px,
            "max_region_residual_px": max_region_residual_px,
        },
        n_regions,
    )
    size_px = round(region_um / target_mpp)
    if size_px < 8:
        msg = f"region_um / target_mpp gives {size_px} px regions; need at least 8."
        raise ValueError(msg)

    scans = list(listing) if not isinstance(listing, (str, Path)) else read_wsi_listing(listing)
    scanners, slides = _group_scans(scans, reference, incomplete)
    out_dir = Path(out_dir)
    _prepare_out_dir(out_dir, overwrite=overwrite)
    params = {
        "n_regions": int(n_regions),
        "region_um": float(region_um),
        "target_mpp": float(target_mpp),
        "region_px": int(size_px),
        "thumb_mpp": None if thumb_mpp is None else float(thumb_mpp),
        "reference": scanners[0],
        "min_tissue_fraction": float(min_tissue_fraction),
        "min_inliers": int(min_inliers),
        "max_residual_px": float(max_residual_px),
        "ransac_threshold_px": float(ransac_threshold_px),
        "scale_range": list(scale_range),
        "full_affine": bool(full_affine),
        "refine": bool(refine),
        "max_region_residual_px": float(max_region_residual_px),
        "seed": int(seed),
    }
    # Pass 1: register every slide (nothing is written if one fails under "error").
    # Thumbnails are not kept between passes, to bound memory on large cohorts.
    results: list[_SlideResult] = []
    for slide_id, slide_scans in tqdm(slides.items(), desc="register slides", disable=not progress):
        result = _SlideResult(slide_id, slide_scans)
        _, thumbs, masks = _load_slide(result, scanners[0], thumb_mpp)
        _register_slide(result, scanners, thumbs, masks, params)
        results.append(result)

    report: dict[str, Any] = {"parameters": params, "slides": {}}
    _handle_failures(results, report, out_dir, on_failure, "Nothing was extracted")

    # Pass 2: sample tissue regions, extract and refine them, check residuals, write.
    samples: list[PairedSample] = []
    for result in tqdm(results, desc="extract slides", disable=not progress):
        if result.status != "ok":
            continue
        readers, thumbs, masks = _load_slide(result, scanners[0], result.thumb_mpp)
        regions = _extract_slide(
            result,
            scanners=scanners,
            readers=readers,
            thumbs_masks=(thumbs, masks),
            params=params,
            progress=progress,
        )
        if result.status != "ok":
            _handle_failures([result], report, out_dir, on_failure, "Its regions were not written")
            continue
        samples.extend(_write_regions(regions, out_dir, image_format, target_mpp))
    report["slides"] = {r.slide_id: _slide_report(r) for r in results}
    atomic_write_json(out_dir / "registration.json", report)
    if not samples:
        msg = (
            "No region was extracted from any slide (registration failures or too little "
            f"tissue); see {out_dir / 'registration.json'}. " + _region_advice(results, params)
        )
        raise RegistrationError(msg)
    collection = PairedCollection(samples, scanners=scanners, source=out_dir)
    write_scanner_order(out_dir, collection.scanners)
    collection.to_manifest(out_dir / "manifest.csv")
    return collection, report


def _handle_failures(
    results: list[_SlideResult],
    report: dict[str, Any],
    out_dir: Path,
    on_failure: str,
    consequence: str,
) -> None:
    failed = [r for r in results if r.status != "ok"]
    if failed and on_failure == "error":
        report["slides"].update({r.slide_id: _slide_report(r) for r in results})
        atomic_write_json(out_dir / "registration.json", report)
        reasons = "; ".join(f"{r.slide_id}: {r.reason}" for r in failed)
        msg = (
            f"Registration failed for {len(failed)} slide(s): {reasons}. {consequence}; "
            f"see {out_dir / 'registration.json'}, or pass on_failure='skip'."
        )
        raise RegistrationError(msg)
    for result in failed:
        warnings.warn(
            f"Skipping slide {result.slide_id}: registration failed ({result.reason}).",
            UserWarning,
            stacklevel=3,
        )


def _region_advice(results: list[_SlideResult], params: dict[str, Any]) -> str:
    sizes = [r.region_um_hint for r in results if r.region_um_hint is not None]
    hint = f" (e.g. {min(sizes):g})" if sizes else ""
    return (
        f"With little tissue (a small slide), lower region_um / --region-um{hint} or "
        f"n_regions / --n-regions (now {params['region_um']:g} um x {params['n_regions']}); "
        "a thumbnail registration failure is reported per slide above."
    )


def _fitting_region_um(
    masks: dict[str, np.ndarray],
    result: _SlideResult,
    scanners: list[str],
    params: dict[str, Any],
) -> float | None:
    """Largest region_um (halving) at which ``n_regions`` regions fit, or None."""
    region_um = params["region_um"]
    for _ in range(6):
        region_um /= 2
        if region_um / result.thumb_mpp < 4:
            return None
        centres = _sample(masks, result, scanners, params, region_um)
        if len(centres) >= params["n_regions"]:
            return region_um
    return None


def _sample(
    masks: dict[str, np.ndarray],
    result: _SlideResult,
    scanners: list[str],
    params: dict[str, Any],
    region_um: float,
) -> np.ndarray:
    others = scanners[1:]
    return sample_region_centres(
        masks[scanners[0]],
        params["n_regions"],
        region_um / result.thumb_mpp,
        moving_masks=[masks[s] for s in others],
        registrations=[result.registrations[s] for s in others],
        min_tissue_fraction=params["min_tissue_fraction"],
        seed=params["seed"],
    )


def _baseline_centre(
    centre: np.ndarray, registration: AffineRegistration, thumb_shape: tuple[int, ...], reader: Any
) -> np.ndarray:
    # Centres are continuous coordinates (pixel i spans [i, i + 1)); keypoints,
    # hence the affine, use pixel-index coordinates (pixel i centred on i).
    mapped = registration.transform(centre - 0.5)[0] + 0.5
    base_w, base_h = (float(v) for v in reader.info.slide_dimensions)
    return mapped * np.array([base_w / thumb_shape[1], base_h / thumb_shape[0]])


def _extract_slide(
    result: _SlideResult,
    *,
    scanners: list[str],
    readers: dict[str, Any],
    thumbs_masks: tuple[dict[str, np.ndarray], dict[str, np.ndarray]],
    params: dict[str, Any],
    progress: bool,
) -> list[tuple[str, dict[str, np.ndarray]]]:
    """Extract (and refine) every region of a slide in memory; apply the residual rules."""
    thumbs, masks = thumbs_masks
    reference = scanners[0]
    target_mpp, size_px = params["target_mpp"], params["region_px"]
    limit = params["max_region_residual_px"]
    centres = _sample(masks, result, scanners, params, params["region_um"])
    if len(centres) < params["n_regions"]:
        fitting = _fitting_region_um(masks, result, scanners, params)
        result.region_um_hint = fitting
        advice = (
            f"pass region_um={fitting:g} (--region-um {fitting:g}) to fit "
            f"{params['n_regions']}, or lower n_regions"
            if fitting is not None
            else "lower n_regions (--n-regions) or region_um (--region-um)"
        )
        warnings.warn(
            f"Slide {result.slide_id}: only {len(centres)} of {params['n_regions']} tissue "
            f"regions of {params['region_um']:g} um fit (too little tissue common to every "
            f"scan); {advice}.",
            UserWarning,
            stacklevel=3,
        )
    regions: list[tuple[str, dict[str, np.ndarray]]] = []
    residuals: dict[str, list[float]] = {s: [] for s in scanners[1:]}
    for k, centre in enumerate(
        tqdm(centres, desc=f"regions {result.slide_id}", leave=False, disable=not progress),
        start=1,
    ):
        specimen_id = f"{result.slide_id}/sample_{k}"
        info: dict[str, Any] = {"specimen_id": specimen_id, "centres_baseline": {}, "scans": {}}
        ref_centre = _baseline_centre(
            centre, result.registrations[reference], thumbs[reference].shape, readers[reference]
        )
        ref_image, _ = extract_aligned_region(
            readers[reference], tuple(ref_centre), size_px, target_mpp
        )
        images = {reference: ref_image}
        info["centres_baseline"][reference] = np.round(ref_centre, 2).tolist()
        for scanner in scanners[1:]:
            registration = result.registrations[scanner]
            start = _baseline_centre(centre, registration, thumbs[scanner].shape, readers[scanner])
            image, refined, refinement = refine_region(
                readers[scanner],
                ref_image,
                tuple(start),
                size_px,
                target_mpp=target_mpp,
                linear=registration.matrix[:, :2],
                refine=params["refine"],
                max_correction_px=4.0 * result.thumb_mpp / target_mpp + 8.0,
            )
            images[scanner] = image
            info["centres_baseline"][scanner] = np.round(refined, 2).tolist()
            info["scans"][scanner] = refinement.to_dict()
            residuals[scanner].append(refinement.residual_px)
        bad = [
            s for s in scanners[1:] if not info["scans"][s]["residual_px"] <= limit
        ]  # nan (no texture to check) also fails
        info["status"] = "ok" if not bad else f"residual above {limit:g} target px: {bad}"
        result.regions.append(info)
        if not bad:
            regions.append((specimen_id, images))
    for scanner, values in residuals.items():
        finite = [v for v in values if math.isfinite(v)]
        if finite:
            result.median_residual_px[scanner] = float(np.median(finite))
    worst = {s: v for s, v in result.median_residual_px.items() if v > limit}
    if worst:
        listing = ", ".join(f"{s} {v:.2f} px" for s, v in worst.items())
        result.status = "failed"
        result.reason = (
            f"median region residual above {limit:g} target px ({listing} at "
            f"{target_mpp:g} um/px)"
            + ("" if params["refine"] else "; refinement is off (refine=True)")
        )
        return []
    dropped = len(result.regions) - len(regions)
    if dropped:
        warnings.warn(
            f"Slide {result.slide_id}: {dropped} region(s) left out, residual above "
            f"{limit:g} target px (see registration.json).",
            UserWarning,
            stacklevel=3,
        )
    return regions


def _write_regions(
    regions: list[tuple[str, dict[str, np.ndarray]]],
    out_dir: Path,
    image_format: str,
    target_mpp: float,
) -> list[PairedSample]:
    samples = []
    for specimen_id, images in regions:
        for scanner, image in images.items():
            path = safe_output_path(out_dir, f"{specimen_id}/{scanner}.{image_format}")
            atomic_write_image(path, image)
            samples.append(PairedSample(specimen_id, scanner, path=path, mpp=target_mpp))
    return samples
