"""``tia-scanner-robust analyze``: paired versus unpaired analysis figures.

SCORPION's section 2.2 as a command: per-sample RGB statistics (mean and std
of R, G, B) of every scanner, plotted as they are (unpaired) and minus the
reference scanner's values of the same specimen (paired), with density
contours (:func:`~tia_scanner_robust.metrics.analysis.plot_paired_unpaired`).
With ``--features MODEL`` the same two views are drawn for the model's
embeddings (extracted with TIAToolbox's ``DeepFeatureExtractor`` through the
evaluator, projected with UMAP or PCA).

Offline, ``--features resnet18`` (or any torchvision backbone name) gives a
*randomly initialised* TIAToolbox ``CNNBackbone``: it exercises the pipeline
but its features carry no pretrained meaning. Pretrained foundation models
(``UNI``, ``H-optimus-0``...) need the Hugging Face hub.

Examples:
    >>> from click.testing import CliRunner
    >>> result = CliRunner().invoke(analyze, ["--help"])
    >>> result.exit_code, "--reference" in result.output
    (0, True)

"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from tia_scanner_robust.cli._options import (
    device_option,
    no_progress_option,
    output_dir_option,
    overwrite_option,
    projection_option,
    weights_option,
)
from tia_scanner_robust.cli._paired_data import (
    open_collection,
    paired_data_options,
    resolution_options,
)

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["analyze"]


@click.command(name="analyze", context_settings={"help_option_names": ["-h", "--help"]})
@paired_data_options
@output_dir_option(text="Output folder (figures, analysis.json).", dest="out_dir")
@overwrite_option()
@click.option("--reference", default=None, help="Reference scanner (default: the first one).")
@click.option(
    "--features",
    default="none",
    show_default=True,
    help="'none', or a feature model (TIAToolbox name or checkpoint) for the feature views.",
)
@weights_option(text="Local weights for --features.")
@projection_option()
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1))
@resolution_options
@device_option()
@no_progress_option()
def analyze(
    *,
    data: str,
    data_format: str,
    out_dir: Path,
    overwrite: bool,
    reference: str | None,
    features: str,
    weights: Path | None,
    projection: str,
    incomplete: str,
    batch_size: int,
    mpp: float | None,
    patch_size: int | None,
    size_policy: str,
    device: str,
    demo_tiles: int,
    demo_tile_size: int,
    seed: int,
    no_progress: bool,
) -> None:
    """Paired vs unpaired RGB statistics (and feature) figures of a paired dataset.

    Writes OUT_DIR/rgb_paired_unpaired.png, OUT_DIR/analysis.json (the numbers
    behind the figures) and, with --features, OUT_DIR/features_paired_unpaired.png.
    """
    from tqdm.auto import tqdm  # noqa: PLC0415

    from tia_scanner_robust._io import atomic_write_text, to_jsonable  # noqa: PLC0415
    from tia_scanner_robust.data.paired import load_sample_image  # noqa: PLC0415
    from tia_scanner_robust.metrics.analysis import (  # noqa: PLC0415
        deviation_summary,
        plot_paired_unpaired,
        rgb_patch_statistics,
    )

    collection = open_collection(
        data,
        data_format,
        out_dir,
        incomplete=incomplete,
        seed=seed,
        demo_tiles=demo_tiles,
        demo_tile_size=demo_tile_size,
        overwrite=overwrite,
    )
    scanners = collection.scanners
    if reference is not None and reference not in scanners:
        msg = f"--reference {reference!r} is not a scanner of the data: {scanners}."
        raise click.ClickException(msg)
    try:
        stats = {}
        for scanner in tqdm(scanners, desc="RGB statistics", disable=no_progress):
            samples = collection.by_scanner(scanner)
            stats[scanner] = rgb_patch_statistics(load_sample_image(s) for s in samples)
        summary = {
            "reference": reference or scanners[0],
            "rgb": deviation_summary(stats, reference),
        }
        paths = plot_paired_unpaired(
            out_dir, stats_by_scanner=stats, reference=reference, seed=seed
        )
        if features != "none":
            from tia_scanner_robust.engines.consistency import (  # noqa: PLC0415
                ScannerConsistencyEvaluator,
            )

            evaluator = ScannerConsistencyEvaluator(
                features,
                task="embedding",
                weights=weights,
                batch_size=batch_size,
                device=device,
                save_predictions=False,
                n_examples=0,
                seed=seed,
                verbose=not no_progress,
                mpp=mpp,
                patch_size=patch_size,
                size_policy=size_policy,
            )
            result = evaluator.evaluate(collection, out_dir / "features")
            feats = result.outputs or {}
            paths += plot_paired_unpaired(
                out_dir,
                features_by_scanner=feats,
                reference=reference,
                projection=projection,
                seed=seed,
            )
            summary["features"] = {
                "model": result.model,
                "input_resolution": {
                    s: row.get("input_resolution") for s, row in result.per_scanner.items()
                },
                "warnings": result.warnings,
                "cosine": result.consistency["cosine"].to_dict(per_sample=False),
                "paired_mean_norm": {
                    s: v["paired_mean_norm"]
                    for s, v in deviation_summary(feats, reference)["scanners"].items()
                },
            }
    except (ValueError, TypeError, FileNotFoundError) as error:
        raise click.ClickException(str(error)) from error
    json_path = atomic_write_text(
        out_dir / "analysis.json",
        json.dumps(to_jsonable(summary), indent=2, allow_nan=False) + "\n",
    )
    for scanner, values in summary["rgb"]["scanners"].items():
        click.echo(
            f"{scanner}: unpaired centroid shift {values['centroid_shift']:.2f}, "
            f"mean paired deviation {values['paired_mean_norm']:.2f} (RGB statistics)"
        )
    for path in paths:
        click.echo(f"Figure: {path}")
    click.echo(f"Numbers: {json_path}")
