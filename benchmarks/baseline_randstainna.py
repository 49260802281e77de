"""Straightforward float64 RandStainNA: the speed and correctness baseline.

Readable per-image NumPy / scikit-image code with the same maths as
:class:`tia_scanner_robust.augmentations.RandStainNA`: convert to the colour
space in float64 (8-bit convention: LAB as ``L * 255 / 100, a + 128, b + 128``,
HSV as ``H in [0, 180), S, V in [0, 255]``, HED as ``skimage.color.rgb2hed``),
draw the virtual template, Reinhard transfer channel by channel, clip to the
colour space's domain, convert back and clip.

Run it to time it alone on a 1024 x 1024 image::

    python benchmarks/baseline_randstainna.py

"""

from __future__ import annotations

import math
import warnings

import numpy as np
from skimage import color

from tia_scanner_robust.augmentations.colorspace import MIN_IMAGE_STD
from tia_scanner_robust.augmentations.randstainna import MIN_STD_FRACTION, RandStainNATemplate

__all__ = ["baseline_transfer", "randstainna_baseline"]


def _to_space(rgb: np.ndarray, space: str) -> np.ndarray:
    """float64 RGB in [0, 1] -> colour values in the 8-bit convention."""
    if space == "LAB":
        lab = color.rgb2lab(rgb)
        return np.stack(
            [lab[..., 0] * 255.0 / 100.0, lab[..., 1] + 128.0, lab[..., 2] + 128.0], axis=-1
        )
    if space == "HSV":
        return color.rgb2hsv(rgb) * np.array([180.0, 255.0, 255.0])
    return color.rgb2hed(rgb)


def _from_space(values: np.ndarray, space: str) -> np.ndarray:
    """Colour values (clipped to the space's domain) -> float64 RGB in [0, 1]."""
    if space == "LAB":
        values = np.clip(values, 0.0, 255.0)
        lab = np.stack(
            [values[..., 0] * 100.0 / 255.0, values[..., 1] - 128.0, values[..., 2] - 128.0],
            axis=-1,
        )
        with warnings.catch_warnings():  # out-of-gamut colours are clipped, as intended
            warnings.simplefilter("ignore")
            rgb = color.lab2rgb(lab)
    elif space == "HSV":
        hue = np.mod(values[..., 0], 180.0) / 180.0
        sat = np.clip(values[..., 1], 0.0, 255.0) / 255.0
        val = np.clip(values[..., 2], 0.0, 255.0) / 255.0
        rgb = color.hsv2rgb(np.stack([hue, sat, val], axis=-1))
    else:
        rgb = color.hed2rgb(np.maximum(values, 0.0))
    return np.clip(rgb, 0.0, 1.0)


def baseline_transfer(image: np.ndarray, space: str, target_mean, target_std) -> np.ndarray:
    """Reinhard transfer of ``image`` (uint8 or float32 RGB) to the target stats in ``space``."""
    rgb = image.astype(np.float64) / 255.0 if image.dtype == np.uint8 else image.astype(np.float64)
    values = _to_space(rgb, space)
    out = np.empty_like(values)
    for c in range(3):
        channel = values[..., c]
        mu, sigma = channel.mean(), channel.std()
        gain = 0.0 if sigma < MIN_IMAGE_STD[space] else target_std[c] / sigma  # constant channel
        out[..., c] = (channel - mu) * gain + target_mean[c]
    rgb = _from_space(out, space)
    if image.dtype == np.uint8:
        return np.round(rgb * 255.0).astype(np.uint8)
    return rgb.astype(np.float32)


def _draw(rng: np.random.Generator, family: str, mean: float, std: float) -> float:
    if family == "laplace":
        return rng.laplace(mean, std / math.sqrt(2.0))
    if family == "uniform":
        return rng.uniform(mean - math.sqrt(3.0) * std, mean + math.sqrt(3.0) * std)
    return rng.normal(mean, std)


def randstainna_baseline(
    image: np.ndarray,
    template: RandStainNATemplate,
    rng: np.random.Generator,
    std_hyper: float = -0.3,
    distribution: str | None = None,
) -> np.ndarray:
    """One RandStainNA augmentation of ``image`` with ``template`` (float64 reference)."""
    target_mean, target_std = [], []
    for avg, std in zip(template.channel_mean, template.channel_std, strict=True):
        target_mean.append(
            _draw(rng, distribution or avg.distribution, avg.mean, avg.std * (1 + std_hyper))
        )
        sigma = _draw(rng, distribution or std.distribution, std.mean, std.std * (1 + std_hyper))
        target_std.append(max(sigma, MIN_STD_FRACTION * std.mean))
    return baseline_transfer(image, template.color_space, target_mean, target_std)


if __name__ == "__main__":
    import statistics
    import time

    import cv2
    from tiatoolbox.data import stain_norm_target

    from tia_scanner_robust.augmentations.randstainna import default_randstainna_template

    tile = cv2.resize(stain_norm_target(), (1024, 1024), interpolation=cv2.INTER_LINEAR)
    generator = np.random.default_rng(0)
    for name in ("LAB", "HSV", "HED"):
        tmpl = default_randstainna_template(name)
        times = []
        for _ in range(5):
            start = time.perf_counter()
            randstainna_baseline(tile, tmpl, generator)
            times.append(time.perf_counter() - start)
        print(f"baseline {name}: median {statistics.median(times) * 1000:.1f} ms")
