"""Registration of multi-scanner scans: thumbnail affine, then refinement at the target resolution.

The SCORPION recipe (Lunit, 2025) registers every scan of a slide to a
reference scan with ORB keypoints and a RANSAC affine transform, then cuts
the same tissue regions from every scan. This module holds the algorithm;
:mod:`~tia_scanner_robust.data.build_paired` runs it over a cohort
(:func:`~tia_scanner_robust.data.build_paired.build_paired_from_wsis`, whose
names stay importable from here).

1. :func:`estimate_affine`: thumbnails at one physical resolution, tissue
   mask (:func:`tissue_mask`), grayscale + CLAHE, ORB keypoints in tissue,
   Hamming matching with Lowe's ratio test and a mutual check,
   ``cv2.estimateAffinePartial2D`` (or ``estimateAffine2D``) with RANSAC,
   mapping reference thumbnail pixels to moving thumbnail pixels; the RMS
   inlier residual in thumbnail pixels and micrometres.
2. :func:`check_registration`: the thumbnail failure rule (inliers, residual,
   degenerate or wrongly scaled matrix).
3. :func:`sample_region_centres`: non-overlapping tissue regions common to
   every scan.
4. :func:`extract_aligned_region`: a region read at the target resolution
   and warped by the affine's rotation/scale, so it is pixel-aligned with
   the reference's region.
5. :func:`refine_region`: at the target resolution, where the regions are
   used, phase correlation of the extracted region against the reference's
   gives the translation the thumbnail affine missed (one thumbnail pixel at
   8 um/px is 10 px at 0.78 um/px); the region is re-read with the centre
   moved by that amount (repeated until the correction is below 0.05 px),
   and its **residual** is the median shift of its four quadrants, again by
   phase correlation, in target pixels and micrometres. The build refuses a
   region, and a slide whose median region residual, above
   ``max_region_residual_px`` (2 target pixels by default).

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

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from tia_scanner_robust._validation import check_rgb_image
from tia_scanner_robust.seeding import make_rng

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "AffineRegistration",
    "RegionRefinement",
    "RegistrationError",
    "check_registration",
    "estimate_affine",
    "extract_aligned_region",
    "phase_shift",
    "refine_region",
    "region_residual",
    "sample_region_centres",
    "tissue_mask",
]


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


# ------------------------------------------------------------------ refinement
def _dft_size(n: int) -> int:
    """Largest size <= n that OpenCV's DFT takes without padding (padding biases the peak)."""
    while n > 1 and cv2.getOptimalDFTSize(n) != n:
        n -= 1
    return n


def phase_shift(reference: np.ndarray, moving: np.ndarray) -> tuple[float, float, float]:
    """Translation of ``moving`` against ``reference`` by phase correlation.

    Both images are converted to grey and standardised (so colour and
    contrast differences between scanners matter little), cropped to a size
    OpenCV's DFT needs no padding for, and Hann-windowed.

    Args:
        reference: RGB uint8 image.
        moving: RGB uint8 image of the same size.

    Returns:
        ``(dx, dy, response)`` with ``moving(x) ~ reference(x - d)`` and the
        peak's response (``0``: no correlation; flat images give ``(0, 0, 0)``).

    Examples:
        >>> import numpy as np
        >>> from tiatoolbox.data import stain_norm_target
        >>> image = stain_norm_target()
        >>> dx, dy, _ = phase_shift(image[10:210, 10:210], image[10:210, 13:213])
        >>> round(dx, 2), round(dy, 2)
        (-3.0, 0.0)

    """
    if reference.shape != moving.shape:
        msg = f"reference {reference.shape} and moving {moving.shape} differ in shape."
        raise ValueError(msg)
    height, width = (_dft_size(n) for n in reference.shape[:2])
    grey = []
    for image in (reference, moving):
        g = cv2.cvtColor(np.ascontiguousarray(image[:height, :width]), cv2.COLOR_RGB2GRAY)
        g = g.astype(np.float64)
        if g.std() < 1e-6:
            return 0.0, 0.0, 0.0
        grey.append((g - g.mean()) / g.std())
    window = cv2.createHanningWindow((width, height), cv2.CV_64F)
    (dx, dy), response = cv2.phaseCorrelate(grey[0], grey[1], window)
    return float(dx), float(dy), float(response)


def region_residual(reference: np.ndarray, moving: np.ndarray, *, min_std: float = 4.0) -> float:
    """Median misalignment (px) of the four quadrants of two regions, by phase correlation.

    A global translation is the mean of the quadrants' shifts; the median of
    their lengths also sees what a translation cannot fix (rotation, scale,
    local distortion). Quadrants without texture (grey std below
    ``min_std`` grey levels in either image: background) are skipped.

    Returns:
        The residual in pixels, or ``nan`` when no quadrant has texture.

    Examples:
        >>> import numpy as np
        >>> from tiatoolbox.data import stain_norm_target
        >>> image = stain_norm_target()
        >>> round(region_residual(image[:256, :256], image[2:258, :256]), 1)
        2.0

    """
    height, width = reference.shape[:2]
    lengths = []
    for y0 in (0, height // 2):
        for x0 in (0, width // 2):
            window = (slice(y0, y0 + height // 2), slice(x0, x0 + width // 2))
            a, b = reference[window], moving[window]
            if min(a.std(), b.std()) < min_std:
                continue
            dx, dy, _ = phase_shift(a, b)
            lengths.append(math.hypot(dx, dy))
    return float(np.median(lengths)) if lengths else math.nan


@dataclass(frozen=True)
class RegionRefinement:
    """How one region of one scan was refined at the target resolution.

    Attributes:
        correction_px: Translation ``(dx, dy)`` (target px, region frame)
            applied after the thumbnail affine: what the affine missed here.
        response: Phase-correlation peak response of the first estimate.
        residual_px: :func:`region_residual` after the correction (target px).
        target_mpp: Microns per target pixel.
        applied: Whether the correction was applied (``False``: refinement
            off, or the estimate exceeded the plausible range).

    """

    correction_px: tuple[float, float]
    response: float
    residual_px: float
    target_mpp: float
    applied: bool = True

    @property
    def residual_um(self) -> float:
        """Residual in micrometres."""
        return float(self.residual_px * self.target_mpp)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (residual in target px and um)."""
        return {
            "correction_px": [round(float(v), 3) for v in self.correction_px],
            "response": round(float(self.response), 4),
            "residual_px": round(float(self.residual_px), 3),
            "residual_um": round(self.residual_um, 3),
            "applied": bool(self.applied),
        }


def refine_region(
    reader: Any,
    reference_region: np.ndarray,
    centre_baseline: tuple[float, float],
    size_px: int,
    *,
    target_mpp: float,
    linear: np.ndarray | None = None,
    refine: bool = True,
    max_correction_px: float = 64.0,
    iterations: int = 3,
    tolerance_px: float = 0.05,
) -> tuple[np.ndarray, tuple[float, float], RegionRefinement]:
    """Extract a region aligned to ``reference_region`` at the target resolution.

    The region is first read with :func:`extract_aligned_region` at the
    centre the thumbnail affine gives; phase correlation against the
    reference's region (:func:`phase_shift`) estimates the translation left,
    and the region is read again with its centre moved by it (``centre +
    linear @ d``, in baseline pixels), until the correction is below
    ``tolerance_px``. The residual is then :func:`region_residual`.

    Args:
        reader: TIAToolbox ``WSIReader`` of the moving scan.
        reference_region: The reference scan's region (RGB uint8, ``size_px`` square).
        centre_baseline: Centre from the thumbnail affine (moving baseline px).
        size_px: Region side (target px).
        target_mpp: Target resolution.
        linear: Rotation/scale from the reference region frame to this scan's.
        refine: Apply the correction (``False``: only measure the residual).
        max_correction_px: Largest total correction accepted (target px); a
            larger estimate is a false peak and is not applied.
        iterations: Most re-reads.
        tolerance_px: Stop when the last correction is below this.

    Returns:
        The region, its (refined) centre in baseline pixels, and the
        :class:`RegionRefinement`.

    """
    linear_m = np.eye(2) if linear is None else np.asarray(linear, dtype=np.float64)
    base_mpp = np.asarray(reader.info.mpp, dtype=np.float64)
    scale = float(target_mpp) / base_mpp
    centre = np.asarray(centre_baseline, dtype=np.float64)
    image, _ = extract_aligned_region(reader, tuple(centre), size_px, target_mpp, linear_m)
    total = np.zeros(2)
    first_response = None
    applied = False
    if refine:
        current = centre
        for _ in range(max(1, int(iterations))):
            dx, dy, response = phase_shift(reference_region, image)
            first_response = response if first_response is None else first_response
            step = np.array([dx, dy])
            if np.linalg.norm(total + step) > max_correction_px:
                break
            total += step
            current = centre + (linear_m @ total) * scale
            image, _ = extract_aligned_region(reader, tuple(current), size_px, target_mpp, linear_m)
            applied = True
            if np.linalg.norm(step) < tolerance_px:
                break
        if applied:
            centre = current
        else:  # the estimate was implausible: keep the affine's region
            image, _ = extract_aligned_region(reader, tuple(centre), size_px, target_mpp, linear_m)
            total = np.zeros(2)
    else:
        first_response = phase_shift(reference_region, image)[2]
    residual = region_residual(reference_region, image)
    refinement = RegionRefinement(
        correction_px=(float(total[0]), float(total[1])),
        response=float(first_response or 0.0),
        residual_px=residual,
        target_mpp=float(target_mpp),
        applied=applied,
    )
    return image, (float(centre[0]), float(centre[1])), refinement
