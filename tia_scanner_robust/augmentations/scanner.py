"""Deterministic scanner simulator: what a different scanner does to the same tissue.

A :class:`ScannerProfile` describes one *simulated* whole-slide scanner as a
small imaging pipeline, applied in the order light travels through a real
device (all stages optional; a neutral stage is skipped):

1. **Linearise** the gamma-encoded input with the sRGB transfer function,
   ``L = srgb_decode(I)``.
2. **Stage offset**: sub-pixel translation ``shift = (dx, dy)`` (bicubic
   ``cv2.warpAffine``, reflected border), small so paired scans stay aligned.
3. **Optics**: Gaussian point-spread function of standard deviation
   ``blur_sigma`` pixels, in linear light.
4. **Sensor noise**, Poisson-Gaussian in linear light,
   ``L <- L + sqrt(noise_shot * L + noise_read**2) * N(0, 1)``, drawn from a
   generator seeded by the profile and the image content, so the same tissue
   through the same profile gives the same scan bit for bit.
5. **Colour response** in linear light: white point gains ``w`` and a 3x3
   colour matrix ``M``, ``L <- clip(M @ (w * L), 0, 1)``.
6. **Tone** in encoded values: ``v = srgb_encode(L) ** gamma_c`` per channel,
   output levels ``v <- black + (white - black) * v`` (contrast compression
   when ``black > 0``) and saturation about the Rec. 709 luma
   ``v <- Y + saturation * (v - Y)``.
7. **Sharpening** (unsharp mask) ``v <- v + amount * (v - G_sigma * v)``.
8. **Quantisation** to 8 bits and **JPEG** at ``jpeg_quality`` (OpenCV
   encode/decode).

The profiles in :data:`SCANNER_PROFILES` are a SIMULATION inspired by the size
and direction of published scanner differences (Wilm et al., 2023; the
SCORPION data set), not a calibration of any real device. The first profile,
``"reference"``, is the neutral scanner against which the others are compared.
A profile fitted from real registered pairs
(:func:`~tia_scanner_robust.augmentations.scanner_fit.fit_scanner_profile`,
``tia-scanner-robust fit-scanner-profile``) is saved as YAML
(:func:`save_scanner_profile`) and accepted wherever a profile name is.

Examples:
    >>> import numpy as np
    >>> from tia_scanner_robust.augmentations.scanner import simulate_scanner
    >>> tile = np.full((32, 32, 3), (200, 120, 170), np.uint8)
    >>> scan = simulate_scanner(tile, "pale-low-contrast")
    >>> scan.shape, scan.dtype
    ((32, 32, 3), dtype('uint8'))
    >>> bool((simulate_scanner(tile, "pale-low-contrast") == scan).all())
    True

"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from albumentations.core.transforms_interface import ImageOnlyTransform
from pydantic import field_validator

from tia_scanner_robust._validation import check_in_choices, check_rgb_image

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = [
    "SCANNER_PROFILES",
    "ScannerProfile",
    "ScannerSimulator",
    "get_scanner_profile",
    "is_profile_path",
    "load_scanner_profile",
    "render_scan",
    "save_scanner_profile",
    "simulate_paired_scans",
    "simulate_scanner",
]

_IDENTITY_MATRIX = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
#: Rec. 709 luma weights, used for the saturation stage.
_LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
#: Largest sub-pixel shift (px) a profile may apply: paired scans must stay aligned.
MAX_SHIFT_PX = 2.0


def _as_float_tuple(value: Any, name: str, length: int) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in value)
    except (TypeError, ValueError) as exc:
        msg = f"{name} must be a sequence of {length} numbers, got {value!r}."
        raise ValueError(msg) from exc
    if len(values) != length:
        msg = f"{name} must have {length} values, got {len(values)}."
        raise ValueError(msg)
    if not all(math.isfinite(v) for v in values):
        msg = f"{name} must be finite, got {values}."
        raise ValueError(msg)
    return values


@dataclass(frozen=True)
class ScannerProfile:
    """Parameters of one simulated scanner (see the module docstring for the model).

    Every parameter defaults to the neutral value, so ``ScannerProfile("x")``
    with ``jpeg_quality=None`` is the identity up to 8-bit rounding.

    Args:
        name: Short identifier (used to seed the noise and in file names).
        description: One line describing the look.
        color_matrix: 3x3 matrix applied to linear RGB (rows = output channels).
            Rows summing to 1 keep neutral greys neutral.
        white_balance: Per-channel gains on linear RGB (illuminant / white point).
        gamma: Per-channel exponent on the sRGB-encoded value, ``v ** gamma``
            (> 1 darkens mid-tones).
        levels: Output ``(black, white)`` levels in encoded ``[0, 1]`` units;
            ``black > 0`` compresses contrast (veiling glare, lifted blacks).
        saturation: Scale of the chroma about the Rec. 709 luma (1 = unchanged).
        blur_sigma: Standard deviation (px) of the Gaussian optical PSF.
        sharpen_amount: Unsharp-mask amount (0 = off).
        sharpen_sigma: Unsharp-mask Gaussian sigma (px).
        noise_shot: Signal-dependent noise variance per unit linear intensity.
        noise_read: Signal-independent noise standard deviation (linear units).
        jpeg_quality: JPEG quality in ``[1, 100]``, or ``None`` for no JPEG.
        shift: Sub-pixel stage offset ``(dx, dy)`` in px, each at most
            ``MAX_SHIFT_PX`` in absolute value.

    Raises:
        ValueError: If a parameter is out of range (the message names it).

    Examples:
        >>> p = ScannerProfile("soft", blur_sigma=1.0, jpeg_quality=80)
        >>> p.blur_sigma, p.jpeg_quality
        (1.0, 80)
        >>> ScannerProfile("bad", blur_sigma=-1.0)
        Traceback (most recent call last):
        ...
        ValueError: ScannerProfile 'bad': blur_sigma must be >= 0, got -1.0.

    """

    name: str
    description: str = ""
    color_matrix: tuple[tuple[float, float, float], ...] = _IDENTITY_MATRIX
    white_balance: tuple[float, float, float] = (1.0, 1.0, 1.0)
    gamma: tuple[float, float, float] = (1.0, 1.0, 1.0)
    levels: tuple[float, float] = (0.0, 1.0)
    saturation: float = 1.0
    blur_sigma: float = 0.0
    sharpen_amount: float = 0.0
    sharpen_sigma: float = 1.0
    noise_shot: float = 0.0
    noise_read: float = 0.0
    jpeg_quality: int | None = None
    shift: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        """Validate and normalise the parameters (sequences become tuples)."""
        if not isinstance(self.name, str) or not self.name.strip():
            msg = f"ScannerProfile name must be a non-empty string, got {self.name!r}."
            raise ValueError(msg)
        if not isinstance(self.description, str):
            msg = f"ScannerProfile {self.name!r}: description must be a string."
            raise TypeError(msg)
        label = f"ScannerProfile {self.name!r}"
        self._validate_colour(label)
        self._validate_scalars(label)
        self._validate_jpeg(label)

    def _validate_colour(self, label: str) -> None:
        matrix = None
        if _is_numeric(self.color_matrix):
            matrix = np.asarray(self.color_matrix, dtype=np.float64)
        if matrix is None or matrix.shape != (3, 3) or not np.isfinite(matrix).all():
            msg = f"{label}: color_matrix must be a finite 3x3 matrix, got {self.color_matrix!r}."
            raise ValueError(msg)
        self._set("color_matrix", tuple(tuple(float(v) for v in row) for row in matrix))
        white_balance = _as_float_tuple(self.white_balance, f"{label}: white_balance", 3)
        gamma = _as_float_tuple(self.gamma, f"{label}: gamma", 3)
        levels = _as_float_tuple(self.levels, f"{label}: levels", 2)
        shift = _as_float_tuple(self.shift, f"{label}: shift", 2)
        if min(white_balance) <= 0:
            msg = f"{label}: white_balance gains must be > 0, got {white_balance}."
            raise ValueError(msg)
        if min(gamma) <= 0:
            msg = f"{label}: gamma must be > 0, got {gamma}."
            raise ValueError(msg)
        if not 0.0 <= levels[0] < levels[1] <= 1.0:
            msg = f"{label}: levels must satisfy 0 <= black < white <= 1, got {levels}."
            raise ValueError(msg)
        if max(abs(s) for s in shift) > MAX_SHIFT_PX:
            msg = f"{label}: shift must be at most {MAX_SHIFT_PX} px per axis, got {shift}."
            raise ValueError(msg)
        self._set("white_balance", white_balance)
        self._set("gamma", gamma)
        self._set("levels", levels)
        self._set("shift", shift)

    def _validate_scalars(self, label: str) -> None:
        names = ("saturation", "blur_sigma", "sharpen_amount", "sharpen_sigma")
        for field_name in (*names, "noise_shot", "noise_read"):
            value = getattr(self, field_name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                msg = f"{label}: {field_name} must be a number, got {value!r}."
                raise TypeError(msg)
            if not math.isfinite(value) or value < 0:
                msg = f"{label}: {field_name} must be >= 0, got {value}."
                raise ValueError(msg)
            self._set(field_name, float(value))
        if self.sharpen_sigma <= 0:
            msg = f"{label}: sharpen_sigma must be > 0, got {self.sharpen_sigma}."
            raise ValueError(msg)

    def _validate_jpeg(self, label: str) -> None:
        quality = self.jpeg_quality
        if quality is None:
            return
        if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)):
            msg = f"{label}: jpeg_quality must be an int in [1, 100] or None, got {quality!r}."
            raise TypeError(msg)
        if not 1 <= quality <= 100:
            msg = f"{label}: jpeg_quality must be in [1, 100], got {quality}."
            raise ValueError(msg)
        self._set("jpeg_quality", int(quality))

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        """Return the parameters as a JSON-serialisable dict.

        Examples:
            >>> ScannerProfile("x", jpeg_quality=90).to_dict()["jpeg_quality"]
            90

        """
        data = dataclasses.asdict(self)
        data["color_matrix"] = [list(row) for row in self.color_matrix]
        for key in ("white_balance", "gamma", "levels", "shift"):
            data[key] = list(data[key])
        return data


def _is_numeric(value: object) -> bool:
    try:
        np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return True


#: The simulated scanners, in canonical order; the first is the reference.
#: Version 2 (issue 11): lighter, bluer, less saturated, lower in contrast and
#: softer are the directions real scanners took against a reference scan; blur
#: and sharpening stay within what real scans showed. The version-1 parameters
#: (used for the results published before) are in
#: :data:`~tia_scanner_robust.augmentations.scanner_legacy.SCANNER_PROFILES_V1`.
#: Every profile is a guess (see docs/augmentations/scanner.md for the evidence
#: behind each); ``fit-scanner-profile`` fits one from real pairs.
SCANNER_PROFILES: dict[str, ScannerProfile] = {
    profile.name: profile
    for profile in (
        ScannerProfile(
            name="reference",
            description="Neutral reference scanner: original colours, high-quality JPEG.",
            jpeg_quality=95,
        ),
        ScannerProfile(
            name="cool-sharp",
            description="Bluer (cool white point), slightly crisper (mild sharpening), JPEG 85.",
            color_matrix=((1.04, -0.03, -0.01), (-0.02, 1.03, -0.01), (-0.02, -0.02, 1.04)),
            white_balance=(0.9, 1.0, 1.12),
            gamma=(1.0, 0.94, 0.86),
            saturation=0.95,
            sharpen_amount=0.2,
            sharpen_sigma=1.0,
            noise_shot=4e-5,
            noise_read=0.002,
            jpeg_quality=85,
            shift=(0.25, -0.15),
        ),
        ScannerProfile(
            name="warm-soft",
            description="Warmer (less blue), lighter, lifted blacks, slightly soft, JPEG 80.",
            color_matrix=((1.0, 0.03, -0.03), (0.02, 0.98, 0.0), (-0.02, 0.06, 0.96)),
            white_balance=(1.0, 0.95, 0.8),
            gamma=(0.82, 0.86, 1.0),
            levels=(0.1, 1.0),
            saturation=0.9,
            blur_sigma=0.35,
            noise_shot=8e-5,
            noise_read=0.003,
            jpeg_quality=80,
            shift=(-0.3, 0.2),
        ),
        ScannerProfile(
            name="saturated-dark",
            description="Darker, more saturated magenta rendering, JPEG 90.",
            color_matrix=((1.10, -0.06, -0.04), (-0.06, 1.12, -0.06), (-0.02, -0.08, 1.10)),
            white_balance=(0.8, 0.8, 0.8),
            gamma=(1.18, 1.08, 1.12),
            saturation=1.12,
            noise_shot=5e-5,
            noise_read=0.002,
            jpeg_quality=90,
            shift=(0.15, 0.3),
        ),
        ScannerProfile(
            name="pale-low-contrast",
            description=(
                "Much lighter and bluer, desaturated, markedly compressed contrast, "
                "slightly soft, JPEG 75."
            ),
            color_matrix=((0.98, 0.02, 0.0), (0.03, 0.95, 0.02), (0.0, 0.03, 0.97)),
            white_balance=(0.92, 1.0, 1.12),
            gamma=(0.8, 0.76, 0.78),
            levels=(0.28, 1.0),
            saturation=0.7,
            blur_sigma=0.3,
            noise_shot=1.2e-4,
            noise_read=0.004,
            jpeg_quality=75,
            shift=(-0.2, -0.35),
        ),
    )
}


#: File suffixes read as scanner-profile files (a string ending so is a path, not a name).
PROFILE_FILE_SUFFIXES = (".yaml", ".yml", ".json")
#: The ``format`` value written at the top of a profile file.
PROFILE_FILE_FORMAT = "tia-scanner-robust scanner profile"


def is_profile_path(spec: object) -> bool:
    """Whether ``spec`` names a profile file (a path, or a string ending in .yaml/.yml/.json).

    Examples:
        >>> is_profile_path("fitted.yaml"), is_profile_path("warm-soft")
        (True, False)

    """
    if isinstance(spec, Path):
        return True
    return isinstance(spec, str) and spec.lower().endswith(PROFILE_FILE_SUFFIXES)


def load_scanner_profile(path: str | Path) -> ScannerProfile:
    """Read a profile file written by :func:`save_scanner_profile` (or by hand).

    The file is YAML (JSON is YAML too), read with ``yaml.safe_load``: either
    a mapping with a ``profile`` mapping of :class:`ScannerProfile` fields
    (plus optional ``format``, ``version`` and ``fit`` provenance, which are
    not needed to simulate), or a flat mapping of the fields.

    Args:
        path: The ``.yaml``/``.yml``/``.json`` file.

    Returns:
        The :class:`ScannerProfile`.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If it is not a valid profile (the message names the file and field).

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> path = Path(tempfile.mkdtemp()) / "soft.yaml"
        >>> _ = path.write_text("profile: {name: soft, blur_sigma: 0.4}")
        >>> load_scanner_profile(path).blur_sigma
        0.4

    """
    import yaml  # noqa: PLC0415 - only profile files need it

    path = Path(path)
    if not path.is_file():
        msg = f"Scanner profile file not found: {path}"
        raise FileNotFoundError(msg)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        msg = f"{path}: not a valid YAML scanner profile ({exc})."
        raise ValueError(msg) from exc
    if isinstance(data, dict) and "profile" in data:
        unknown = sorted(set(data) - {"profile", "format", "version", "fit"})
        if unknown:
            msg = f"{path}: unknown top-level key(s) {unknown} (expected profile, version, fit)."
            raise ValueError(msg)
        data = data["profile"]
    if not isinstance(data, dict):
        msg = f"{path}: a scanner profile must be a mapping of ScannerProfile fields."
        raise ValueError(msg)
    fields = {f.name for f in dataclasses.fields(ScannerProfile)}
    unknown = sorted(set(data) - fields)
    if unknown:
        msg = f"{path}: unknown scanner profile field(s) {unknown}; valid: {sorted(fields)}."
        raise ValueError(msg)
    data = dict(data)
    data.setdefault("name", path.stem)
    try:
        return ScannerProfile(**data)
    except (TypeError, ValueError) as exc:
        msg = f"{path}: {exc}"
        raise ValueError(msg) from exc


def save_scanner_profile(
    profile: ScannerProfile, path: str | Path, *, fit: dict[str, Any] | None = None
) -> Path:
    """Write ``profile`` (and optional fit provenance) as a YAML profile file, atomically.

    Args:
        profile: The profile.
        path: Destination ``.yaml``/``.yml`` file.
        fit: Optional provenance (data, scanners, diagnostics) stored under ``fit``.

    Returns:
        The path written.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> p = ScannerProfile("mine", gamma=(0.9, 0.9, 1.0), jpeg_quality=85)
        >>> path = save_scanner_profile(p, Path(tempfile.mkdtemp()) / "mine.yaml")
        >>> load_scanner_profile(path) == p
        True

    """
    import yaml  # noqa: PLC0415 - only profile files need it

    from tia_scanner_robust._io import atomic_write_text, to_jsonable  # noqa: PLC0415

    document: dict[str, Any] = {
        "format": PROFILE_FILE_FORMAT,
        "version": 1,
        "profile": profile.to_dict(),
    }
    if fit is not None:
        document["fit"] = fit
    text = yaml.safe_dump(to_jsonable(document), sort_keys=False, default_flow_style=None)
    return atomic_write_text(path, text)


def get_scanner_profile(profile: str | Path | ScannerProfile) -> ScannerProfile:
    """Return ``profile`` itself, a named profile of :data:`SCANNER_PROFILES`, or a file's.

    Args:
        profile: A profile, the name of one in :data:`SCANNER_PROFILES`, or
            the path of a profile file (``.yaml``/``.yml``/``.json``, e.g.
            written by ``tia-scanner-robust fit-scanner-profile``).

    Returns:
        The :class:`ScannerProfile`.

    Raises:
        ValueError: If the name is unknown (the message lists the valid names)
            or the file is not a valid profile.
        FileNotFoundError: If a profile file does not exist.
        TypeError: If ``profile`` is neither a string, a path nor a profile.

    Examples:
        >>> get_scanner_profile("reference").jpeg_quality
        95

    """
    if isinstance(profile, ScannerProfile):
        return profile
    if is_profile_path(profile):
        return load_scanner_profile(profile)
    if isinstance(profile, str):
        check_in_choices(profile, SCANNER_PROFILES, "scanner profile")
        return SCANNER_PROFILES[profile]
    msg = f"profile must be a profile name or a ScannerProfile, got {type(profile).__name__}."
    raise TypeError(msg)


# --------------------------------------------------------------------------- #
# The pipeline stages (pure functions on float32 arrays in [0, 1])
# --------------------------------------------------------------------------- #
def _srgb_decode(values: np.ndarray) -> np.ndarray:
    """SRGB electro-optical transfer function: encoded [0, 1] -> linear [0, 1]."""
    values = np.asarray(values, dtype=np.float32)
    out = np.maximum(values, np.float32(0.04045))
    out += np.float32(0.055)
    out /= np.float32(1.055)
    np.power(out, np.float32(2.4), out=out)
    low = values <= np.float32(0.04045)
    out[low] = values[low] / np.float32(12.92)
    return out


def _srgb_encode(values: np.ndarray) -> np.ndarray:
    """Inverse sRGB transfer function: linear [0, 1] -> encoded [0, 1]."""
    values = np.clip(values, 0.0, 1.0).astype(np.float32, copy=False)
    out = np.maximum(values, np.float32(0.0031308))
    np.power(out, np.float32(1.0 / 2.4), out=out)
    out *= np.float32(1.055)
    out -= np.float32(0.055)
    low = values <= np.float32(0.0031308)
    out[low] = values[low] * np.float32(12.92)
    return out


_DECODE_LUT = _srgb_decode(np.arange(256, dtype=np.float32) / 255.0)


def _noise_seed(image: np.ndarray, profile: ScannerProfile) -> int:
    """64-bit seed from the profile's name and parameters and the image's bytes."""
    digest = hashlib.blake2b(digest_size=8)
    # every parameter but the free-text description
    params = [
        getattr(profile, f.name) for f in dataclasses.fields(profile) if f.name != "description"
    ]
    digest.update(repr(params).encode("utf-8"))
    digest.update(f"{image.shape}|{image.dtype.str}".encode())
    digest.update(np.ascontiguousarray(image).tobytes())
    return int.from_bytes(digest.digest(), "little")


def _shift(linear: np.ndarray, dx: float, dy: float) -> np.ndarray:
    matrix = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]], dtype=np.float64)
    height, width = linear.shape[:2]
    return cv2.warpAffine(
        linear,
        matrix,
        (width, height),
        flags=cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REFLECT_101,
    )


def _gaussian(values: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(
        values, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101
    )


def _jpeg(image_u8: np.ndarray, quality: int) -> np.ndarray:
    ok, buffer = cv2.imencode(".jpg", image_u8[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - OpenCV always encodes uint8 RGB
        msg = "OpenCV failed to JPEG-encode the simulated scan."
        raise RuntimeError(msg)
    return np.ascontiguousarray(cv2.imdecode(buffer, cv2.IMREAD_COLOR)[..., ::-1])


def simulate_scanner(image: np.ndarray, profile: str | Path | ScannerProfile) -> np.ndarray:
    """Render ``image`` as the simulated scanner ``profile`` would.

    Pure and deterministic: the same image through the same profile gives the
    same bytes (the sensor noise is seeded by the profile and the image).

    Args:
        image: ``(H, W, 3)`` RGB, uint8 or float32 in ``[0, 1]``.
        profile: A :class:`ScannerProfile`, the name of one in
            :data:`SCANNER_PROFILES`, or a profile file (``.yaml``; see
            :func:`load_scanner_profile`).

    Returns:
        The simulated scan, same shape and dtype as ``image``. float32 output is
        not quantised unless the profile applies JPEG.

    Raises:
        TypeError: If ``image`` is not a uint8/float32 array.
        ValueError: If ``image`` is not RGB or ``profile`` is unknown.

    Examples:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> tile = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        >>> neutral = ScannerProfile("identity")
        >>> bool((simulate_scanner(tile, neutral) == tile).all())
        True
        >>> a = simulate_scanner(tile, "warm-soft")
        >>> bool((a == simulate_scanner(tile, "warm-soft")).all())
        True

    """
    check_rgb_image(image)
    return render_scan(image, get_scanner_profile(profile))


def render_scan(
    image: np.ndarray,
    profile: ScannerProfile,
    rng: np.random.Generator | None = None,
    *,
    jpeg: bool = True,
) -> np.ndarray:
    """The simulator's stages, in order, on one image (the core of :func:`simulate_scanner`).

    Args:
        image: ``(H, W, 3)`` RGB, uint8 or float32 in ``[0, 1]`` (not checked).
        profile: The profile.
        rng: Generator of the sensor noise; ``None`` seeds one from the
            profile and the image content (:func:`simulate_scanner`'s
            determinism). The batched CPU backend passes its own (an augmentation).
        jpeg: Apply the profile's JPEG stage (the batched simulator may do it on the GPU).

    Returns:
        The simulated scan, same shape and dtype as ``image``.

    Examples:
        >>> import numpy as np
        >>> tile = np.full((16, 16, 3), 150, np.uint8)
        >>> quiet = ScannerProfile("soft", blur_sigma=1.0, gamma=(1.1, 1.0, 0.9))
        >>> rng = np.random.default_rng(0)
        >>> bool((render_scan(tile, quiet, rng) == simulate_scanner(tile, quiet)).all())
        True

    """
    is_uint8 = image.dtype == np.uint8
    linear = _DECODE_LUT[image] if is_uint8 else _srgb_decode(image)

    # Stage and optics (linear light).
    dx, dy = profile.shift
    if dx or dy:
        linear = _shift(linear, dx, dy)
    if profile.blur_sigma > 0:
        linear = _gaussian(linear, profile.blur_sigma)

    # Sensor noise (linear light), seeded by profile and content unless ``rng`` is given.
    if profile.noise_shot > 0 or profile.noise_read > 0:
        if rng is None:
            rng = np.random.default_rng(_noise_seed(image, profile))
        std = np.sqrt(profile.noise_shot * np.clip(linear, 0.0, None) + profile.noise_read**2)
        linear = linear + std * rng.standard_normal(linear.shape, dtype=np.float32)

    # Colour response (linear light): white point gains then the colour matrix.
    matrix = np.asarray(profile.color_matrix, dtype=np.float32)
    gains = np.asarray(profile.white_balance, dtype=np.float32)
    if not (np.array_equal(matrix, np.eye(3)) and np.all(gains == 1)):
        linear = (linear * gains) @ matrix.T
    encoded = _srgb_encode(linear)

    # Tone: per-channel gamma, output levels, saturation (encoded values).
    gamma = np.asarray(profile.gamma, dtype=np.float32)
    if np.any(gamma != 1):
        encoded = np.power(encoded, gamma)
    black, white = profile.levels
    if black != 0 or white != 1:
        encoded = black + (white - black) * encoded
    if profile.saturation != 1:
        luma = (encoded @ _LUMA)[..., None]
        encoded = luma + profile.saturation * (encoded - luma)

    # Sharpening (unsharp mask) in encoded values.
    if profile.sharpen_amount > 0:
        encoded = encoded + profile.sharpen_amount * (
            encoded - _gaussian(encoded, profile.sharpen_sigma)
        )
    encoded = np.clip(encoded, 0.0, 1.0).astype(np.float32, copy=False)

    # Quantisation and JPEG.
    with_jpeg = jpeg and profile.jpeg_quality is not None
    if is_uint8 or with_jpeg:
        scan = np.rint(encoded * 255.0).astype(np.uint8)
        if with_jpeg:
            scan = _jpeg(scan, profile.jpeg_quality)
        return scan if is_uint8 else scan.astype(np.float32) / np.float32(255.0)
    return encoded


def simulate_paired_scans(
    image: np.ndarray,
    profiles: Iterable[str | Path | ScannerProfile] | None = None,
) -> dict[str, np.ndarray]:
    """Render one tissue image through several simulated scanners.

    Args:
        image: ``(H, W, 3)`` RGB, uint8 or float32 in ``[0, 1]``.
        profiles: Profiles, names or profile files; ``None`` means every profile of
            :data:`SCANNER_PROFILES`, in canonical order.

    Returns:
        ``{profile name: simulated scan}``, in the order given; the scans are
        spatially aligned with ``image`` (within the profiles' sub-pixel shifts).

    Raises:
        ValueError: If two profiles share a name or a name is unknown.

    Examples:
        >>> import numpy as np
        >>> scans = simulate_paired_scans(np.full((8, 8, 3), 128, np.uint8))
        >>> list(scans)[0]
        'reference'

    """
    check_rgb_image(image)
    resolved = [
        get_scanner_profile(p)
        for p in (SCANNER_PROFILES.values() if profiles is None else profiles)
    ]
    names = [p.name for p in resolved]
    if len(set(names)) != len(names):
        msg = f"profiles must have distinct names, got {names}."
        raise ValueError(msg)
    return {p.name: simulate_scanner(image, p) for p in resolved}


# --------------------------------------------------------------------------- #
# The albumentations transform
# --------------------------------------------------------------------------- #
def _normalise_profile_spec(spec: object) -> str | dict[str, Any]:
    """Profile name (registered, unchanged profile) or parameter dict (custom)."""
    if is_profile_path(spec):
        return load_scanner_profile(spec).to_dict()
    if isinstance(spec, str):
        check_in_choices(spec, SCANNER_PROFILES, "scanner profile")
        return spec
    if isinstance(spec, ScannerProfile):
        if SCANNER_PROFILES.get(spec.name) == spec:
            return spec.name
        return spec.to_dict()
    if isinstance(spec, dict):
        try:
            return ScannerProfile(**spec).to_dict()
        except TypeError as exc:
            msg = f"Invalid scanner profile dict: {exc}"
            raise ValueError(msg) from exc
    msg = (
        f"A scanner profile must be a name, a ScannerProfile or a dict, got {type(spec).__name__}."
    )
    raise ValueError(msg)


def _resolve_spec(spec: str | dict[str, Any]) -> ScannerProfile:
    return SCANNER_PROFILES[spec] if isinstance(spec, str) else ScannerProfile(**spec)


class ScannerSimulator(ImageOnlyTransform):
    """Render the image through a randomly chosen simulated scanner.

    An albumentations 2.x transform: the profile is drawn in
    :meth:`get_params` with ``self.py_random`` (so ``A.Compose(seed=...)``
    reproduces the draws) and :meth:`apply` is the deterministic
    :func:`simulate_scanner`.

    Args:
        profiles: Names of :data:`SCANNER_PROFILES`, :class:`ScannerProfile`
            objects, their ``to_dict()`` dicts or profile files (``.yaml``,
            read once and stored as dicts); ``None`` means every
            registered profile. Stored as names (registered profiles) or
            dicts (custom profiles) so ``A.to_dict``/``A.from_dict`` round-trip.
        p: Probability of applying the transform.

    Targets:
        image

    Image types:
        uint8, float32

    Examples:
        >>> import albumentations as A
        >>> import numpy as np
        >>> aug = A.Compose([ScannerSimulator(["warm-soft", "cool-sharp"], p=1.0)], seed=0)
        >>> out = aug(image=np.full((16, 16, 3), 180, np.uint8))["image"]
        >>> out.shape
        (16, 16, 3)
        >>> A.from_dict(A.to_dict(aug)).transforms[0].profiles
        ['warm-soft', 'cool-sharp']

    """

    class InitSchema(ImageOnlyTransform.InitSchema):
        """Validation of the constructor arguments."""

        profiles: list[Any] | None

        @field_validator("profiles", mode="before")
        @classmethod
        def _check_profiles(cls, value: Any) -> list[str | dict[str, Any]] | None:
            if value is None:
                return None
            if isinstance(value, (str, Path, ScannerProfile, dict)):
                value = [value]
            try:
                specs = list(value)
            except TypeError as exc:
                msg = f"profiles must be a sequence of profiles, got {type(value).__name__}."
                raise ValueError(msg) from exc
            if not specs:
                msg = "profiles must not be empty (use None for every registered profile)."
                raise ValueError(msg)
            normalised = [_normalise_profile_spec(spec) for spec in specs]
            names = [s if isinstance(s, str) else s["name"] for s in normalised]
            if len(set(names)) != len(names):
                msg = f"profiles must have distinct names, got {names}."
                raise ValueError(msg)
            return normalised

    def __init__(
        self,
        profiles: Sequence[str | Path | ScannerProfile | dict[str, Any]] | None = None,
        p: float = 0.5,
    ) -> None:
        super().__init__(p=p)
        self.profiles = profiles
        specs = list(SCANNER_PROFILES) if profiles is None else profiles
        self._profiles: tuple[ScannerProfile, ...] = tuple(_resolve_spec(s) for s in specs)

    @property
    def profile_names(self) -> list[str]:
        """Names of the profiles this transform chooses from, in order."""
        return [p.name for p in self._profiles]

    def get_params(self) -> dict[str, Any]:
        """Choose a profile uniformly with ``self.py_random``."""
        index = self.py_random.randrange(len(self._profiles))
        return {"profile_index": index, "profile_name": self._profiles[index].name}

    def apply(self, img: np.ndarray, profile_index: int, **_params: Any) -> np.ndarray:
        """Apply the chosen profile (deterministic)."""
        return simulate_scanner(img, self._profiles[profile_index])
