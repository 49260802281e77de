r"""``tia-scanner-robust extract-features``: patch features of a manifest into a FeatureStore.

Runs TIAToolbox's ``DeepFeatureExtractor`` over every row of a manifest
(one slide per row: a patch image or a WSI region, read and tiled at
``--patch-size``; or a whole WSI, streamed by the engine in WSI mode at the
row's ``mpp``, keeping tissue patches unless ``--no-tissue-mask``) and writes
per slide the patch features and coordinates, keyed by specimen, scanner and
magnification, with the row's label and split. Resumable: slides already
complete in the store are skipped; every slide is written atomically. The
store records what made it (model, a digest of the weights, patch size,
normalisation; each slide its mpp): resuming with other settings is refused,
``--overwrite`` starts the store afresh. See
:mod:`tia_scanner_robust.features.extract`.

Examples:
    >>> from click.testing import CliRunner
    >>> result = CliRunner().invoke(extract_features, ["--help"])
    >>> result.exit_code, "--manifest" in result.output
    (0, True)

    On the command line::

        tia-scanner-robust extract-features --manifest data/manifest.csv \
            --model UNI -o features/uni.zarr
        tia-scanner-robust extract-features --manifest data/manifest.csv \
            --model resnet18 --no-pretrained -o features/resnet18_random.zarr

"""

from __future__ import annotations

import json
from pathlib import Path

import click

from tia_scanner_robust.cli._options import device_option, output_dir_option, seed_option

__all__ = ["extract_features"]


@click.command(name="extract-features", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--manifest",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="Manifest CSV (specimen_id, scanner, path, magnification, label, split...).",
)
@click.option(
    "--model",
    required=True,
    help="TIAToolbox foundation-model name (UNI, H-optimus-0, ...) or any timm model name.",
)
@output_dir_option(
    text="FeatureStore (zarr folder); created if missing, resumed if present.",
    aliases=("--output",),
    dest="output",
)
@click.option("--patch-size", type=click.IntRange(1), default=224, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
@device_option()
@click.option(
    "--pretrained/--no-pretrained",
    default=True,
    show_default=True,
    help="--no-pretrained: random initialisation (offline tests; NOT a foundation model).",
)
@click.option(
    "--tissue-mask/--no-tissue-mask",
    default=True,
    show_default=True,
    help="Whole-slide rows: keep only patches on tissue (TIAToolbox's automatic tissue mask).",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Delete the store's features first and extract afresh (default: resume; a store "
    "made with another model, weights, patch size or normalisation is refused).",
)
@seed_option(
    text="Seed of a random initialisation (--no-pretrained), so that a run can be resumed."
)
@click.option(
    "--incomplete",
    type=click.Choice(["error", "drop"]),
    default="error",
    show_default=True,
    help="Specimens missing a scanner: fail, or drop them.",
)
def extract_features(
    manifest: Path,
    model: str,
    output: Path,
    *,
    patch_size: int,
    batch_size: int,
    device: str,
    pretrained: bool,
    tissue_mask: bool,
    overwrite: bool,
    seed: int,
    incomplete: str,
) -> None:
    """Extract patch features of every manifest row into a FeatureStore."""
    from tia_scanner_robust.data.manifest import read_manifest  # noqa: PLC0415
    from tia_scanner_robust.features.extract import (  # noqa: PLC0415
        extract_features as run_extraction,
    )

    try:
        collection = read_manifest(manifest, incomplete=incomplete)
        summary = run_extraction(
            collection,
            output,
            model,
            patch_size=patch_size,
            batch_size=batch_size,
            device=device,
            pretrained=pretrained,
            tissue_mask=tissue_mask,
            overwrite=overwrite,
            seed=seed,
        )
    except (ValueError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from err
    click.echo(json.dumps(dict(summary)))
