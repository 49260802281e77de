"""The scanner simulator on a batch, in torch: built-in and fitted profiles.

Runs the stages of :func:`~tia_scanner_robust.augmentations.scanner.simulate_scanner`
(see :mod:`tia_scanner_robust.augmentations.scanner` for the model) on a
``(B, 3, H, W)`` batch on any device, one profile per sample:

1. sRGB decode to linear light;
2. sub-pixel stage shift: bicubic (``A = -0.75``) with OpenCV's 1/32-pixel
   position quantisation and reflected border, i.e. ``cv2.warpAffine``;
3. Gaussian optical blur (OpenCV's kernel size and weights, reflected border);
4. Poisson-Gaussian sensor noise in linear light;
5. white balance and colour matrix; sRGB encode;
6. per-channel gamma, output levels, saturation about the Rec. 709 luma;
7. unsharp-mask sharpening; clip; 8-bit quantisation for uint8 batches;
8. JPEG: **CPU only** (OpenCV encode/decode). ``jpeg="skip"`` (default)
   leaves it out; ``jpeg="cpu"`` round-trips each image through the CPU,
   which costs a device-host copy per image.

Differences from the NumPy version, by design: the sensor noise is drawn
from the call's :class:`torch.Generator` (an augmentation), not seeded by the
image content, so the same tile gives a different scan on every call; with
noise and JPEG off, the output matches
:func:`~tia_scanner_robust.augmentations.scanner.simulate_scanner` within one
grey level.

Examples:
    >>> import torch
    >>> from tia_scanner_robust.augmentations.scanner import ScannerProfile
    >>> x = torch.full((2, 3, 16, 16), 128, dtype=torch.uint8)
    >>> simulate_scanner_batch(x, ScannerProfile("identity")).equal(x)
    True
    >>> BatchScannerSimulator(["warm-soft", "cool-sharp"])(x).shape
    torch.Size([2, 3, 16, 16])

"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from tia_scanner_robust._validation import check_in_choices
from tia_scanner_robust.augmentations.batched._backend import check_backend, map_images, use_opencv
from tia_scanner_robust.augmentations.batched._common import (
    check_batch,
    device_generator,
    from_levels,
    randint,
    select_rows,
    to_levels,
)
from tia_scanner_robust.augmentations.batched.colorspace import srgb_decode, srgb_encode
from tia_scanner_robust.augmentations.scanner import (
    SCANNER_PROFILES,
    ScannerProfile,
    get_scanner_profile,
    render_scan,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["JPEG_MODES", "BatchScannerSimulator", "simulate_scanner_batch"]

#: What the batched simulator does with a profile's JPEG stage.
JPEG_MODES: tuple[str, ...] = ("skip", "cpu")
_LUMA = (0.2126, 0.7152, 0.0722)
_CUBIC_A = -0.75


def _reflect_pad(x: torch.Tensor, pads: tuple[int, int, int, int]) -> torch.Tensor:
    """``BORDER_REFLECT_101`` padding (left, right, top, bottom)."""
    if max(pads) == 0:
        return x
    if max(pads[:2]) >= x.shape[-1] or max(pads[2:]) >= x.shape[-2]:
        msg = f"Image of size {tuple(x.shape[-2:])} is too small for a border of {max(pads)} px."
        raise ValueError(msg)
    return F.pad(x, pads, mode="reflect")


def _cubic_weights(t: float) -> list[float]:
    """OpenCV's ``interpolateCubic`` coefficients at fractional position ``t``."""
    a = _CUBIC_A
    c0 = ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a
    c1 = ((a + 2) * t - (a + 3)) * t * t + 1
    c2 = ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1
    return [c0, c1, c2, 1.0 - c0 - c1 - c2]


def _shift_axis(x: torch.Tensor, shift: float, dim: int) -> torch.Tensor:
    """``out[i] = in(i - shift)`` along ``dim`` (-1 or -2) as ``cv2.warpAffine`` samples it."""
    if shift == 0:
        return x
    # warpAffine inverts [1, 0, shift]: source = i - shift, rounded to 1/32 px (AB_BITS = 10)
    scaled = (round(-shift * 1024) + 16) >> 5
    offset, fraction = scaled >> 5, (scaled & 31) / 32.0
    weights = _cubic_weights(fraction)
    lo, hi = max(0, 1 - offset), max(0, offset + 2)
    pads = (lo, hi, 0, 0) if dim == -1 else (0, 0, lo, hi)
    padded = _reflect_pad(x, pads)
    size = x.shape[dim]
    out = torch.zeros_like(x)
    for k, weight in enumerate(weights):
        start = lo + offset + k - 1
        out += weight * padded.narrow(dim, start, size)
    return out


def _gaussian_kernel(sigma: float, device: torch.device) -> torch.Tensor:
    """``cv2.getGaussianKernel`` for float images (size ``round(8 sigma + 1) | 1``)."""
    size = int(np.rint(sigma * 8 + 1)) | 1
    kernel = cv2.getGaussianKernel(size, sigma, cv2.CV_32F).reshape(-1)
    return torch.from_numpy(kernel).to(device)


def _gaussian(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with reflected border, per channel."""
    kernel = _gaussian_kernel(sigma, x.device)
    half = kernel.numel() // 2
    channels = x.shape[1]
    padded = _reflect_pad(x, (half, half, half, half))
    horizontal = kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    vertical = kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    out = F.conv2d(padded, horizontal, groups=channels)
    return F.conv2d(out, vertical, groups=channels)


def _jpeg_cpu(levels: torch.Tensor, quality: int) -> torch.Tensor:
    """JPEG round trip of integer RGB levels, image by image, on the CPU."""
    out = torch.empty_like(levels)
    for i, image in enumerate(levels.round().clamp(0, 255).to(torch.uint8).cpu()):
        rgb = image.permute(1, 2, 0).numpy()
        ok, buffer = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        if not ok:  # pragma: no cover - OpenCV always encodes uint8 RGB
            msg = "OpenCV failed to JPEG-encode the simulated scan."
            raise RuntimeError(msg)
        decoded = np.ascontiguousarray(cv2.imdecode(buffer, cv2.IMREAD_COLOR)[..., ::-1])
        out[i] = torch.from_numpy(decoded).permute(2, 0, 1).to(levels)
    return out


def _tensor(values: Any, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32, device=like.device)


def _colour_and_tone(linear: torch.Tensor, profile: ScannerProfile) -> torch.Tensor:
    """Stages 5-7 on linear light; returns encoded values in ``[0, 1]``."""
    matrix = np.asarray(profile.color_matrix, dtype=np.float32)
    gains = np.asarray(profile.white_balance, dtype=np.float32)
    if not (np.array_equal(matrix, np.eye(3)) and np.all(gains == 1)):
        linear = linear * _tensor(gains, linear).view(1, 3, 1, 1)
        linear = torch.einsum("ij,bjhw->bihw", _tensor(matrix, linear), linear)
    encoded = srgb_encode(linear)
    gamma = np.asarray(profile.gamma, dtype=np.float32)
    if np.any(gamma != 1):
        encoded = encoded.pow(_tensor(gamma, encoded).view(1, 3, 1, 1))
    black, white = profile.levels
    if black != 0 or white != 1:
        encoded = black + (white - black) * encoded
    if profile.saturation != 1:
        luma = torch.einsum("j,bjhw->bhw", _tensor(_LUMA, encoded), encoded).unsqueeze(1)
        encoded = luma + profile.saturation * (encoded - luma)
    if profile.sharpen_amount > 0:
        blurred = _gaussian(encoded, profile.sharpen_sigma)
        encoded = encoded + profile.sharpen_amount * (encoded - blurred)
    return encoded.clamp(0.0, 1.0)


def simulate_scanner_batch(
    images: torch.Tensor,
    profile: str | Path | ScannerProfile,
    *,
    generator: torch.Generator | None = None,
    jpeg: str = "skip",
) -> torch.Tensor:
    """Render every image of a batch through one simulated scanner.

    Args:
        images: ``(B, 3, H, W)`` uint8 or float in ``[0, 1]``.
        profile: A :class:`~tia_scanner_robust.augmentations.scanner.ScannerProfile`,
            a name of :data:`~tia_scanner_robust.augmentations.scanner.SCANNER_PROFILES`
            or a fitted profile file (``.yaml``).
        generator: Generator of the sensor noise (``None``: global).
        jpeg: ``"skip"`` (default) or ``"cpu"`` (see the module docstring).

    Returns:
        The simulated scans, same dtype and device (uint8 quantised; float
        not quantised unless JPEG runs).

    """
    images = check_batch(images)
    check_in_choices(jpeg, JPEG_MODES, "jpeg")
    profile = get_scanner_profile(profile)
    linear = srgb_decode(to_levels(images) / 255.0)
    dx, dy = profile.shift
    linear = _shift_axis(_shift_axis(linear, dx, -1), dy, -2)
    if profile.blur_sigma > 0:
        linear = _gaussian(linear, profile.blur_sigma)
    if profile.noise_shot > 0 or profile.noise_read > 0:
        noise_generator = device_generator(generator, images.device)
        std = torch.sqrt(profile.noise_shot * linear.clamp_min(0.0) + profile.noise_read**2)
        noise = torch.randn(
            linear.shape, generator=noise_generator, device=images.device, dtype=linear.dtype
        )
        linear = linear + std * noise
    levels = _colour_and_tone(linear, profile) * 255.0
    quantise = images.dtype == torch.uint8 or (jpeg == "cpu" and profile.jpeg_quality is not None)
    if quantise:
        levels = levels.round()
    if jpeg == "cpu" and profile.jpeg_quality is not None:
        levels = _jpeg_cpu(levels, profile.jpeg_quality)
    return from_levels(levels, images)


def _resolve(spec: str | Path | ScannerProfile | dict[str, Any]) -> ScannerProfile:
    if isinstance(spec, dict):
        return ScannerProfile(**spec)
    return get_scanner_profile(spec)


class BatchScannerSimulator:
    """Render each sample of a batch through a randomly chosen simulated scanner.

    Args:
        profiles: Names, :class:`~tia_scanner_robust.augmentations.scanner.ScannerProfile`
            objects, their dicts or fitted profile files; ``None``: every
            registered profile.
        jpeg: ``"skip"`` (default; JPEG is CPU-only) or ``"cpu"``.
        backend: ``"auto"`` (OpenCV per sample on a CPU batch, with the noise
            drawn from the call's generator; torch otherwise), ``"torch"`` or
            ``"opencv"``.

    Examples:
        >>> import torch
        >>> sim = BatchScannerSimulator(jpeg="skip")
        >>> sim.profile_names[0]
        'reference'

    """

    def __init__(
        self,
        profiles: Sequence[str | Path | ScannerProfile | dict[str, Any]] | None = None,
        jpeg: str = "skip",
        backend: str = "auto",
    ) -> None:
        self.backend = check_backend(backend)
        specs = list(SCANNER_PROFILES) if profiles is None else profiles
        if isinstance(specs, (str, Path, ScannerProfile, dict)):
            specs = [specs]
        self.profiles: tuple[ScannerProfile, ...] = tuple(_resolve(s) for s in specs)
        if not self.profiles:
            msg = "profiles must not be empty (use None for every registered profile)."
            raise ValueError(msg)
        self.jpeg = check_in_choices(jpeg, JPEG_MODES, "jpeg")

    @property
    def profile_names(self) -> list[str]:
        """Names of the profiles drawn from, in order."""
        return [p.name for p in self.profiles]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(profiles={self.profile_names}, jpeg={self.jpeg!r})"

    def sample(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Draw a profile index per sample ``(B,)`` and a noise seed (on the CPU)."""
        cpu = torch.device("cpu")
        index = randint(len(self.profiles), (batch_size,), generator, cpu)
        seed = randint(2**62, (1,), generator, cpu)
        return {"profile_index": index, "noise_seed": seed}

    def apply(self, images: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """Apply given parameters (from :meth:`sample`); same dtype and device."""
        images = check_batch(images)
        if use_opencv(self.backend, images):
            chosen = [self.profiles[int(k)] for k in params["profile_index"]]
            rng = np.random.default_rng(int(params["noise_seed"].item()))
            return map_images(
                images, lambda i, image: render_scan(image, chosen[i], rng, jpeg=self.jpeg == "cpu")
            )
        out = images.clone()
        index = params["profile_index"].to(images.device)
        noise = torch.Generator().manual_seed(int(params["noise_seed"].item()))
        for k, profile in enumerate(self.profiles):
            rows = select_rows(index == k)
            if rows.numel():
                out[rows] = simulate_scanner_batch(
                    images[rows], profile, generator=noise, jpeg=self.jpeg
                )
        return out

    def __call__(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Augment a ``(B, 3, H, W)`` batch (uint8, or float in ``[0, 1]``)."""
        images = check_batch(images)
        return self.apply(images, self.sample(images.shape[0], generator))
