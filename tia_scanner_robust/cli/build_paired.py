"""``tia-scanner-robust build-paired``: build a scanner-paired dataset.

Three subcommands, each a thin wrapper over :mod:`tia_scanner_robust.data`:

- ``wsis LISTING -o OUT_DIR``: register multi-scanner WSIs of the same slides
  (ORB + RANSAC affine, refined per region at the target resolution) and cut
  aligned tissue regions
  (:func:`~tia_scanner_robust.data.build_paired.build_paired_from_wsis`).
- ``simulate IMAGES... -o OUT_DIR``: single-scanner images or WSIs
  through the scanner simulator's profiles
  (:func:`~tia_scanner_robust.data.demo.build_paired_from_images`).
- ``demo -o OUT_DIR``: the offline demo set from TIAToolbox's bundled H&E image
  (:func:`~tia_scanner_robust.data.demo.build_demo_dataset`).

Every subcommand writes the SCORPION layout plus ``manifest.csv``.

Examples:
    >>> import tempfile
    >>> from click.testing import CliRunner
    >>> out = tempfile.mkdtemp()
    >>> args = ["demo", "-o", out, "--tile-size", "128", "--n-tiles", "2"]
    >>> result = CliRunner().invoke(build_paired, args)
    >>> result.exit_code, "2 specimens x 5 scanners" in result.output
    (0, True)

"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from tia_scanner_robust.cli._options import output_dir_option, seed_option

if TYPE_CHECKING:
    from tia_scanner_robust.augmentations.scanner import ScannerProfile
    from tia_scanner_robust.data.paired import PairedCollection

__all__ = ["build_paired"]

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")


def _summary(collection: PairedCollection, out_dir: Path) -> str:
    return (
        f"Wrote {len(collection.specimens)} specimens x {len(collection.scanners)} scanners "
        f"{collection.scanners} to {out_dir} (manifest: {out_dir / 'manifest.csv'})."
    )


@click.group(name="build-paired", context_settings={"help_option_names": ["-h", "--help"]})
def build_paired() -> None:
    """Build a scanner-paired dataset (SCORPION layout + manifest.csv).

    Use `wsis` for real multi-scanner scans of the same slides, `simulate`
    for single-scanner images through simulated scanners, `demo` for the
    offline demo set.
    """


@build_paired.command(name="wsis")
@click.argument("listing", type=click.Path(exists=True, path_type=Path))
@output_dir_option(
    text="Output folder (SCORPION layout, manifest.csv, registration.json).",
    aliases=(),
    positional="old_out_dir",
    dest="out_dir",
)
@click.option("--n-regions", default=10, show_default=True, help="Regions per slide.")
@click.option("--region-um", default=800.0, show_default=True, help="Region side (um).")
@click.option(
    "--target-mpp", default=800.0 / 1024, show_default=True, help="Output resolution (um/px)."
)
@click.option(
    "--thumb-mpp",
    type=float,
    default=None,
    help="Registration thumbnail mpp (default: per slide, its long side over 2048 px, at "
    "most 8 um/px).",
)
@click.option("--reference", default=None, help="Reference scanner (default: first listed).")
@click.option("--min-tissue", default=0.5, show_default=True, help="Least tissue per region.")
@click.option("--min-inliers", default=20, show_default=True, help="Failure rule: inliers.")
@click.option(
    "--max-residual-px",
    default=2.5,
    show_default=True,
    help="Failure rule: largest inlier RMS residual (thumbnail px).",
)
@click.option("--ransac-threshold-px", default=4.0, show_default=True)
@click.option("--full-affine", is_flag=True, help="6-DOF affine instead of similarity.")
@click.option(
    "--no-refine",
    is_flag=True,
    help="Skip the per-region refinement at the target resolution (residuals still reported).",
)
@click.option(
    "--max-region-residual-px",
    default=2.0,
    show_default=True,
    help="Failure rule: largest region residual (target px); a slide fails when its median "
    "region residual is larger.",
)
@click.option(
    "--on-failure",
    type=click.Choice(["error", "skip"]),
    default="error",
    show_default=True,
    help="A slide whose registration fails: stop before extracting, or skip it.",
)
@click.option(
    "--incomplete", type=click.Choice(["error", "drop"]), default="error", show_default=True
)
@click.option("--format", "image_format", type=click.Choice(["png", "jpg"]), default="png")
@seed_option()
@click.option("--overwrite", is_flag=True, help="Allow a non-empty OUT_DIR.")
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
def wsis(
    *,
    listing: Path,
    out_dir: Path,
    n_regions: int,
    region_um: float,
    target_mpp: float,
    thumb_mpp: float | None,
    reference: str | None,
    min_tissue: float,
    min_inliers: int,
    max_residual_px: float,
    ransac_threshold_px: float,
    full_affine: bool,
    no_refine: bool,
    max_region_residual_px: float,
    on_failure: str,
    incomplete: str,
    image_format: str,
    seed: int,
    overwrite: bool,
    no_progress: bool,
) -> None:
    """Register multi-scanner WSIs and extract aligned regions.

    LISTING is a CSV with columns slide_id, scanner, path (optional mpp), or a
    folder LISTING/<slide_id>/<scanner>.<ext>. Each region is refined by phase
    correlation at the target resolution; the thumbnail and per-region
    residuals are printed and saved in OUT_DIR/registration.json.
    """
    from tia_scanner_robust.data.build_paired import (  # noqa: PLC0415 - lazy CLI import
        build_paired_from_wsis,
        format_registration_report,
    )
    from tia_scanner_robust.data.registration import RegistrationError  # noqa: PLC0415

    try:
        collection, report = build_paired_from_wsis(
            listing,
            out_dir,
            n_regions=n_regions,
            region_um=region_um,
            target_mpp=target_mpp,
            thumb_mpp=thumb_mpp,
            reference=reference,
            min_tissue_fraction=min_tissue,
            min_inliers=min_inliers,
            max_residual_px=max_residual_px,
            ransac_threshold_px=ransac_threshold_px,
            full_affine=full_affine,
            refine=not no_refine,
            max_region_residual_px=max_region_residual_px,
            on_failure=on_failure,
            incomplete=incomplete,
            image_format=image_format,
            seed=seed,
            overwrite=overwrite,
            progress=not no_progress,
        )
    except RegistrationError as error:
        report_path = out_dir / "registration.json"
        if report_path.is_file():
            click.echo(format_registration_report(json.loads(report_path.read_text("utf-8"))))
        raise click.ClickException(str(error)) from error
    except (ValueError, FileNotFoundError) as error:
        raise click.ClickException(str(error)) from error
    click.echo(format_registration_report(report))
    click.echo(_summary(collection, out_dir))
    click.echo(f"Registration report: {out_dir / 'registration.json'}")


def _resolve_profiles(profiles: tuple[str, ...]) -> list[ScannerProfile] | None:
    """Built-in names and profile files (``.yaml``) as profiles; ``None`` when none given."""
    from tia_scanner_robust.augmentations.scanner import get_scanner_profile  # noqa: PLC0415

    return [get_scanner_profile(p) for p in profiles] or None


def _expand_inputs(inputs: tuple[Path, ...]) -> list[Path]:
    from tia_scanner_robust.data.manifest import WSI_EXTENSIONS  # noqa: PLC0415

    files: list[Path] = []
    for item in inputs:
        if item.is_dir():
            files.extend(
                sorted(
                    p
                    for p in item.iterdir()
                    if p.is_file() and p.suffix.lower() in (*_IMAGE_SUFFIXES, *WSI_EXTENSIONS)
                )
            )
        else:
            files.append(item)
    return files


@build_paired.command(name="simulate")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@output_dir_option(text="Output folder (SCORPION layout, manifest.csv).", dest="out_dir")
@click.option(
    "--profile",
    "profiles",
    multiple=True,
    help="Scanner profile name or profile YAML, e.g. from fit-scanner-profile (repeat; the "
    "first is the reference; default: every built-in profile).",
)
@click.option("--tile-size", type=int, default=None, help="Tile side (px); default: whole image.")
@click.option("--n-tiles", type=int, default=None, help="Tiles per image (default: all).")
@click.option("--stride", type=int, default=None, help="Grid step (default: tile size).")
@click.option("--target-mpp", type=float, default=None, help="WSI inputs: tile resolution.")
@click.option("--thumb-mpp", default=8.0, show_default=True, help="WSI inputs: tissue search.")
@click.option("--min-tissue", default=0.5, show_default=True, help="Least tissue per tile.")
@click.option("--format", "image_format", type=click.Choice(["png", "jpg"]), default="png")
@seed_option()
@click.option("--overwrite", is_flag=True, help="Allow a non-empty OUT_DIR.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def simulate(
    *,
    inputs: tuple[Path, ...],
    out_dir: Path,
    profiles: tuple[str, ...],
    tile_size: int | None,
    n_tiles: int | None,
    stride: int | None,
    target_mpp: float | None,
    thumb_mpp: float,
    min_tissue: float,
    image_format: str,
    seed: int,
    overwrite: bool,
    no_progress: bool,
) -> None:
    """Single-scanner images (or WSIs) through every simulated scanner profile.

    INPUTS are image files, whole-slide images or folders of them; each image
    (or each of its tiles) becomes a specimen, each profile a scanner.
    """
    from tia_scanner_robust.data.demo import build_paired_from_images  # noqa: PLC0415

    try:
        collection = build_paired_from_images(
            _expand_inputs(inputs),
            out_dir,
            profiles=_resolve_profiles(profiles),
            tile_size=tile_size,
            n_tiles=n_tiles,
            stride=stride,
            target_mpp=target_mpp,
            thumb_mpp=thumb_mpp,
            min_tissue_fraction=min_tissue,
            image_format=image_format,
            seed=seed,
            overwrite=overwrite,
            progress=not no_progress,
        )
    except (ValueError, TypeError, FileNotFoundError) as error:
        raise click.ClickException(str(error)) from error
    click.echo(_summary(collection, out_dir))


@build_paired.command(name="demo")
@output_dir_option(
    text="Output folder (SCORPION layout, manifest.csv).",
    aliases=(),
    positional="old_out_dir",
    dest="out_dir",
)
@click.option("--tile-size", default=256, show_default=True, help="Tile side (px).")
@click.option("--n-tiles", default=9, show_default=True, help="Number of tiles.")
@click.option(
    "--profile",
    "profiles",
    multiple=True,
    help="Scanner profile name or profile YAML (repeat; default: every built-in profile).",
)
@seed_option()
@click.option("--overwrite", is_flag=True, help="Build into a non-empty non-demo folder.")
def demo(
    *,
    out_dir: Path,
    tile_size: int,
    n_tiles: int,
    profiles: tuple[str, ...],
    seed: int,
    overwrite: bool,
) -> None:
    """The offline demo set from TIAToolbox's bundled H&E image (reused if built)."""
    from tia_scanner_robust.data.demo import build_demo_dataset  # noqa: PLC0415

    try:
        collection = build_demo_dataset(
            out_dir,
            tile_size=tile_size,
            n_tiles=n_tiles,
            profiles=_resolve_profiles(profiles),
            seed=seed,
            overwrite=overwrite,
        )
    except (ValueError, TypeError) as error:
        raise click.ClickException(str(error)) from error
    click.echo(_summary(collection, out_dir))
