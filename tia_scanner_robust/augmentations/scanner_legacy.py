"""The version-1 scanner profiles, kept to reproduce results computed with them.

Version 1 (before issue 11) was tuned to the *size* of published scanner
differences only; against real multi-scanner data it darkened, yellowed and
over-sharpened (``cool-sharp`` twice as sharp as any real scan) and blurred
2-5 times more than real scanners. :data:`SCANNER_PROFILES_V1` holds those
parameters unchanged, under the same names, for reproducing earlier numbers
(e.g. ``ScannerSimulator(list(SCANNER_PROFILES_V1.values()))``); new work
should use :data:`~tia_scanner_robust.augmentations.scanner.SCANNER_PROFILES`.

Examples:
    >>> SCANNER_PROFILES_V1["cool-sharp"].sharpen_amount
    0.6
    >>> list(SCANNER_PROFILES_V1)[0]
    'reference'

"""

from __future__ import annotations

from tia_scanner_robust.augmentations.scanner import ScannerProfile

__all__ = ["SCANNER_PROFILES_V1"]

#: The version-1 profiles (same names as the current ones; different parameters).
SCANNER_PROFILES_V1: dict[str, ScannerProfile] = {
    profile.name: profile
    for profile in (
        ScannerProfile(
            name="reference",
            description="Neutral reference scanner: original colours, high-quality JPEG.",
            jpeg_quality=95,
        ),
        ScannerProfile(
            name="cool-sharp",
            description="Cool (bluish) white point, crisp optics with sharpening, JPEG 85.",
            color_matrix=((1.06, -0.04, -0.02), (-0.02, 1.04, -0.02), (-0.03, -0.03, 1.06)),
            white_balance=(0.88, 1.0, 1.08),
            gamma=(1.14, 1.04, 0.92),
            sharpen_amount=0.6,
            sharpen_sigma=1.0,
            noise_shot=4e-5,
            noise_read=0.002,
            jpeg_quality=85,
            shift=(0.25, -0.15),
        ),
        ScannerProfile(
            name="warm-soft",
            description="Warm illuminant (less blue), lifted blacks, soft optics, JPEG 80.",
            color_matrix=((1.0, 0.03, -0.03), (0.02, 0.98, 0.0), (-0.02, 0.06, 0.96)),
            white_balance=(1.0, 0.94, 0.76),
            gamma=(0.8, 0.84, 1.0),
            levels=(0.1, 1.0),
            saturation=0.9,
            blur_sigma=1.0,
            noise_shot=8e-5,
            noise_read=0.003,
            jpeg_quality=80,
            shift=(-0.3, 0.2),
        ),
        ScannerProfile(
            name="saturated-dark",
            description="Darker, more saturated magenta rendering, JPEG 90.",
            color_matrix=((1.10, -0.06, -0.04), (-0.06, 1.12, -0.06), (-0.02, -0.08, 1.10)),
            white_balance=(0.76, 0.76, 0.76),
            gamma=(1.22, 1.08, 1.15),
            saturation=1.15,
            noise_shot=5e-5,
            noise_read=0.002,
            jpeg_quality=90,
            shift=(0.15, 0.3),
        ),
        ScannerProfile(
            name="pale-low-contrast",
            description="Bright, washed-out rendering with markedly compressed contrast, JPEG 75.",
            color_matrix=((0.98, 0.02, 0.0), (0.03, 0.95, 0.02), (0.0, 0.03, 0.97)),
            white_balance=(1.0, 1.0, 1.0),
            gamma=(0.82, 0.8, 0.82),
            levels=(0.28, 1.0),
            saturation=0.75,
            blur_sigma=0.6,
            noise_shot=1.2e-4,
            noise_read=0.004,
            jpeg_quality=75,
            shift=(-0.2, -0.35),
        ),
    )
}
