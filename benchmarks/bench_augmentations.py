"""Benchmark the style augmentations against named baselines, in one run.

Times every transform on a ``size x size`` RGB uint8 image (TIAToolbox's
bundled 1000 x 1000 H&E image resized to ``size``), as the median of
``--repeats`` runs after ``--warmup`` runs, two ways:

- ``apply``: the transform's deterministic ``apply`` with parameters sampled
  once beforehand (the augmentation itself);
- ``call``: the full ``A.Compose([t], seed=0)(image=...)`` call (parameter
  sampling, checks, ``apply``).

Each of ours is timed in alternation with its baseline (so both see the same
machine load) and the ratio ``baseline / ours`` is printed:
``A.FDA`` for our FDA, ``A.ColorJitter`` (albumentations' default ranges) for
the H&E ColorJitter preset, ``A.HEStain`` (its defaults) for the HEStain
preset, and ``randstainna_baseline`` (``benchmarks/baseline_randstainna.py``,
plain float64 NumPy/scikit-image) for RandStainNA. The scanner simulator has
no baseline. It also prints the FDA accuracy: the max abs difference of our
FDA to a float64 NumPy computation of the same definition, and of its
``window="albumentations"`` mode to ``A.FDA``.

Usage::

    python benchmarks/bench_augmentations.py [--size 1024] [--repeats 11] [--warmup 2]

Targets: our FDA >= 5x faster than ``A.FDA`` with max abs diff <= 1 grey
level; our RandStainNA >= 3x faster than the baseline.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import albumentations as A  # noqa: N812 - albumentations' conventional alias
import cv2
import numpy as np
import scipy
from tiatoolbox.data import stain_norm_target

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baseline_randstainna import randstainna_baseline

from tia_scanner_robust.augmentations.fda import FourierDomainAdaptation, fda_swap
from tia_scanner_robust.augmentations.presets import he_color_jitter, he_stain
from tia_scanner_robust.augmentations.randstainna import RandStainNA
from tia_scanner_robust.augmentations.scanner import SCANNER_PROFILES, ScannerSimulator

FDA_BETA = 0.05


# --------------------------------------------------------------------------- #
# FDA float64 reference (the definition, written independently of the package)
# --------------------------------------------------------------------------- #
def fda_float64(source: np.ndarray, reference: np.ndarray, beta: float) -> np.ndarray:
    """Yang and Soatto's FDA in float64 NumPy, per channel, not clipped.

    fftshift the spectrum, replace the amplitude on rows and columns
    ``c - b .. c + b`` (``c = n // 2``, ``b = floor(min(H, W) * beta)``) with the
    reference's, keep the source phase, inverse FFT, real part.
    """
    height, width = source.shape[:2]
    half = math.floor(min(height, width) * beta)
    out = np.empty(source.shape, dtype=np.float64)
    for channel in range(3):
        spec_s = np.fft.fftshift(np.fft.fft2(source[..., channel].astype(np.float64)))
        spec_t = np.fft.fftshift(np.fft.fft2(reference[..., channel].astype(np.float64)))
        amplitude, phase = np.abs(spec_s), np.angle(spec_s)
        if beta > 0:
            ch, cw = height // 2, width // 2
            rows = slice(max(0, ch - half), ch + half + 1)
            cols = slice(max(0, cw - half), cw + half + 1)
            amplitude[rows, cols] = np.abs(spec_t)[rows, cols]
        out[..., channel] = np.fft.ifft2(np.fft.ifftshift(amplitude * np.exp(1j * phase))).real
    return out


# --------------------------------------------------------------------------- #
# timing helpers
# --------------------------------------------------------------------------- #
def _median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1e3


def time_alternating(
    functions: list[object],
    repeats: int,
    warmup: int,
) -> list[float]:
    """Median milliseconds of each function, timed in alternation."""
    for fn in functions:
        for _ in range(warmup):
            fn()
    times: list[list[float]] = [[] for _ in functions]
    for _ in range(repeats):
        for index, fn in enumerate(functions):
            start = time.perf_counter()
            fn()
            times[index].append(time.perf_counter() - start)
    return [_median_ms(t) for t in times]


def fixed_params(transform: A.BasicTransform, data: dict[str, object]) -> dict[str, object]:
    """Sample one set of parameters the way ``BasicTransform.__call__`` does."""
    transform.set_random_seed(0)
    params = transform.get_params()
    params = transform.update_transform_params(params=params, data=data)
    params.update(transform.get_params_dependent_on_data(params=params, data=data))
    return params


def apply_fn(transform: A.BasicTransform, data: dict[str, object]) -> object:
    params = fixed_params(transform, data)
    image = data["image"]
    return lambda: transform.apply(image, **params)


def call_fn(transform: A.BasicTransform, data: dict[str, object]) -> object:
    compose = A.Compose([transform], seed=0)
    return lambda: compose(**data)


# --------------------------------------------------------------------------- #
# machine
# --------------------------------------------------------------------------- #
def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def print_machine() -> None:
    print("## Machine")
    print(f"- CPU: {_cpu_model()}, {os.cpu_count()} logical cores")
    print(f"- OS: {platform.platform()}")
    print(f"- Python {platform.python_version()}")
    print(
        f"- numpy {np.__version__}, scipy {scipy.__version__}, opencv {cv2.__version__}, "
        f"albumentations {A.__version__}, scikit-image {_version('scikit-image')}, "
        f"tia-scanner-robust {_version('tia-scanner-robust')}"
    )
    print(f"- load average at start: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


# --------------------------------------------------------------------------- #
# main
# --------------------------------------------------------------------------- #
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--size", type=int, default=1024, help="image side in pixels (default 1024)"
    )
    parser.add_argument(
        "--repeats", type=int, default=11, help="timed runs per transform (default 11)"
    )
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first (default 2)")
    args = parser.parse_args(argv)
    if args.size < 16 or args.repeats < 1 or args.warmup < 0:
        parser.error("need --size >= 16, --repeats >= 1 and --warmup >= 0")

    print_machine()
    size = args.size
    image = cv2.resize(stain_norm_target(), (size, size), interpolation=cv2.INTER_LINEAR)
    reference = np.ascontiguousarray(np.rot90(image))  # other content, same size
    data = {"image": image}
    meta = {"image": image, "fda_reference": [reference]}
    print(
        f"\nImage: the bundled H&E image resized to {size} x {size} RGB uint8; "
        f"median of {args.repeats} runs after {args.warmup} warm-up runs (ms)."
    )

    rows: list[tuple[str, str, float, str, float | None]] = []

    def pair(name: str, mode: str, ours: object, base_name: str, base: object) -> None:
        ours_ms, base_ms = time_alternating([ours, base], args.repeats, args.warmup)
        rows.append((name, mode, ours_ms, base_name, base_ms))
        print(f"  {name} [{mode}]: {ours_ms:.1f} ms vs {base_name} {base_ms:.1f} ms", flush=True)

    def alone(name: str, mode: str, ours: object) -> None:
        (ours_ms,) = time_alternating([ours], args.repeats, args.warmup)
        rows.append((name, mode, ours_ms, "-", None))
        print(f"  {name} [{mode}]: {ours_ms:.1f} ms", flush=True)

    print("\nTiming ...")
    # FDA: apply with a fixed beta and reference, then the full call
    a_fda = A.FDA(beta_limit=(0.01, FDA_BETA), metadata_key="fda_reference", p=1.0)
    a_fda_apply = lambda: a_fda.apply(image, target_image=reference, beta=FDA_BETA)  # noqa: E731
    pair(
        "FDA (metadata reference)",
        "apply",
        lambda: fda_swap(image, reference, FDA_BETA),
        "A.FDA",
        a_fda_apply,
    )
    bank = FourierDomainAdaptation(reference_images=[reference], beta_range=(0.01, FDA_BETA), p=1.0)
    bank_apply = lambda: bank.apply(image, beta=FDA_BETA, reference=None, reference_index=0)  # noqa: E731
    pair("FDA (bank, cached amplitude)", "apply", bank_apply, "A.FDA", a_fda_apply)
    ours_fda = FourierDomainAdaptation(beta_range=(0.01, FDA_BETA), p=1.0)
    pair("FDA (metadata reference)", "call", call_fn(ours_fda, meta), "A.FDA", call_fn(a_fda, meta))

    # ColorJitter and HEStain presets vs albumentations' defaults
    for mode, make in (("apply", apply_fn), ("call", call_fn)):
        pair(
            "ColorJitter (he_color_jitter)",
            mode,
            make(he_color_jitter(p=1.0), data),
            "A.ColorJitter()",
            make(A.ColorJitter(p=1.0), data),
        )
    for mode, make in (("apply", apply_fn), ("call", call_fn)):
        pair(
            "HEStain (he_stain preset)",
            mode,
            make(he_stain(p=1.0), data),
            "A.HEStain()",
            make(A.HEStain(p=1.0), data),
        )

    # RandStainNA per colour space vs the float64 baseline (sampling included in both)
    for space in ("LAB", "HSV", "HED"):
        transform = RandStainNA(color_spaces=[space], p=1.0)
        template = transform.active_templates[space]
        rng = np.random.default_rng(0)
        baseline = lambda template=template, rng=rng: randstainna_baseline(image, template, rng)  # noqa: E731
        pair(
            f"RandStainNA ({space})",
            "apply",
            apply_fn(transform, data),
            "randstainna_baseline",
            baseline,
        )
        pair(
            f"RandStainNA ({space})",
            "call",
            call_fn(transform, data),
            "randstainna_baseline",
            baseline,
        )

    # scanner simulator: no baseline
    first_profile = next(iter(SCANNER_PROFILES))
    alone(
        f"ScannerSimulator ({first_profile})",
        "apply",
        apply_fn(ScannerSimulator(profiles=[first_profile], p=1.0), data),
    )
    alone("ScannerSimulator (random profile)", "call", call_fn(ScannerSimulator(p=1.0), data))

    print("\n## Results (ms; ratio = baseline / ours, > 1 means ours is faster)\n")
    print("| transform | timed | ours (ms) | baseline | baseline (ms) | ratio |")
    print("|---|---|---:|---|---:|---:|")
    for name, mode, ours_ms, base_name, base_ms in rows:
        ratio = f"{base_ms / ours_ms:.1f}x" if base_ms is not None else "-"
        base_txt = f"{base_ms:.1f}" if base_ms is not None else "-"
        print(f"| {name} | {mode} | {ours_ms:.1f} | {base_name} | {base_txt} | {ratio} |")

    # accuracy of our FDA
    expected = np.clip(np.rint(fda_float64(image, reference, FDA_BETA)), 0, 255)
    ours_out = fda_swap(image, reference, FDA_BETA).astype(np.float64)
    albu_out = a_fda.apply(image, target_image=reference, beta=FDA_BETA).astype(np.float64)
    ours_albu = fda_swap(image, reference, FDA_BETA, window="albumentations").astype(np.float64)
    print(f"\n## FDA accuracy ({size} x {size}, beta = {FDA_BETA})\n")
    print(
        "- ours (window='centered') vs float64 NumPy of the same definition: "
        f"max abs diff {np.abs(ours_out - expected).max():.0f} grey level(s), "
        f"{np.mean(ours_out != expected) * 100:.4f}% of values differ"
    )
    print(
        "- ours (window='albumentations') vs A.FDA: "
        f"max abs diff {np.abs(ours_albu - albu_out).max():.0f} grey level(s) "
        "(A.FDA truncates to uint8, ours rounds)"
    )
    print(f"- load average at end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
