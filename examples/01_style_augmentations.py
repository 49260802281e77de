"""Example 01: style augmentations and simulated scanners on a real H&E image.

What it does, on TIAToolbox's bundled 1000x1000 H&E image (no download):

1. applies each style augmentation once to a 256x256 tile (ColorJitter for
   H&E, RandStainNA in LAB/HSV/HED, FDA with a scanner-simulated reference,
   HEStain, the scanner simulator) and prints how much each changed the tile;
2. builds augmentations by name with the ``style_augmentation`` factory,
   including a ``"colorjitter+fda"`` combination;
3. shows that a seeded ``A.Compose`` reproduces its random draws exactly;
4. renders the tile through every simulated scanner profile and prints the
   colour statistics that make them differ like real scanners do (mean
   absolute difference to the reference scan, mean RGB, contrast);
5. writes the augmentation preview grid (PNG) and one image per scanner
   profile, i.e. a small scanner-paired set synthesised from one scan.

Run ``python examples/01_style_augmentations.py [--out-dir DIR]`` (about ten
seconds on a laptop CPU, most of it importing torch through albumentations).
Outputs go to ``out/01_style_augmentations`` by default.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import albumentations as A  # noqa: N812 - the library's documented alias
import numpy as np
from tiatoolbox.data import stain_norm_target

from tia_scanner_robust._io import atomic_write_image
from tia_scanner_robust.augmentations.fda import FourierDomainAdaptation
from tia_scanner_robust.augmentations.presets import he_color_jitter, style_augmentation
from tia_scanner_robust.augmentations.preview import save_augmentation_preview
from tia_scanner_robust.augmentations.randstainna import RandStainNA
from tia_scanner_robust.augmentations.scanner import (
    SCANNER_PROFILES,
    ScannerSimulator,
    simulate_paired_scans,
    simulate_scanner,
)


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute per-pixel difference in grey levels."""
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


def main(out_dir: Path) -> None:
    image = stain_norm_target()  # (1000, 1000, 3) uint8 RGB, real H&E
    tile = np.ascontiguousarray(image[300:556, 300:556])
    print(f"Bundled H&E image {image.shape}; working on a {tile.shape[0]}px tile.\n")

    # 1. Each augmentation once (p=1.0 so it always applies), seeded.
    reference_scan = simulate_scanner(tile, "warm-soft")  # another "scanner" of the same tissue
    transforms = {
        "colorjitter (H&E ranges)": he_color_jitter(p=1.0),
        "randstainna LAB": RandStainNA(color_spaces=["LAB"], p=1.0),
        "randstainna HSV": RandStainNA(color_spaces=["HSV"], p=1.0),
        "randstainna HED": RandStainNA(color_spaces=["HED"], p=1.0),
        "fda (ref: warm-soft scan)": FourierDomainAdaptation(beta_range=(0.01, 0.05), p=1.0),
        "hestain": style_augmentation("hestain", p=1.0),
        "scanner simulator": ScannerSimulator(p=1.0),
    }
    print("1. One draw of each augmentation (mean |change| in grey levels):")
    for name, transform in transforms.items():
        pipeline = A.Compose([transform], seed=0)
        out = pipeline(image=tile, fda_reference=[reference_scan])["image"]
        print(f"   {name:28s} {mean_abs_diff(out, tile):5.1f}")

    # 2. The factory: names, keyword arguments and "+" combinations.
    combo = style_augmentation("colorjitter+fda", fda={"beta_range": (0.01, 0.03)}, p=1.0, seed=0)
    out = combo(image=tile, fda_reference=[reference_scan])["image"]
    parts = " + ".join(type(t).__name__ for t in combo.transforms)
    change = mean_abs_diff(out, tile)
    print(f"\n2. style_augmentation('colorjitter+fda') -> {parts}: change {change:.1f}")

    # 3. A seeded Compose reproduces its draws bit for bit.
    def draws(seed: int) -> list[np.ndarray]:
        pipeline = A.Compose(
            [he_color_jitter(p=0.8), RandStainNA(p=0.5), ScannerSimulator(p=0.5)],
            seed=seed,
        )
        return [pipeline(image=tile)["image"] for _ in range(4)]

    same = all(np.array_equal(a, b) for a, b in zip(draws(7), draws(7), strict=True))
    other = any(not np.array_equal(a, b) for a, b in zip(draws(7), draws(8), strict=True))
    print(f"\n3. A.Compose(seed=7) twice: identical draws = {same}; seed 8 differs = {other}")

    # 4. Scanner profiles: statistics on the whole bundled image.
    scans = simulate_paired_scans(image)
    ref = scans["reference"]
    print("\n4. Simulated scanners on the bundled image (SIMULATION, not real devices):")
    print(f"   {'profile':18s} {'MAD vs ref':>10s}  {'mean RGB':>17s}  {'std RGB':>17s}")
    for name, scan in scans.items():
        pixels = scan.reshape(-1, 3).astype(np.float64)
        mean = " ".join(f"{v:5.0f}" for v in pixels.mean(0))
        std = " ".join(f"{v:5.1f}" for v in pixels.std(0))
        print(f"   {name:18s} {mean_abs_diff(scan, ref):10.1f}  {mean}  {std}")
        print(f"   {'':18s} {SCANNER_PROFILES[name].description}")
    again = simulate_scanner(image, "pale-low-contrast")
    print(f"   deterministic: {np.array_equal(again, scans['pale-low-contrast'])}")

    # 5. Files: the preview grid and a scanner-paired copy of the tile.
    preview = save_augmentation_preview(image, out_dir / "augmentation_preview.png", seed=0)
    for name, scan in simulate_paired_scans(tile).items():
        atomic_write_image(out_dir / "paired_tile" / f"{name}.png", scan)
    paired_dir = out_dir / "paired_tile"
    print(f"\n5. Wrote {preview} and {len(SCANNER_PROFILES)} paired tiles in {paired_dir}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=Path("out") / "01_style_augmentations",
        help="Folder for the preview PNG and the paired tiles.",
    )
    main(parser.parse_args().out_dir)
