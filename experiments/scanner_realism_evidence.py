"""Evidence for docs/scanner_realism.md: fitted profiles, shipped profiles and registration.

Reads the development images (``--data``, default ``../shared/data`` beside the
checkout: ``he_tiles/`` and ``cosas_xscanner/``) and writes the figures and
JSON of ``docs/_static/scanner_realism/``. Only the statistics figure and the
JSON/YAML files are committed: the panels that show tissue crops of the
development images (``fitted_B_realism.png``, ``fitted_cross_tissue.png``,
``registration_refinement.png``) stay local, since the project never
redistributes those images.

Usage (from the repository root)::

    .venv/bin/python experiments/scanner_realism_evidence.py
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path.cwd()))
from tia_scanner_robust._io import atomic_write_image, atomic_write_json, to_jsonable
from tia_scanner_robust._validation import read_rgb_image
from tia_scanner_robust.augmentations.scanner import SCANNER_PROFILES, simulate_scanner
from tia_scanner_robust.augmentations.scanner_fit import fit_scanner_profile
from tia_scanner_robust.augmentations.scanner_legacy import SCANNER_PROFILES_V1
from tia_scanner_robust.augmentations.scanner_realism import (
    image_statistics,
    realism_panel,
    scanner_realism_report,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
OUT = Path("docs/_static/scanner_realism")
RESULTS: dict = {}


# 1. a "real" scanner made by a known transform
def other_scanner(image: np.ndarray, seed: int) -> np.ndarray:
    """A scanner rendering OUTSIDE the simulator's model family, plus misregistration.

    Per-channel S-shaped tone curves (lighter, lower contrast), a 3x3 matrix on
    *encoded* RGB (bluer, less saturated), a Gaussian blur in encoded values,
    encoded-space noise, JPEG 80, and a 2 px / 0.4 degree misregistration.
    """
    x = image.astype(np.float64) / 255.0
    curves = []
    for lift, mid in ((0.18, 0.55), (0.24, 0.5), (0.2, 0.45)):
        s = 1 / (1 + np.exp(-(x - mid) * 5))
        curves.append(lift + (1 - lift) * (0.6 * np.sqrt(x) + 0.4 * s))
    x = np.stack([c[..., i] for i, c in enumerate(curves)], -1)
    matrix = np.array([[0.9, 0.08, 0.02], [0.06, 0.88, 0.06], [0.04, 0.06, 0.96]])
    x = x @ matrix.T
    x = cv2.GaussianBlur(x, (0, 0), 0.6)
    x = x + np.random.default_rng(seed).normal(0, 0.006, x.shape)
    out = np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)
    h, w = out.shape[:2]
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), 0.4, 1.0)
    rot[:, 2] += (2.0, -1.0)
    out = cv2.warpAffine(out, rot, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    _, buf = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 80])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].copy()


def tiles(image: np.ndarray, size: int = 256, n: int = 4) -> list[np.ndarray]:
    h, w = image.shape[:2]
    ys = np.linspace(0, h - size, 2).astype(int)
    xs = np.linspace(0, w - size, 2).astype(int)
    return [np.ascontiguousarray(image[y : y + size, x : x + size]) for y in ys for x in xs][:n]


def part1() -> None:
    # only images whose licence allows showing them in the docs (BSD-3 TIAToolbox, MIT torchstain)
    tiles_dir = DATA / "he_tiles"
    fit_images = [tiles_dir / "tiatoolbox_tcga_he_7130.png", tiles_dir / "tiatoolbox_colon.png"]
    held_images = [tiles_dir / "torchstain_source.png", tiles_dir / "torchstain_target.png"]
    root = Path(tempfile.mkdtemp()) / "he_tiles_pairs"
    for k, path in enumerate(fit_images + held_images):
        image = read_rgb_image(path)
        real = other_scanner(image, k)
        for j, (a, b) in enumerate(zip(tiles(image), tiles(real), strict=True), start=1):
            folder = root / path.stem / f"sample_{j}"
            atomic_write_image(folder / "A.png", a)
            atomic_write_image(
                folder / "B.jpg", b, quality=95
            )  # lossless enough; the JPEG-80 is inside
    t = time.time()
    cli = ".venv/bin/tia-scanner-robust"
    run = subprocess.run(
        [
            cli,
            "fit-scanner-profile",
            "--data",
            str(root),
            "--reference",
            "A",
            "--target",
            "B",
            "-o",
            str(OUT / "fitted_B.yaml"),
            "--holdout",
            "0.25",
            "--seed",
            "0",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    print(run.stdout, run.stderr[-2000:])
    RESULTS["part1_cli_seconds"] = round(time.time() - t, 1)
    RESULTS["part1_cli_output"] = run.stdout
    # cross-tissue hold-out: fit on five other tissues (COSAS breast, lymph node, TCGA,
    # colon; their pixels are not shown), check on the two torchstain images (shown)
    fit_images = [
        *fit_images,
        *sorted(tiles_dir.glob("cosas_full_*.png")),
        tiles_dir / "staingan_lymph_node.png",
    ]
    fit_pairs, held_pairs, held_names = [], [], []
    for k, path in enumerate(fit_images + held_images):
        image = read_rgb_image(path)
        real = other_scanner(image, k)
        pairs = list(zip(tiles(image), tiles(real), strict=True))
        if path in fit_images:
            fit_pairs += pairs
        else:
            held_pairs += pairs
            held_names += [f"{path.stem}/{j}" for j in range(1, len(pairs) + 1)]
    fit = fit_scanner_profile(fit_pairs, name="fitted-B")
    report = scanner_realism_report(fit.profile, held_pairs, names=held_names)
    RESULTS["part1_cross_tissue"] = {
        "profile": fit.profile.to_dict(),
        "summary": report["summary"],
        "colour": fit.diagnostics["colour"],
        "sharpness_gain": fit.diagnostics["sharpness"]["gain"],
    }
    (OUT / "fitted_cross_tissue.png").write_bytes(
        realism_panel(fit.profile, held_pairs[::2], {**report, "pairs": report["pairs"][::2]})
    )
    # what the best shipped profile does on the same held-back pairs
    best = {}
    for name, profile in SCANNER_PROFILES.items():
        best[name] = scanner_realism_report(profile, held_pairs)["summary"]["mad_simulated_vs_real"]
    RESULTS["part1_shipped_profiles_mad"] = best


# 2. COSAS: three real scanners, unpaired
def part2() -> None:
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt

    scanners = ["3d-1000", "leica-450", "kfbio-400"]
    stats = {}
    images = {}
    for s in scanners:
        paths = sorted((DATA / "cosas_xscanner" / s / "images").glob("*.png"))
        images[s] = [read_rgb_image(p) for p in paths]
        stats[s] = [image_statistics(im) for im in images[s]]
    source = "3d-1000"
    sims = {}
    for label, registry in (("v2", SCANNER_PROFILES), ("v1", SCANNER_PROFILES_V1)):
        for name, profile in registry.items():
            if name == "reference":
                continue
            sims[f"{name} ({label})"] = [
                image_statistics(simulate_scanner(im, profile)) for im in images[source]
            ]

    def summary(rows):
        lab = np.array([r["lab_mean"] for r in rows])
        sd = np.array([r["lab_std"] for r in rows])
        return {
            "L": lab[:, 0].mean(),
            "a": lab[:, 1].mean(),
            "b": lab[:, 2].mean(),
            "L_std": sd[:, 0].mean(),
            "saturation": np.mean([r["saturation"] for r in rows]),
            "sharpness": np.mean([r["sharpness"] for r in rows]),
        }

    table = {k: summary(v) for k, v in {**stats, **sims}.items()}
    RESULTS["part2_cosas"] = table
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    pairs = (("L", "saturation"), ("b", "a"), ("L_std", "sharpness"))
    colours = {"3d-1000": "k", "leica-450": "tab:blue", "kfbio-400": "tab:red"}
    for ax, (x, y) in zip(axes, pairs, strict=True):
        for s in scanners:
            xs = [
                {
                    "L": r["lab_mean"][0],
                    "a": r["lab_mean"][1],
                    "b": r["lab_mean"][2],
                    "L_std": r["lab_std"][0],
                    "saturation": r["saturation"],
                    "sharpness": r["sharpness"],
                }[x]
                for r in stats[s]
            ]
            ys = [
                {
                    "L": r["lab_mean"][0],
                    "a": r["lab_mean"][1],
                    "b": r["lab_mean"][2],
                    "L_std": r["lab_std"][0],
                    "saturation": r["saturation"],
                    "sharpness": r["sharpness"],
                }[y]
                for r in stats[s]
            ]
            ax.scatter(xs, ys, s=14, alpha=0.45, color=colours[s])
            ax.scatter(
                [table[s][x]], [table[s][y]], s=160, marker="*", color=colours[s], label=f"real {s}"
            )
        for name, row in table.items():
            if name in scanners:
                continue
            marker = "o" if "(v2)" in name else "x"
            ax.scatter(
                [row[x]],
                [row[y]],
                s=60,
                marker=marker,
                color="tab:green" if "(v2)" in name else "tab:gray",
            )
            ax.annotate(
                name.replace(" (v2)", "").replace(" (v1)", "'"), (row[x], row[y]), fontsize=7
            )
        ax.set_xlabel(x)
        ax.set_ylabel(y)
    axes[0].legend(fontsize=7)
    fig.suptitle(
        "COSAS cross-scanner tiles (different tissue per scanner): real scanners "
        "(stars = means, dots = tiles) "
        "vs the shipped profiles applied to 3d-1000 (green o = v2, grey x = v1, label' = v1)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(OUT / "cosas_statistics.png", dpi=100)
    plt.close(fig)


# 3. registration refinement
def write_wsi(path: Path, image: np.ndarray, mpp: float) -> Path:
    import tifffile

    levels = [image]
    while min(levels[-1].shape[:2]) > 512:
        levels.append(cv2.resize(levels[-1], None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA))
    ppcm = 1e4 / mpp
    with tifffile.TiffWriter(path) as tif:
        tif.write(
            levels[0],
            tile=(256, 256),
            photometric="rgb",
            subifds=len(levels) - 1,
            resolution=(ppcm, ppcm),
            resolutionunit="CENTIMETER",
            compression="zlib",
        )
        for i, level in enumerate(levels[1:], start=1):
            tif.write(
                level,
                tile=(256, 256),
                photometric="rgb",
                subfiletype=1,
                resolution=(ppcm / 2**i, ppcm / 2**i),
                resolutionunit="CENTIMETER",
                compression="zlib",
            )
    return path


def nuclei_mask(image: np.ndarray) -> np.ndarray:
    from skimage.color import rgb2hed

    h = cv2.GaussianBlur(rgb2hed(image)[..., 0].astype(np.float32), (0, 0), 1.0)
    scaled = cv2.normalize(h, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    _, mask = cv2.threshold(scaled, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return mask.astype(bool)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = a.sum() + b.sum()
    return float(2 * (a & b).sum() / s) if s else 1.0


def part3() -> None:
    from tia_scanner_robust.data.build_paired import WSIScan, build_paired_from_wsis

    # a 2.4 x 2.4 mm "slide" (4800 px at 0.5 um/px) with four pieces of real tissue on glass
    names = (
        "tiatoolbox_tcga_he_7130",
        "tiatoolbox_colon",
        "torchstain_source",
        "torchstain_target",
    )
    parts = [read_rgb_image(DATA / "he_tiles" / f"{n}.png") for n in names]
    slide = np.full((4800, 4800, 3), 240, np.uint8)
    for (y, x), part in zip(
        ((300, 300), (300, 2500), (2500, 300), (2500, 2500)), parts, strict=True
    ):
        slide[y : y + 2000, x : x + 2000] = cv2.resize(
            part, (2000, 2000), interpolation=cv2.INTER_CUBIC
        )
    theta = math.radians(7.0)
    matrix = np.array(
        [[math.cos(theta), -math.sin(theta), 0.0], [math.sin(theta), math.cos(theta), 0.0]]
    )
    c = np.array([2400.0, 2400.0])
    matrix[:, 2] = c - matrix[:, :2] @ c + np.array([150.4, -210.7])
    moving = cv2.warpAffine(
        slide, matrix, (4800, 4800), flags=cv2.INTER_CUBIC, borderValue=(240, 240, 240)
    )
    # smooth non-rigid stage distortion (up to 3 px), which no global affine captures
    amp, period = 3.0, 3000.0

    def displacement(x, y):
        return amp * np.sin(2 * np.pi * y / period), amp * np.cos(2 * np.pi * x / period)

    yy, xx = np.mgrid[0:4800, 0:4800].astype(np.float32)
    dx, dy = displacement(xx, yy)
    moving = cv2.remap(
        moving,
        xx + dx.astype(np.float32),
        yy + dy.astype(np.float32),
        cv2.INTER_CUBIC,
        borderValue=(240, 240, 240),
    )
    del xx, yy, dx, dy
    other = SCANNER_PROFILES["warm-soft"].to_dict() | {"name": "other", "shift": (0.0, 0.0)}
    from tia_scanner_robust.augmentations.scanner import ScannerProfile

    moving = simulate_scanner(moving, ScannerProfile(**other))  # another scanner's colours and blur
    work = Path(tempfile.mkdtemp())
    scans = [
        WSIScan("s1", "A", write_wsi(work / "A.tif", slide, 0.5)),
        WSIScan("s1", "B", write_wsi(work / "B.tif", moving, 0.5)),
    ]
    rows = {}
    for refine in (False, True):
        t = time.time()
        collection, report = build_paired_from_wsis(
            scans,
            work / f"out_{refine}",
            n_regions=10,
            region_um=200,
            target_mpp=0.5,
            thumb_mpp=8.0,
            refine=refine,
            max_region_residual_px=100.0,
            progress=False,
        )
        errors, dices, residuals = [], [], []
        for region in report["slides"]["s1"]["regions"]:
            ref_c = np.array(region["centres_baseline"]["A"])
            mov_c = np.array(region["centres_baseline"]["B"])
            expected = (ref_c - 0.5) @ matrix[:, :2].T + matrix[:, 2] + 0.5
            ddx, ddy = displacement(expected[0], expected[1])
            expected = expected - np.array([ddx, ddy])
            errors.append(float(np.linalg.norm(mov_c - expected)))
            residuals.append(region["scans"]["B"]["residual_px"])
        for specimen in collection.specimens:
            pair = collection.by_specimen(specimen)
            a, b = (read_rgb_image(pair[s].path) for s in ("A", "B"))
            dices.append(dice(nuclei_mask(a), nuclei_mask(b)))
        rows["refined" if refine else "thumbnail affine only"] = {
            "error_vs_truth_px": {"mean": float(np.mean(errors)), "max": float(np.max(errors))},
            "reported_residual_px": {
                "median": float(np.median(residuals)),
                "max": float(np.max(residuals)),
            },
            "paired_nuclei_dice": {"mean": float(np.mean(dices)), "min": float(np.min(dices))},
            "seconds": round(time.time() - t, 1),
            "thumbnail_rms_um": report["slides"]["s1"]["scans"]["B"]["rms_um"],
            "rotation_deg": report["slides"]["s1"]["scans"]["B"]["rotation_deg"],
        }
        if refine:
            pair = collection.by_specimen(collection.specimens[0])
            first = [read_rgb_image(pair[s].path) for s in ("A", "B")]
        else:
            pair = collection.by_specimen(collection.specimens[0])
            plain = read_rgb_image(pair["B"].path)
    RESULTS["part3_registration"] = rows
    # figure: reference | affine only | refined, with nuclei mask overlays
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 5.0))
    crop = (slice(0, 200), slice(0, 200))
    ref_mask = nuclei_mask(first[0])
    for ax, (img, title) in zip(
        axes,
        ((first[0], "reference A"), (plain, "B, thumbnail affine only"), (first[1], "B, refined")),
        strict=True,
    ):
        show = img[crop].copy()
        edge = cv2.morphologyEx(
            ref_mask.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)
        ).astype(bool)
        show[edge[crop]] = (0, 255, 0)
        ax.imshow(show)
        ax.axis("off")
        d = dice(ref_mask, nuclei_mask(img))
        ax.set_title(f"{title}\nnuclei Dice vs A {d:.3f}; green = A's nuclei outlines", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(OUT / "registration_refinement.png", dpi=100)
    plt.close(fig)


def main() -> None:
    global DATA  # noqa: PLW0603 - a script's one setting
    parser = argparse.ArgumentParser(
        usage="%(prog)s [--data DIR] [PART ...]",
        description="Usage: write the figures and JSON of docs/_static/scanner_realism. Parts: "
        "1 = profile fitted to a known transform of real tissue, 2 = shipped profiles against "
        "three real scanners (COSAS), 3 = registration with and without refinement.",
    )
    parser.add_argument("parts", nargs="*", default=["1", "2", "3"], choices=["1", "2", "3"])
    parser.add_argument("--data", type=Path, default=DATA, help="the shared development data")
    args = parser.parse_args()
    DATA = args.data
    if not DATA.is_dir():
        parser.error(f"development data not found: {DATA} (pass --data)")
    OUT.mkdir(parents=True, exist_ok=True)
    which = args.parts
    if "1" in which:
        part1()
    if "2" in which:
        part2()
    if "3" in which:
        part3()
    from PIL import Image  # docs figures: 256-colour palette PNGs (a third of the size)

    for png in OUT.glob("*.png"):
        Image.open(png).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(
            png, optimize=True
        )
    path = OUT / "evidence.json"
    previous = json.loads(path.read_text()) if path.is_file() else {}
    atomic_write_json(path, {**previous, **to_jsonable(RESULTS)})
    print(json.dumps(to_jsonable(RESULTS), indent=1)[:6000])


if __name__ == "__main__":
    main()
