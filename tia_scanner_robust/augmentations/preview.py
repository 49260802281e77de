"""A labelled grid of every style augmentation and scanner profile on one tissue tile.

The grid lets a person see at a glance what each augmentation does to their
tissue before training with it: the original tile, a few random draws of
each style augmentation built by :func:`.presets.style_augmentation`
(ColorJitter, RandStainNA in each colour space, FDA with scanner-simulated
copies of the tile as references, HEStain) and the tile through every
simulated scanner of :data:`.scanner.SCANNER_PROFILES`.

Examples:
    >>> from tiatoolbox.data import stain_norm_target
    >>> grid = make_augmentation_preview(stain_norm_target(), n_samples=2, tile_size=96)
    >>> grid.dtype, grid.shape[2]
    (dtype('uint8'), 3)

"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import albumentations as A  # noqa: N812 - the library's documented alias
import cv2
import matplotlib as mpl
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from tia_scanner_robust._io import atomic_write_image
from tia_scanner_robust._validation import check_rgb_image, read_rgb_image
from tia_scanner_robust.augmentations.presets import style_augmentation
from tia_scanner_robust.augmentations.scanner import SCANNER_PROFILES, simulate_paired_scans

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["make_augmentation_preview", "save_augmentation_preview"]

#: RandStainNA colour spaces shown, one row each.
RANDSTAINNA_SPACES: tuple[str, ...] = ("LAB", "HSV", "HED")
MIN_TILE_SIZE = 32
MAX_SAMPLES = 12

_BACKGROUND = (255, 255, 255)
_TEXT = (33, 37, 41)
_MUTED = (108, 117, 125)
_BORDER = (206, 212, 218)


@dataclass
class _Row:
    title: str
    subtitle: str
    cells: list[tuple[np.ndarray, str]]


def _center_crop(image: np.ndarray, tile_size: int) -> np.ndarray:
    height, width = image.shape[:2]
    th, tw = min(tile_size, height), min(tile_size, width)
    top, left = (height - th) // 2, (width - tw) // 2
    return np.ascontiguousarray(image[top : top + th, left : left + tw])


def _draws(
    transform: Any,
    tile: np.ndarray,
    n_samples: int,
    seed: int,
    **call_kwargs: Any,
) -> list[np.ndarray]:
    """``n_samples`` seeded draws of ``transform`` (forced to apply)."""
    pipeline = A.Compose([transform], seed=seed, strict=False)
    return [pipeline(image=tile, **call_kwargs)["image"] for _ in range(n_samples)]


def _style_rows(
    tile: np.ndarray,
    scans: dict[str, np.ndarray],
    n_samples: int,
    seed: int,
) -> list[_Row]:
    rows: list[_Row] = []
    jitter = _draws(style_augmentation("colorjitter", p=1.0), tile, n_samples, seed + 1)
    rows.append(
        _Row("ColorJitter", "brightness, contrast,\nsaturation, hue", _numbered(jitter)),
    )
    for offset, space in enumerate(RANDSTAINNA_SPACES):
        transform = style_augmentation("randstainna", color_spaces=[space], p=1.0)
        draws = _draws(transform, tile, n_samples, seed + 10 + offset)
        rows.append(
            _Row(f"RandStainNA {space}", "virtual template,\nReinhard transfer", _numbered(draws))
        )

    # FDA: the low-frequency amplitude of a scanner-simulated copy of the tile.
    references = [name for name in scans if name != next(iter(scans))] or list(scans)
    fda_cells = []
    for index in range(n_samples):
        ref_name = references[index % len(references)]
        transform = style_augmentation("fda", p=1.0)
        (out,) = _draws(transform, tile, 1, seed + 20 + index, fda_reference=[scans[ref_name]])
        fda_cells.append((out, f"ref: {ref_name}"))
    rows.append(_Row("FDA", "amplitude of a\nsimulated scan", fda_cells))

    hestain = _draws(style_augmentation("hestain", p=1.0), tile, n_samples, seed + 30)
    rows.append(_Row("HEStain", "stain-matrix\nperturbation", _numbered(hestain)))
    return rows


def _numbered(images: list[np.ndarray]) -> list[tuple[np.ndarray, str]]:
    return [(image, f"draw {i + 1}") for i, image in enumerate(images)]


def _check_int(value: object, name: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        msg = f"{name} must be an int, got {type(value).__name__}."
        raise TypeError(msg)
    value = int(value)
    if value < low or (high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        msg = f"{name} must be {bound}, got {value}."
        raise ValueError(msg)
    return value


def make_augmentation_preview(
    image: np.ndarray,
    *,
    seed: int = 0,
    n_samples: int = 4,
    tile_size: int = 256,
    profiles: Sequence[str] | None = None,
) -> np.ndarray:
    """Build a labelled RGB grid of every style augmentation and scanner profile.

    Rows: the original (centre crop of ``tile_size``), ColorJitter, RandStainNA
    in LAB, HSV and HED, FDA (each draw uses a scanner-simulated copy of the
    tile as the amplitude reference), HEStain, each with ``n_samples`` seeded
    random draws, then the tile through every scanner profile.

    Args:
        image: ``(H, W, 3)`` RGB uint8 (or float32 in ``[0, 1]``) tissue image.
        seed: Seed of every random draw; the same seed gives the same grid.
        n_samples: Random draws per style augmentation, in ``[1, 12]``.
        tile_size: Side of the centre crop shown (smaller images are shown
            whole), at least 32.
        profiles: Scanner profile names; ``None`` for all of
            :data:`.scanner.SCANNER_PROFILES`.

    Returns:
        The grid, ``(H', W', 3)`` uint8 RGB.

    Raises:
        TypeError: If ``image`` or an integer argument has the wrong type.
        ValueError: If ``image`` is not RGB or an argument is out of range.

    Examples:
        >>> import numpy as np
        >>> from tiatoolbox.data import stain_norm_target
        >>> a = make_augmentation_preview(stain_norm_target(), seed=1, n_samples=1, tile_size=64)
        >>> b = make_augmentation_preview(stain_norm_target(), seed=1, n_samples=1, tile_size=64)
        >>> bool((a == b).all())
        True

    """
    check_rgb_image(image)
    seed = _check_int(seed, "seed", 0, 2**32 - 1 - 100)
    n_samples = _check_int(n_samples, "n_samples", 1, MAX_SAMPLES)
    tile_size = _check_int(tile_size, "tile_size", MIN_TILE_SIZE)
    if image.dtype != np.uint8:
        image = np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    tile = _center_crop(image, tile_size)
    scans = simulate_paired_scans(tile, list(SCANNER_PROFILES) if profiles is None else profiles)

    height, width = tile.shape[:2]
    rows = [
        _Row(
            "Original",
            f"{width}x{height} centre crop\nof {image.shape[1]}x{image.shape[0]}",
            [(tile, "input")],
        )
    ]
    rows += _style_rows(tile, scans, n_samples, seed)
    rows.append(
        _Row(
            "Scanner profiles",
            "simulated scanners\n(deterministic)",
            [(scan, name) for name, scan in scans.items()],
        ),
    )
    title = f"Style augmentations and simulated scanners  (seed {seed})"
    return _render_grid(rows, title)


# --------------------------------------------------------------------------- #
# Rendering
# --------------------------------------------------------------------------- #
def _load_fonts(sizes: Sequence[int]) -> list[ImageFont.FreeTypeFont] | None:
    """DejaVu Sans (shipped with matplotlib) through Pillow, or None."""
    fonts = Path(mpl.get_data_path()) / "fonts" / "ttf"
    paths = [fonts / "DejaVuSans-Bold.ttf"] + [fonts / "DejaVuSans.ttf"] * (len(sizes) - 1)
    try:
        return [
            ImageFont.truetype(str(path), size) for path, size in zip(paths, sizes, strict=True)
        ]
    except (ImportError, OSError):  # pragma: no cover - Pillow without FreeType
        return None


_Draw = Callable[[tuple[int, int], str, int, tuple[int, int, int]], None]


def _text_drawer(canvas: np.ndarray, scale: float) -> tuple[_Draw, Callable[[], np.ndarray]]:
    """A ``draw(xy, text, size_index, colour)`` function and a ``finish()``."""
    sizes = (round(24 * scale), round(17 * scale), round(14 * scale))
    fonts = _load_fonts(sizes)
    if fonts is not None:
        pil = Image.fromarray(canvas)
        draw = ImageDraw.Draw(pil)

        def draw_text(xy: tuple[int, int], text: str, size: int, colour: tuple[int, ...]) -> None:
            draw.multiline_text(xy, text, font=fonts[size], fill=colour, spacing=3)

        return draw_text, lambda: np.asarray(pil, dtype=np.uint8).copy()

    def draw_cv2(xy: tuple[int, int], text: str, size: int, colour: tuple[int, ...]) -> None:
        font_scale = (0.65, 0.48, 0.4)[size] * scale
        for i, line in enumerate(text.split("\n")):
            origin = (xy[0], xy[1] + int((i + 0.8) * sizes[size] * 1.25))
            cv2.putText(
                canvas, line, origin, cv2.FONT_HERSHEY_SIMPLEX, font_scale, colour, 1, cv2.LINE_AA
            )

    return draw_cv2, lambda: canvas  # pragma: no cover - fallback without FreeType


def _render_grid(rows: list[_Row], title: str) -> np.ndarray:
    cell_h, cell_w = rows[0].cells[0][0].shape[:2]
    scale = float(np.clip(cell_w / 256.0, 0.6, 1.5))
    pad = round(10 * scale)
    caption_h = round(24 * scale)
    label_w = round(200 * scale)
    title_h = round(52 * scale)
    n_cols = max(len(row.cells) for row in rows)
    row_h = caption_h + cell_h + pad
    width = label_w + n_cols * (cell_w + pad) + pad
    height = title_h + len(rows) * row_h + pad
    canvas = np.full((height, width, 3), _BACKGROUND, dtype=np.uint8)

    # images and borders first, text last (the text layer is drawn in one pass)
    for r, row in enumerate(rows):
        top = title_h + r * row_h + caption_h
        if r:
            canvas[top - caption_h - pad // 2, pad : width - pad] = _BORDER
        for c, (cell, _) in enumerate(row.cells):
            left = label_w + c * (cell_w + pad)
            canvas[top - 1 : top + cell_h + 1, left - 1 : left + cell_w + 1] = _BORDER
            canvas[top : top + cell_h, left : left + cell_w] = cell

    draw, finish = _text_drawer(canvas, scale)
    draw((pad, round(12 * scale)), title, 0, _TEXT)
    for r, row in enumerate(rows):
        top = title_h + r * row_h + caption_h
        draw((pad, top + round(4 * scale)), row.title, 1, _TEXT)
        draw((pad, top + round(30 * scale)), row.subtitle, 2, _MUTED)
        for c, (_, caption) in enumerate(row.cells):
            left = label_w + c * (cell_w + pad)
            draw((left, top - caption_h + round(3 * scale)), caption, 2, _TEXT)
    return finish()


def save_augmentation_preview(
    image_or_path: np.ndarray | str | Path,
    out_png: str | Path,
    **kwargs: Any,
) -> Path:
    """Build the preview grid and write it atomically.

    Args:
        image_or_path: An RGB array or the path of an image file.
        out_png: Output file (``.png`` recommended; any extension OpenCV writes).
        **kwargs: ``seed``, ``n_samples``, ``tile_size``, ``profiles`` of
            :func:`make_augmentation_preview`.

    Returns:
        The path written.

    Raises:
        FileNotFoundError: If ``image_or_path`` is a path that does not exist.
        ValueError: If the image cannot be read or an argument is invalid.

    Examples:
        >>> import tempfile, pathlib
        >>> from tiatoolbox.data import stain_norm_target
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "preview.png"
        >>> save_augmentation_preview(stain_norm_target(), out, n_samples=1, tile_size=64).is_file()
        True

    """
    image = (
        image_or_path if isinstance(image_or_path, np.ndarray) else read_rgb_image(image_or_path)
    )
    grid = make_augmentation_preview(image, **kwargs)
    return atomic_write_image(out_png, grid)
