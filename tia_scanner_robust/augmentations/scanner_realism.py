"""How real is a scanner profile? Simulated versus real scans of held-back pairs.

For held-back pairs ``(reference scan, real target scan)`` of the same tissue
(pairs not used to fit the profile), :func:`scanner_realism_report` simulates
the target from the reference with the profile and compares:

- ``mad_simulated_vs_real``: mean absolute per-pixel RGB difference between
  the simulated and the real target, against ``mad_reference_vs_real``, the
  same between the reference and the real target (what the simulator has to
  explain); their ratio is the fraction of the scanner difference left
  unexplained. Both are computed after undoing the pair's residual
  translation (phase correlation, ``shift_px``; bilinear resampling of the
  real target, border excluded), so that a 1-3 px misregistration is not
  counted as a colour difference.
- per image, :func:`image_statistics`: CIE L*a*b* mean and standard deviation
  (OpenCV's float conversion, L in ``[0, 100]``), mean HSV saturation, and a
  sharpness index (the share of the luma's power spectrum above 0.25
  cycles/px among frequencies above 0.02, which ignores translation and
  contrast), for the reference, simulated and real target.

:func:`realism_panel` draws reference | simulated | real target side by side;
:func:`save_realism_report` writes the JSON and the PNG atomically.

Examples:
    >>> import numpy as np
    >>> from tiatoolbox.data import stain_norm_target
    >>> from tia_scanner_robust.augmentations.scanner import ScannerProfile, simulate_scanner
    >>> image = stain_norm_target()[:256, :256]
    >>> profile = ScannerProfile("pale", levels=(0.2, 1.0))
    >>> report = scanner_realism_report(profile, [(image, simulate_scanner(image, profile))])
    >>> report["summary"]["mad_simulated_vs_real"] < 1.0
    True

"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from tia_scanner_robust._io import atomic_write_bytes, atomic_write_json, to_jsonable
from tia_scanner_robust.augmentations.scanner import (
    ScannerProfile,
    get_scanner_profile,
    simulate_scanner,
)
from tia_scanner_robust.augmentations.scanner_fit import (
    _check_pairs,
    pair_alignment,
    radial_power_spectrum,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tia_scanner_robust.augmentations.scanner_fit import ImagePair

__all__ = [
    "image_statistics",
    "realism_panel",
    "save_realism_report",
    "scanner_realism_report",
    "sharpness_index",
]

_STAT_KEYS = ("lab_mean", "lab_std", "saturation", "sharpness")


def sharpness_index(image: np.ndarray) -> float:
    """Share of the luma's spectral power above 0.25 cycles/px (among f > 0.02).

    Examples:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> noise = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        >>> smooth = cv2.GaussianBlur(noise, (0, 0), 2.0)
        >>> sharpness_index(noise) > sharpness_index(smooth)
        True

    """
    gray = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY).astype(np.float64)
    freq, power = radial_power_spectrum(gray)
    band = freq > 0.02
    total = power[band].sum()
    return float(power[freq > 0.25].sum() / total) if total > 0 else 0.0


def image_statistics(image: np.ndarray) -> dict[str, Any]:
    """LAB mean/std, mean HSV saturation and the sharpness index of an RGB uint8 image.

    Examples:
        >>> import numpy as np
        >>> stats = image_statistics(np.full((32, 32, 3), (200, 100, 150), np.uint8))
        >>> [round(v) for v in stats["lab_mean"]], round(stats["saturation"], 2)
        ([56, 46, -9], 0.5)

    """
    lab = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB).reshape(-1, 3)
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    return {
        "lab_mean": [round(float(v), 3) for v in lab.mean(axis=0)],
        "lab_std": [round(float(v), 3) for v in lab.std(axis=0)],
        "saturation": round(float(hsv[..., 1].mean() / 255.0), 4),
        "sharpness": round(sharpness_index(image), 5),
    }


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def _aligned_mads(
    reference: np.ndarray, simulated: np.ndarray, real: np.ndarray
) -> tuple[float, float, tuple[float, float]]:
    """MADs (simulated vs real, reference vs real) after undoing the pair's translation."""
    dx, dy, _ = pair_alignment(reference, real)
    matrix = np.array([[1.0, 0.0, -dx], [0.0, 1.0, -dy]])
    height, width = real.shape[:2]
    moved = cv2.warpAffine(real, matrix, (width, height), flags=cv2.INTER_LINEAR)
    m = math.ceil(max(abs(dx), abs(dy))) + 1
    inner = (slice(m, height - m), slice(m, width - m))
    return _mad(simulated[inner], moved[inner]), _mad(reference[inner], moved[inner]), (dx, dy)


def _mean_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in _STAT_KEYS:
        values = np.array([row[key] for row in rows], dtype=np.float64)
        mean = values.mean(axis=0)
        out[key] = [round(float(v), 4) for v in mean] if mean.ndim else round(float(mean), 5)
    return out


def scanner_realism_report(
    profile: str | Path | ScannerProfile,
    pairs: Sequence[ImagePair],
    *,
    names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Compare the profile's simulation of each pair's target with the real target.

    Args:
        profile: The profile (a name, a profile file or a :class:`ScannerProfile`).
        pairs: Held-back ``(reference, real target)`` pairs (arrays or files),
            same requirements as :func:`~.scanner_fit.fit_scanner_profile`.
        names: Optional name of each pair (e.g. its specimen id).

    Returns:
        The report
        ``{"profile", "pairs": [per pair: name, mad_simulated_vs_real,
        mad_reference_vs_real, statistics of reference/simulated/real],
        "summary": {means over pairs, mad_ratio, statistics}}``.

    Raises:
        ValueError: On empty, mismatched or too-small pairs.

    """
    profile = get_scanner_profile(profile)
    loaded = _check_pairs(pairs)
    names = [f"pair_{k}" for k in range(len(loaded))] if names is None else list(names)
    if len(names) != len(loaded):
        msg = f"names has {len(names)} entries for {len(loaded)} pairs."
        raise ValueError(msg)
    rows = []
    for name, (reference, real) in zip(names, loaded, strict=True):
        simulated = simulate_scanner(reference, profile)
        mad_sim, mad_ref, shift = _aligned_mads(reference, simulated, real)
        rows.append(
            {
                "name": name,
                "mad_simulated_vs_real": round(mad_sim, 3),
                "mad_reference_vs_real": round(mad_ref, 3),
                "shift_px": [round(shift[0], 3), round(shift[1], 3)],
                "reference": image_statistics(reference),
                "simulated": image_statistics(simulated),
                "real": image_statistics(real),
            }
        )
    mad_sim = float(np.mean([r["mad_simulated_vs_real"] for r in rows]))
    mad_ref = float(np.mean([r["mad_reference_vs_real"] for r in rows]))
    summary = {
        "n_pairs": len(rows),
        "mad_simulated_vs_real": round(mad_sim, 3),
        "mad_reference_vs_real": round(mad_ref, 3),
        "mad_ratio": round(mad_sim / mad_ref, 4) if mad_ref > 0 else None,
        **{
            which: _mean_stats([r[which] for r in rows])
            for which in ("reference", "simulated", "real")
        },
    }
    return {"profile": profile.to_dict(), "pairs": rows, "summary": summary}


def realism_panel(
    profile: str | Path | ScannerProfile,
    pairs: Sequence[ImagePair],
    report: dict[str, Any],
    *,
    max_rows: int = 4,
    title: str | None = None,
) -> bytes:
    """PNG bytes: per pair, reference | simulated with the profile | real target.

    Args:
        profile: The profile.
        pairs: The pairs of ``report`` (the first ``max_rows`` are drawn).
        report: The result of :func:`scanner_realism_report` for these pairs.
        max_rows: Most pairs drawn.
        title: Figure title (default: the profile name and the summary MADs).

    Returns:
        The encoded PNG.

    """
    import matplotlib as mpl  # noqa: PLC0415 - plotting only when asked

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    profile = get_scanner_profile(profile)
    loaded = _check_pairs(pairs)[:max_rows]
    rows = report["pairs"][: len(loaded)]
    summary = report["summary"]
    figure, axes = plt.subplots(len(loaded), 3, figsize=(10.5, 3.5 * len(loaded)), squeeze=False)
    for axis_row, (reference, real), row in zip(axes, loaded, rows, strict=True):
        simulated = simulate_scanner(reference, profile)
        panels = (
            (reference, f"reference\n|ref - real| = {row['mad_reference_vs_real']:.1f}"),
            (
                simulated,
                f"simulated ({profile.name})\n|sim - real| = {row['mad_simulated_vs_real']:.1f}",
            ),
            (real, f"real target ({row['name']})"),
        )
        stats = (row["reference"], row["simulated"], row["real"])
        for axis, (image, label), stat in zip(axis_row, panels, stats, strict=True):
            axis.imshow(image)
            lab = ", ".join(f"{v:.0f}" for v in stat["lab_mean"])
            axis.set_title(
                f"{label}\nLAB {lab}; sat {stat['saturation']:.2f}; sharp {stat['sharpness']:.3f}",
                fontsize=8,
            )
            axis.axis("off")
    figure.suptitle(
        title
        or (
            f"Profile {profile.name!r} on {summary['n_pairs']} held-back pair(s): mean |RGB diff| "
            f"simulated vs real {summary['mad_simulated_vs_real']:.1f}, "
            f"reference vs real {summary['mad_reference_vs_real']:.1f}"
        ),
        fontsize=9,
    )
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.45 / (3.5 * len(loaded))))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()


def save_realism_report(
    report: dict[str, Any], json_path: str | Path, png: bytes | None = None
) -> tuple[Path, Path | None]:
    """Write the report as JSON and, when given, the panel PNG beside it (atomically).

    Returns:
        The JSON path and the PNG path (``json_path`` with ``.png``) or ``None``.

    Examples:
        >>> import tempfile
        >>> out = Path(tempfile.mkdtemp()) / "r.json"
        >>> save_realism_report({"summary": {"mad_ratio": 0.5}}, out)[0].name
        'r.json'

    """
    json_path = Path(json_path)
    atomic_write_json(json_path, to_jsonable(report), allow_nan=False)
    png_path = None
    if png is not None:
        png_path = atomic_write_bytes(json_path.with_suffix(".png"), png)
    return json_path, png_path
