"""Scanner-paired regions from whole-slide images of the same slides.

The SCORPION recipe (Lunit, 2025): every scan of a slide is registered to a
reference scan with ORB keypoints and a RANSAC affine transform, then the same
tissue regions (800 um squares in the paper) are cut from every scan.

Method, per slide:

1. Thumbnails of every scan at the same physical resolution ``thumb_mpp``
   (``WSIReader.slide_thumbnail(resolution=thumb_mpp, units="mpp")``), so the
   expected transform has scale 1 whatever each scanner's native resolution.
2. Tissue mask (Otsu threshold on the grayscale thumbnail, cleaned by a
   morphological opening and closing), grayscale + CLAHE equalisation.
3. ORB keypoints (``cv2.ORB_create``) in the dilated tissue mask; Hamming
   brute-force matching with Lowe's ratio test and a mutual (cross) check.
4. ``cv2.estimateAffinePartial2D`` (rotation, uniform scale, translation;
   ``full_affine=True``: ``cv2.estimateAffine2D``) with RANSAC, mapping
   reference thumbnail pixels to moving thumbnail pixels.
5. Residual: RMS reprojection error of the RANSAC inliers, in thumbnail
   pixels and in micrometres (``rms_px * thumb_mpp``).
6. Failure rule: a scan fails when fewer than ``min_inliers`` inliers remain,
   the RMS residual exceeds ``max_residual_px``, the matrix is degenerate
   (not finite, or its scale leaves ``scale_range``: thumbnails share one mpp
   so the scale must be close to 1). A failed slide raises
   :class:`RegistrationError` (``on_failure="error"``, before any region is
   written) or is skipped with a warning (``on_failure="skip"``).
7. Region centres are sampled at random (seeded) in tissue on the reference
   thumbnail, non-overlapping, with at least ``min_tissue_fraction`` tissue
   in the region on the reference *and* (through the affine) on every scan.
8. Each region is read with ``WSIReader.read_rect(..., resolution=target_mpp,
   units="mpp")``: on the reference a box of ``size`` pixels; on every other
   scan a larger box around the mapped centre that contains the rotated
   region, which is then warped (``cv2.warpAffine``, bilinear) by the affine's
   rotation/scale so that every scan's region is pixel-aligned with the
   reference's. Rotation is therefore fully corrected, not only translation.

Input: a CSV listing with columns ``slide_id, scanner, path`` (optional
``mpp`` overriding a missing or wrong baseline resolution; relative paths
resolved against the CSV's folder), or a folder ``root/<slide_id>/<scanner>.<ext>``
of WSIs. Output: the SCORPION layout ``out_dir/<slide_id>/sample_<k>/<scanner>.png``,
``out_dir/manifest.csv``, ``out_dir/scanners.txt`` (reference first) and
``out_dir/registration.json`` (parameters,
per-scan matrices and residuals, region centres in every scan's baseline
pixels).

Examples:
    >>> import numpy as np
    >>> from tia_scanner_robust.data.registration import estimate_affine
    >>> from tiatoolbox.data import stain_norm_target
    >>> reference = np.full((700, 700, 3), 255, np.uint8)
    >>> reference[100:600, 100:600] = stain_norm_target()[::2, ::2]
    >>> moving = np.full_like(reference, 255)
    >>> moving[120:620, 90:590] = reference[100:600, 100:600]
    >>> reg = estimate_affine(reference, moving)
    >>> np.round(reg.matrix[:, 2]).tolist()  # the shift (+20 rows, -10 columns)
    [-10.0, 20.0]

"""

from __future__ import annotations

import csv
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from tqdm.auto import tqdm

from tia_scanner_robust._io import atomic_write_image, atomic_write_json
from tia_scanner_robust._validation import (
    check_in_choices,
    check_range,
    check_rgb_image,
    safe_output_path,
)
from tia_scanner_robust.data.manifest import WSI_EXTENSIONS
from tia_scanner_robust.data.paired import (
    INCOMPLETE_POLICIES,
    PairedCollection,
    PairedSample,
    _open_wsi,
    natural_key,
)
from tia_scanner_robust.data.scorpion import write_scanner_order
from tia_scanner_robust.seeding import make_rng

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "AffineRegistration",
    "RegistrationError",
    "WSIScan",
    "build_paired_from_wsis",
    "check_registration",
    "estimate_affine",
    "extract_aligned_region",
    "format_registration_report",
    "read_wsi_listing",
    "sample_region_centres",
    "tissue_mask",
]

_LISTING_COLUMNS = ("slide_id", "scanner", "path", "mpp")
_FAILURE_POLICIES = ("error", "skip")
_IMAGE_FORMATS = ("png", "jpg")


class RegistrationError(ValueError):
    """A scan could not be registered reliably to its reference."""


# ------------------------------------------------------------------ registration
@dataclass(frozen=True)
class AffineRegistration:
    """Result of registering a moving thumbnail to a reference thumbnail.

    Attributes:
        matrix: ``(2, 3)`` affine mapping reference thumbnail pixels
            ``(x, y)`` to moving thumbnail pixels.
        n_keypoints: ORB keypoints found on (reference, moving).
        n_matches: Matches left after the ratio test and cross check.
        n_inliers: RANSAC inliers.
        rms_px: RMS reprojection error of the inliers, thumbnail pixels.
        thumb_mpp: Microns per thumbnail pixel (for :attr:`rms_um`).

    """

    matrix: np.ndarray
    n_keypoints: tuple[int, int]
    n_matches: int
    n_inliers: int
    rms_px: float
    thumb_mpp: float = 1.0

    @property
    def rms_um(self) -> float:
        """RMS residual in micrometres."""
        return float(self.rms_px * self.thumb_mpp)

    @property
    def scale(self) -> float:
        """Mean scale of the linear part (``sqrt(|det|)``)."""
        return float(math.sqrt(abs(np.linalg.det(self.matrix[:, :2]))))

    @property
    def rotation_deg(self) -> float:
        """Rotation angle in degrees (counter-clockwise in image axes)."""
        return float(math.degrees(math.atan2(self.matrix[1, 0], self.matrix[0, 0])))

    def transform(self, points: np.ndarray) -> np.ndarray:
        """Map ``(N, 2)`` reference thumbnail points ``(x, y)`` to the moving thumbnail."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        return points @ self.matrix[:, :2].T + self.matrix[:, 2]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (matrix, counts, residuals, angle, scale)."""
        return {
            "matrix": np.round(self.matrix, 6).tolist(),
            "n_keypoints": list(self.n_keypoints),
            "n_matches": int(self.n_matches),
            "n_inliers": int(self.n_inliers),
            "rms_px": round(float(self.rms_px), 4),
            "rms_um": round(self.rms_um, 4),
            "rotation_deg": round(self.rotation_deg, 4),
            "scale": round(self.scale, 6),
            "thumb_mpp": float(self.thumb_mpp),
        }


def tissue_mask(image: np.ndarray, *, min_object_px: int = 3) -> np.ndarray:
    """Tissue mask of a thumbnail: Otsu on grayscale, opened and closed.

    Pixels darker than the Otsu threshold (and not near-black padding) are
    tissue. An image without contrast (all background or all tissue) gives
    an all-True mask, so the caller falls back to the whole image.

    Args:
        image: RGB uint8 thumbnail.
        min_object_px: Radius (pixels) of the opening/closing element.

    Returns:
        Boolean ``(H, W)`` mask.

    Examples:
        >>> import numpy as np
        >>> img = np.full((40, 40, 3), 250, np.uint8)
        >>> img[10:30, 10:30] = 120
        >>> mask = tissue_mask(img)
        >>> bool(mask[12:28, 12:28].all()), bool(mask[:8].any())
        (True, False)

    """
    check_rgb_image(image, "image")
    gray = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    if int(gray.max()) - int(gray.min()) < 8:
        return np.ones(gray.shape, dtype=bool)
    threshold, _ = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    mask = ((gray <= threshold) & (gray > 10)).astype(np.uint8)
    kernel = cv2.getStructuringElement(
        cv2.MORPH_ELLIPSE, (2 * min_object_px + 1, 2 * min_object_px + 1)
    )
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
    if not mask.any():
        return np.ones(gray.shape, dtype=bool)
    return mask.astype(bool)


def _prepare(image: np.ndarray) -> np.ndarray:
    """Grayscale + CLAHE: removes most of the scanners' colour differences."""
    gray = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    return cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(gray)


def _orb_mask(mask: np.ndarray | None, shape: tuple[int, int], dilate_px: int) -> np.ndarray:
    if mask is None:
        return np.full(shape, 255, np.uint8)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != shape:
        msg = f"mask shape {mask.shape} does not match the image shape {shape}."
        raise ValueError(msg)
    kernel = np.ones((2 * dilate_px + 1, 2 * dilate_px + 1), np.uint8)
    return cv2.dilate(mask.astype(np.uint8) * 255, kernel)


def _match(des_ref: np.ndarray, des_mov: np.ndarray, ratio: float) -> np.ndarray:
    """Ratio-test + mutual-best matches as an ``(M, 2)`` array of indices."""
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
    forward = matcher.knnMatch(des_ref, des_mov, k=2)
    backward = matcher.knnMatch(des_mov, des_ref, k=1)
    best_back = np.full(len(des_mov), -1, dtype=np.int64)
    back_pairs = np.array([(m[0].queryIdx, m[0].trainIdx) for m in backward if m], dtype=np.int64)
    if back_pairs.size:
        best_back[back_pairs[:, 0]] = back_pairs[:, 1]
    rows = np.array(
        [
            (m[0].queryIdx, m[0].trainIdx, m[0].distance, m[1].distance if len(m) > 1 else np.inf)
            for m in forward
            if m
        ],
        dtype=np.float64,
    ).reshape(-1, 4)
    keep = (rows[:, 2] < ratio * rows[:, 3]) & (
        best_back[rows[:, 1].astype(np.int64)] == rows[:, 0].astype(np.int64)
    )
    return rows[keep, :2].astype(np.int64)


def estimate_affine(
    reference: np.ndarray,
    moving: np.ndarray,
    *,
    reference_mask: np.ndarray | None = None,
    moving_mask: np.ndarray | None = None,
    n_features: int = 5000,
    ratio: float = 0.8,
    ransac_threshold_px: float = 4.0,
    full_affine: bool = False,
    thumb_mpp: float = 1.0,
    seed: int = 0,
) -> AffineRegistration:
    """Register ``moving`` to ``reference`` with ORB keypoints and a RANSAC affine.

    Args:
        reference: RGB uint8 reference thumbnail.
        moving: RGB uint8 thumbnail of another scan, at the same mpp.
        reference_mask: Optional tissue mask of ``reference`` (keypoints are
            searched in it, dilated by 8 px); ``None``: the whole image.
        moving_mask: Same for ``moving``.
        n_features: ORB's ``nfeatures``.
        ratio: Lowe's ratio-test threshold (best / second-best distance).
        ransac_threshold_px: RANSAC inlier threshold (thumbnail pixels).
        full_affine: 6-DOF ``estimateAffine2D`` instead of the 4-DOF
            ``estimateAffinePartial2D`` (rotation, uniform scale, translation).
        thumb_mpp: Microns per thumbnail pixel (reported residual in um).
        seed: Seed of OpenCV's RANSAC sampling (deterministic results).

    Returns:
        The :class:`AffineRegistration` (reference -> moving).

    Raises:
        RegistrationError: If too few keypoints or matches are found, or
            RANSAC finds no transform.

    """
    check_rgb_image(reference, "reference")
    check_rgb_image(moving, "moving")
    ref_gray, mov_gray = _prepare(reference), _prepare(moving)
    orb = cv2.ORB_create(nfeatures=int(n_features))
    kp_ref, des_ref = orb.detectAndCompute(
        ref_gray, _orb_mask(reference_mask, ref_gray.shape, dilate_px=8)
    )
    kp_mov, des_mov = orb.detectAndCompute(
        mov_gray, _orb_mask(moving_mask, mov_gray.shape, dilate_px=8)
    )
    n_keypoints = (len(kp_ref), len(kp_mov))
    if des_ref is None or des_mov is None or min(n_keypoints) < 3:
        msg = f"too few ORB keypoints (reference {n_keypoints[0]}, moving {n_keypoints[1]})."
        raise RegistrationError(msg)
    pairs = _match(des_ref, des_mov, ratio)
    if len(pairs) < 3:
        msg = f"too few keypoint matches ({len(pairs)}) after the ratio test and cross check."
        raise RegistrationError(msg)
    src = np.array([kp_ref[i].pt for i in pairs[:, 0]], dtype=np.float64)
    dst = np.array([kp_mov[j].pt for j in pairs[:, 1]], dtype=np.float64)
    cv2.setRNGSeed(int(seed))
    estimator = cv2.estimateAffine2D if full_affine else cv2.estimateAffinePartial2D
    matrix, inliers = estimator(
        src,
        dst,
        method=cv2.RANSAC,
        ransacReprojThreshold=float(ransac_threshold_px),
        maxIters=5000,
        confidence=0.999,
        refineIters=10,
    )
    if matrix is None or inliers is None:
        msg = f"RANSAC found no affine transform from {len(pairs)} matches."
        raise RegistrationError(msg)
    inliers = inliers.ravel().astype(bool)
    residual = src[inliers] @ matrix[:, :2].T + matrix[:, 2] - dst[inliers]
    rms = float(np.sqrt(np.mean(np.sum(residual**2, axis=1)))) if inliers.any() else math.inf
    return AffineRegistration(
        matrix=np.asarray(matrix, dtype=np.float64),
        n_keypoints=n_keypoints,
        n_matches=len(pairs),
        n_inliers=int(inliers.sum()),
        rms_px=rms,
        thumb_mpp=float(thumb_mpp),
    )


def check_registration(
    registration: AffineRegistration,
    *,
    min_inliers: int = 20,
    max_residual_px: float = 2.5,
    scale_range: tuple[float, float] = (0.9, 1.1),
) -> str | None:
    """Apply the failure rule; return the reason for a failure, or ``None``.

    Args:
        registration: The result to check.
        min_inliers: Fewest RANSAC inliers accepted.
        max_residual_px: Largest RMS inlier residual (thumbnail pixels).
        scale_range: Accepted scale of the transform (thumbnails share one
            mpp, so a registration far from scale 1 is wrong, or an mpp in the
            metadata is).

    Returns:
        ``None`` when the registration passes, else a sentence saying why not.

    Examples:
        >>> import numpy as np
        >>> reg = AffineRegistration(np.array([[2.0, 0, 0], [0, 2.0, 0]]), (90, 90), 60, 50, 0.8)
        >>> check_registration(reg)
        'degenerate transform: scale 2.000 outside [0.9, 1.1] (wrong mpp metadata?).'

    """
    matrix = registration.matrix
    if matrix.shape != (2, 3) or not np.isfinite(matrix).all():
        return "degenerate transform: the matrix is not a finite 2x3 affine."
    if registration.n_inliers < min_inliers:
        return f"too few RANSAC inliers ({registration.n_inliers} < {min_inliers})."
    if not registration.rms_px <= max_residual_px:
        return (
            f"residual too large ({registration.rms_px:.2f} px = {registration.rms_um:.1f} um "
            f"> {max_residual_px} px)."
        )
    low, high = scale_range
    scale = registration.scale
    if not low <= scale <= high:
        return (
            f"degenerate transform: scale {scale:.3f} outside [{low}, {high}] "
            "(wrong mpp metadata?)."
        )
    singular = np.linalg.svd(matrix[:, :2], compute_uv=False)
    if singular.min() < 1e-3 * singular.max():
        return "degenerate transform: the linear part is (nearly) singular."
    return None


# ------------------------------------------------------------------ regions
def _tissue_fraction(mask: np.ndarray, size: int) -> np.ndarray:
    """Fraction of tissue in the ``size x size`` box centred on every pixel."""
    return cv2.boxFilter(
        mask.astype(np.float32), -1, (size, size), normalize=True, borderType=cv2.BORDER_CONSTANT
    )


def sample_region_centres(
    reference_mask: np.ndarray,
    n_regions: int,
    region_px: float,
    *,
    moving_masks: Sequence[np.ndarray] = (),
    registrations: Sequence[AffineRegistration] = (),
    min_tissue_fraction: float = 0.5,
    seed: int | np.random.Generator | None = 0,
) -> np.ndarray:
    """Sample non-overlapping tissue region centres on the reference thumbnail.

    A candidate centre (on a grid of step ``region_px / 4``) is kept when the
    square region of side ``region_px`` around it lies inside the reference
    thumbnail with at least ``min_tissue_fraction`` tissue, and, mapped
    through each registration, lies inside the moving thumbnail (with room
    for any rotation) with at least that much tissue there too. Candidates
    are then visited in random order and accepted when their region does not
    overlap an accepted one.

    Args:
        reference_mask: Boolean tissue mask of the reference thumbnail.
        n_regions: How many centres to return (fewer when tissue runs out).
        region_px: Region side in thumbnail pixels.
        moving_masks: Tissue masks of the moving thumbnails.
        registrations: The matching reference -> moving registrations.
        min_tissue_fraction: Least tissue fraction in each region.
        seed: Seed or generator for the random order.

    Returns:
        ``(K, 2)`` float array of ``(x, y)`` centres in reference thumbnail
        pixel coordinates (pixel ``i`` spans ``[i, i + 1)``), ``K <= n_regions``.

    Examples:
        >>> import numpy as np
        >>> mask = np.zeros((100, 100), bool)
        >>> mask[:, :50] = True
        >>> centres = sample_region_centres(mask, 3, 20, seed=0)
        >>> len(centres), bool((centres[:, 0] <= 50).all())
        (3, True)

    """
    if len(moving_masks) != len(registrations):
        msg = "moving_masks and registrations must have the same length."
        raise ValueError(msg)
    height, width = reference_mask.shape
    size = max(1, round(region_px))
    half = region_px / 2
    step = max(1.0, region_px / 4)
    xs = np.arange(half, width - half + 1e-9, step)
    ys = np.arange(half, height - half + 1e-9, step)
    if not len(xs) or not len(ys):
        return np.zeros((0, 2))
    grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
    fraction = _tissue_fraction(reference_mask, size)
    idx = np.clip(np.floor(grid).astype(int), 0, [width - 1, height - 1])
    ok = fraction[idx[:, 1], idx[:, 0]] >= min_tissue_fraction
    margin = half * math.sqrt(2)
    for mask, registration in zip(moving_masks, registrations, strict=True):
        mapped = registration.transform(grid)
        mh, mw = mask.shape
        inside = (
            (mapped[:, 0] >= margin * registration.scale)
            & (mapped[:, 1] >= margin * registration.scale)
            & (mapped[:, 0] <= mw - margin * registration.scale)
            & (mapped[:, 1] <= mh - margin * registration.scale)
        )
        frac = _tissue_fraction(mask, max(1, round(region_px * registration.scale)))
        midx = np.clip(np.floor(mapped).astype(int), 0, [mw - 1, mh - 1])
        ok &= inside & (frac[midx[:, 1], midx[:, 0]] >= min_tissue_fraction)
    candidates = grid[ok]
    order = make_rng(seed).permutation(len(candidates))
    accepted: list[np.ndarray] = []
    for candidate in candidates[order]:
        if len(accepted) == n_regions:
            break
        if accepted and (np.abs(np.array(accepted) - candidate).max(axis=1) < region_px).any():
            continue
        accepted.append(candidate)
    return np.array(accepted, dtype=np.float64).reshape(-1, 2)


def extract_aligned_region(
    reader: Any,
    centre_baseline: tuple[float, float],
    size_px: int,
    target_mpp: float,
    linear: np.ndarray | None = None,
) -> tuple[np.ndarray, tuple[int, int]]:
    """Read a square region of ``size_px`` pixels at ``target_mpp``, warped by ``linear``.

    Output pixel ``u`` (continuous coordinates, centre ``size_px / 2``) shows
    the scan at ``centre + linear @ (u - size_px / 2)`` in pixels at
    ``target_mpp``. A box large enough to hold the rotated square is read
    with ``read_rect(..., resolution=target_mpp, units="mpp")`` and resampled
    with ``cv2.warpAffine`` (bilinear, white outside the slide).

    Args:
        reader: TIAToolbox ``WSIReader`` with baseline mpp in its metadata.
        centre_baseline: Region centre ``(x, y)`` in baseline (level 0)
            continuous pixel coordinates.
        size_px: Output side in pixels.
        target_mpp: Output resolution.
        linear: ``(2, 2)`` rotation/scale from the reference's region frame to
            this scan's (identity when ``None``).

    Returns:
        The ``(size_px, size_px, 3)`` RGB uint8 region and the top-left
        baseline corner of the box that was read.

    """
    linear = np.eye(2) if linear is None else np.asarray(linear, dtype=np.float64)
    base_mpp = np.asarray(reader.info.mpp, dtype=np.float64)
    scale = float(target_mpp) / base_mpp  # baseline pixels per target pixel, (x, y)
    extent = np.abs(linear).sum(axis=1) * size_px  # bounding box of the rotated square
    box = math.ceil(extent.max()) + 4
    centre = np.asarray(centre_baseline, dtype=np.float64)
    top_left = np.floor(centre - box / 2 * scale).astype(int)
    region = reader.read_rect(
        (int(top_left[0]), int(top_left[1])),
        (box, box),
        resolution=float(target_mpp),
        units="mpp",
        pad_constant_values=255,
    )
    region = np.ascontiguousarray(np.asarray(region)[..., :3]).astype(np.uint8)
    offset = (centre - top_left) / scale  # region centre in the box, continuous target px
    # Continuous coords: v = L (u - S/2) + offset; OpenCV pixel i sits at i + 0.5.
    translation = offset - linear @ np.full(2, size_px / 2) + linear @ np.full(2, 0.5) - 0.5
    matrix = np.hstack([linear, translation[:, None]])
    warped = cv2.warpAffine(
        region,
        matrix,
        (size_px, size_px),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(255, 255, 255),
    )
    return warped, (int(top_left[0]), int(top_left[1]))


# ------------------------------------------------------------------ listing
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
    with source.open(encoding="utf-8-sig", newline="") as handle:
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
    registrations: dict[str, AffineRegistration] = field(default_factory=dict)
    regions: list[dict[str, Any]] = field(default_factory=list)


def _open_reader(scan: WSIScan) -> Any:
    reader = _open_wsi(scan.path, scan.mpp)
    mpp = reader.info.mpp
    if mpp is None or not np.all(np.isfinite(np.asarray(mpp, dtype=float))):
        msg = (
            f"{scan.path} has no baseline mpp in its metadata; give it in the listing's "
            "'mpp' column."
        )
        raise ValueError(msg)
    return reader


def _thumbnail(reader: Any, thumb_mpp: float) -> np.ndarray:
    thumb = np.asarray(reader.slide_thumbnail(resolution=float(thumb_mpp), units="mpp"))
    return np.ascontiguousarray(thumb[..., :3]).astype(np.uint8)


def _load_slide(
    result: _SlideResult, thumb_mpp: float
) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Open every scan of a slide; read its thumbnail and tissue mask."""
    readers = {s: _open_reader(scan) for s, scan in result.scans.items()}
    thumbs = {s: _thumbnail(r, thumb_mpp) for s, r in readers.items()}
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
        np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]),
        (0, 0),
        0,
        0,
        0.0,
        params["thumb_mpp"],
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
                thumb_mpp=params["thumb_mpp"],
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
    return {
        "status": result.status,
        "reason": result.reason,
        "reference": next(iter(result.scans)),
        "scans": {
            scanner: {
                "path": str(scan.path),
                **(
                    result.registrations[scanner].to_dict()
                    if scanner in result.registrations
                    else {}
                ),
            }
            for scanner, scan in result.scans.items()
        },
        "regions": result.regions,
    }


def format_registration_report(report: dict[str, Any]) -> str:
    """One line per scan: status, inliers, RMS residual (px and um), angle, scale.

    Args:
        report: The dict written to ``registration.json``.

    Returns:
        A printable table.

    """
    header = (
        f"{'slide':<16} {'scanner':<12} {'status':<7} {'inliers':>7} {'rms_px':>7} "
        f"{'rms_um':>7} {'rot_deg':>8} {'scale':>6}"
    )
    lines = [header]
    for slide_id, slide in report["slides"].items():
        for scanner, scan in slide["scans"].items():
            is_reference = scanner == slide["reference"]
            status = "ref" if is_reference else slide["status"]
            if "n_inliers" in scan and not is_reference:
                numbers = (
                    f"{scan['n_inliers']:>7d} {scan['rms_px']:>7.2f} {scan['rms_um']:>7.1f} "
                    f"{scan['rotation_deg']:>8.2f} {scan['scale']:>6.3f}"
                )
            else:
                numbers = f"{'-':>7} {'-':>7} {'-':>7} {'-':>8} {'-':>6}"
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


def build_paired_from_wsis(
    listing: str | Path | Sequence[WSIScan],
    out_dir: str | Path,
    *,
    n_regions: int = 10,
    region_um: float = 800.0,
    target_mpp: float = 800.0 / 1024,
    thumb_mpp: float = 8.0,
    reference: str | None = None,
    min_tissue_fraction: float = 0.5,
    min_inliers: int = 20,
    max_residual_px: float = 2.5,
    ransac_threshold_px: float = 4.0,
    scale_range: tuple[float, float] = (0.9, 1.1),
    full_affine: bool = False,
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
            report says so).
        region_um: Region side in micrometres.
        target_mpp: Output resolution; region side in pixels is
            ``round(region_um / target_mpp)``.
        thumb_mpp: Resolution of the registration thumbnails.
        reference: Reference scanner (default: the first in the listing).
        min_tissue_fraction: Least tissue fraction in every scan's region.
        min_inliers: Failure rule: fewest RANSAC inliers.
        max_residual_px: Failure rule: largest inlier RMS (thumbnail pixels).
        ransac_threshold_px: RANSAC inlier threshold (thumbnail pixels).
        scale_range: Failure rule: accepted transform scale.
        full_affine: 6-DOF affine instead of rotation + scale + translation.
        on_failure: ``"error"``: raise :class:`RegistrationError` naming the
            failed slides before writing any region (``registration.json`` is
            still written); ``"skip"``: leave failed slides out, with a warning.
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
            no slide yields a region.
        ValueError: On bad arguments or listings.

    """
    check_in_choices(on_failure, _FAILURE_POLICIES, "on_failure")
    check_in_choices(incomplete, INCOMPLETE_POLICIES, "incomplete")
    check_in_choices(image_format, _IMAGE_FORMATS, "image_format")
    scale_range = check_range(scale_range, "scale_range", low=0.0)
    for name, value in (
        ("region_um", region_um),
        ("target_mpp", target_mpp),
        ("thumb_mpp", thumb_mpp),
        ("max_residual_px", max_residual_px),
        ("ransac_threshold_px", ransac_threshold_px),
    ):
        if not (math.isfinite(float(value)) and float(value) > 0):
            msg = f"{name} must be a positive number, got {value!r}."
            raise ValueError(msg)
    if int(n_regions) < 1:
        msg = f"n_regions must be at least 1, got {n_regions!r}."
        raise ValueError(msg)
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
        "thumb_mpp": float(thumb_mpp),
        "reference": scanners[0],
        "min_tissue_fraction": float(min_tissue_fraction),
        "min_inliers": int(min_inliers),
        "max_residual_px": float(max_residual_px),
        "ransac_threshold_px": float(ransac_threshold_px),
        "scale_range": list(scale_range),
        "full_affine": bool(full_affine),
        "seed": int(seed),
    }
    # Pass 1: register every slide (nothing is written if one fails under "error").
    # Thumbnails are not kept between passes, to bound memory on large cohorts.
    results: list[_SlideResult] = []
    for slide_id, slide_scans in tqdm(slides.items(), desc="register slides", disable=not progress):
        result = _SlideResult(slide_id, slide_scans)
        _, thumbs, masks = _load_slide(result, thumb_mpp)
        _register_slide(result, scanners, thumbs, masks, params)
        results.append(result)

    report = {"parameters": params, "slides": {}}
    failed = [r for r in results if r.status != "ok"]
    if failed and on_failure == "error":
        report["slides"] = {r.slide_id: _slide_report(r) for r in results}
        atomic_write_json(out_dir / "registration.json", report)
        reasons = "; ".join(f"{r.slide_id}: {r.reason}" for r in failed)
        msg = (
            f"Registration failed for {len(failed)} slide(s): {reasons}. Nothing was "
            f"extracted; see {out_dir / 'registration.json'}, or pass on_failure='skip'."
        )
        raise RegistrationError(msg)
    for result in failed:
        warnings.warn(
            f"Skipping slide {result.slide_id}: registration failed ({result.reason}).",
            UserWarning,
            stacklevel=2,
        )

    # Pass 2: sample tissue regions and extract them from every scan.
    samples: list[PairedSample] = []
    for result in tqdm(results, desc="extract slides", disable=not progress):
        if result.status != "ok":
            continue
        readers, thumbs, masks = _load_slide(result, thumb_mpp)
        samples.extend(
            _extract_slide(
                result,
                scanners=scanners,
                readers=readers,
                thumbs_masks=(thumbs, masks),
                out_dir=out_dir,
                params=params,
                image_format=image_format,
                progress=progress,
            )
        )
    report["slides"] = {r.slide_id: _slide_report(r) for r in results}
    atomic_write_json(out_dir / "registration.json", report)
    if not samples:
        msg = (
            "No region was extracted from any slide (registration failures or too little "
            f"tissue); see {out_dir / 'registration.json'}."
        )
        raise RegistrationError(msg)
    collection = PairedCollection(samples, scanners=scanners, source=out_dir)
    write_scanner_order(out_dir, collection.scanners)
    collection.to_manifest(out_dir / "manifest.csv")
    return collection, report


def _extract_slide(
    result: _SlideResult,
    *,
    scanners: list[str],
    readers: dict[str, Any],
    thumbs_masks: tuple[dict[str, np.ndarray], dict[str, np.ndarray]],
    out_dir: Path,
    params: dict[str, Any],
    image_format: str,
    progress: bool,
) -> list[PairedSample]:
    thumbs, masks = thumbs_masks
    reference = scanners[0]
    thumb_mpp, target_mpp, size_px = params["thumb_mpp"], params["target_mpp"], params["region_px"]
    others = scanners[1:]
    centres = sample_region_centres(
        masks[reference],
        params["n_regions"],
        params["region_um"] / thumb_mpp,
        moving_masks=[masks[s] for s in others],
        registrations=[result.registrations[s] for s in others],
        min_tissue_fraction=params["min_tissue_fraction"],
        seed=params["seed"],
    )
    if len(centres) < params["n_regions"]:
        warnings.warn(
            f"Slide {result.slide_id}: only {len(centres)} of {params['n_regions']} tissue "
            "regions fit (too little tissue common to every scan).",
            UserWarning,
            stacklevel=3,
        )
    samples: list[PairedSample] = []
    for k, centre in enumerate(
        tqdm(centres, desc=f"regions {result.slide_id}", leave=False, disable=not progress),
        start=1,
    ):
        specimen_id = f"{result.slide_id}/sample_{k}"
        region_info: dict[str, Any] = {"specimen_id": specimen_id, "centres_baseline": {}}
        for scanner in scanners:
            registration = result.registrations[scanner]
            reader = readers[scanner]
            # Centres are continuous coordinates (pixel i spans [i, i + 1)); keypoints,
            # hence the affine, use pixel-index coordinates (pixel i centred on i).
            mapped = registration.transform(centre - 0.5)[0] + 0.5
            thumb_shape = thumbs[scanner].shape
            base_w, base_h = (float(v) for v in reader.info.slide_dimensions)
            factor = np.array([base_w / thumb_shape[1], base_h / thumb_shape[0]])
            centre_base = mapped * factor
            image, _ = extract_aligned_region(
                reader, tuple(centre_base), size_px, target_mpp, registration.matrix[:, :2]
            )
            path = safe_output_path(out_dir, f"{specimen_id}/{scanner}.{image_format}")
            atomic_write_image(path, image)
            region_info["centres_baseline"][scanner] = np.round(centre_base, 2).tolist()
            samples.append(PairedSample(specimen_id, scanner, path=path, mpp=target_mpp))
        result.regions.append(region_info)
    return samples
