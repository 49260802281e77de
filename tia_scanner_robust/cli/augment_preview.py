"""``tia-scanner-robust augment-preview``: a grid of every augmentation on one tissue image.

A thin wrapper over
:func:`tia_scanner_robust.augmentations.preview.save_augmentation_preview`:
reads IMAGE (or TIAToolbox's bundled H&E image when none is given), builds
the labelled grid (original, seeded draws of each style augmentation, every
simulated scanner profile) and writes it atomically as a PNG.

Examples:
    >>> from click.testing import CliRunner
    >>> result = CliRunner().invoke(augment_preview, ["--help"])
    >>> "--tile-size" in result.output
    True

"""

from __future__ import annotations

from pathlib import Path

import click

from tia_scanner_robust.cli._options import check_output_suffix, seed_option

__all__ = ["augment_preview"]

#: Image formats the preview can be written as.
PREVIEW_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


@click.command(
    "augment-preview",
    short_help="Grid of every style augmentation and scanner profile on one tissue image.",
)
@click.argument(
    "image",
    required=False,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    callback=lambda _ctx, _param, value: check_output_suffix(value, PREVIEW_SUFFIXES),
    help="Image file to write: .png (or .jpg, .tif, .bmp, .webp); replaced if it exists.",
)
@seed_option(text="Seed of the random draws.")
@click.option(
    "--tile-size",
    type=click.IntRange(min=32),
    default=256,
    show_default=True,
    help="Side of the centre crop shown in each cell (px).",
)
@click.option(
    "--n-samples",
    type=click.IntRange(1, 12),
    default=4,
    show_default=True,
    help="Random draws per style augmentation.",
)
def augment_preview(
    image: Path | None, output: Path, seed: int, tile_size: int, n_samples: int
) -> None:
    """Write a labelled grid of every style augmentation and scanner profile.

    IMAGE is an RGB tissue image (PNG, JPEG, TIFF...); without it, TIAToolbox's
    bundled 1000x1000 H&E image is used. The grid shows the centre crop of
    IMAGE, --n-samples seeded draws each of ColorJitter, RandStainNA (LAB,
    HSV, HED), FDA (with scanner-simulated references) and HEStain, and the
    crop through every simulated scanner profile. The same --seed gives the
    same grid.
    """
    # imported here so that ``--help`` answers without importing torch
    from tia_scanner_robust.augmentations.preview import (  # noqa: PLC0415 - lazy CLI
        save_augmentation_preview,
    )

    if image is None:
        from tiatoolbox.data import stain_norm_target  # noqa: PLC0415 - lazy CLI

        source: object = stain_norm_target()
        label = "TIAToolbox's bundled H&E image"
    else:
        source, label = image, str(image)
    try:
        written = save_augmentation_preview(
            source,
            output,
            seed=seed,
            n_samples=n_samples,
            tile_size=tile_size,
        )
    except (ValueError, TypeError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Wrote the augmentation preview of {label} to {written}")
