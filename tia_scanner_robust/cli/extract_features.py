r"""``tia-scanner-robust extract-features``: patch features of a manifest into a FeatureStore.

Runs TIAToolbox's ``DeepFeatureExtractor`` over every row of a manifest
(one slide per row: a patch image or a WSI region, read and tiled at
``--patch-size``; or a whole WSI, streamed by the engine in WSI mode at the
row's ``mpp``, keeping tissue patches unless ``--no-tissue-mask``) and writes
per slide the patch features and coordinates, keyed by specimen, scanner and
magnification, with the row's label and split. Resumable: slides already
complete in the store are skipped; every slide is written atomically. See
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
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="FeatureStore (zarr folder); created if missing, resumed if present.",
)
@click.option("--patch-size", type=click.IntRange(1), default=224, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
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
        )
    except (ValueError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from err
    click.echo(json.dumps(dict(summary)))
