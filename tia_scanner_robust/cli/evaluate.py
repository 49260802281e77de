"""``tia-scanner-robust evaluate``: scanner-consistency evaluation and report.

A thin wrapper over
:class:`~tia_scanner_robust.engines.consistency.ScannerConsistencyEvaluator`
and :func:`~tia_scanner_robust.report.write_report`: read a paired dataset
(SCORPION folder or manifest CSV, or build the offline demo set), run the model
once per scanner through TIAToolbox's engine, write ``report.json``,
``report.html`` and the figures into ``OUT_DIR``, and print a short summary.

Examples:
    >>> from click.testing import CliRunner
    >>> result = CliRunner().invoke(evaluate, ["--help"])
    >>> result.exit_code, "--task" in result.output
    (0, True)

    On the command line (offline demo data, the builtin model)::

        tia-scanner-robust evaluate --data demo -o results/

"""

from __future__ import annotations

from pathlib import Path

import click

from tia_scanner_robust.cli._paired_data import (
    load_collection,
    open_collection,
    paired_data_options,
)

__all__ = ["evaluate", "load_collection"]


@click.command(name="evaluate", context_settings={"help_option_names": ["-h", "--help"]})
@paired_data_options
@click.option(
    "--model",
    default="builtin",
    show_default=True,
    help="'builtin', a TIAToolbox pretrained name, or a checkpoint file (.pt).",
)
@click.option(
    "--weights",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Local weights (state dict) for a TIAToolbox pretrained name.",
)
@click.option(
    "--task",
    type=click.Choice(["segmentation", "classification", "embedding"]),
    default="segmentation",
    show_default=True,
)
@click.option("-o", "--out-dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--num-workers", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--device", default="cpu", show_default=True, help="Torch device (cpu, cuda...).")
@click.option(
    "--chunk-size",
    default=64,
    show_default=True,
    type=click.IntRange(min=1),
    help="Patch mode: specimens per engine call (bounds memory).",
)
@click.option("--ignore-background", is_flag=True, help="Segmentation: skip class 0 in Dice.")
@click.option("--positive-class", default=1, show_default=True, help="Classification: CoV class.")
@click.option(
    "--examples",
    "n_examples",
    default=1,
    show_default=True,
    type=click.IntRange(min=0),
    help="Worst-pair examples in the report.",
)
@click.option(
    "--projection",
    type=click.Choice(["umap", "pca"]),
    default="umap",
    show_default=True,
    help="Feature projection of the paired analysis (embeddings).",
)
@click.option("--no-save-predictions", is_flag=True, help="Do not keep per-scanner predictions.")
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
def evaluate(
    *,
    data: str,
    data_format: str,
    model: str,
    weights: Path | None,
    task: str,
    out_dir: Path,
    batch_size: int,
    num_workers: int,
    device: str,
    chunk_size: int,
    incomplete: str,
    ignore_background: bool,
    positive_class: int,
    n_examples: int,
    projection: str,
    no_save_predictions: bool,
    demo_tiles: int,
    demo_tile_size: int,
    seed: int,
    no_progress: bool,
) -> None:
    """Measure how consistent a model is across scanners; write report.html.

    Runs the model once per scanner with TIAToolbox's engine for the task
    (SemanticSegmentor, PatchPredictor or DeepFeatureExtractor; patch mode for
    patch datasets, WSI mode for whole-slide manifests), scores every scanner
    pair (paired Dice / label agreement and |dp| / cosine and top-k), the CoV
    across scanners and, when masks or labels exist, the task metrics; writes
    OUT_DIR/report.json, OUT_DIR/report.html and PNG figures.
    """
    from tia_scanner_robust.engines.consistency import (  # noqa: PLC0415 - lazy CLI import
        ScannerConsistencyEvaluator,
    )
    from tia_scanner_robust.report import write_report  # noqa: PLC0415

    collection = open_collection(
        data,
        data_format,
        out_dir,
        incomplete=incomplete,
        seed=seed,
        demo_tiles=demo_tiles,
        demo_tile_size=demo_tile_size,
    )
    click.echo(
        f"Evaluating {len(collection.groups)} specimens x {len(collection.scanners)} scanners "
        f"{collection.scanners} ({task}, model {model})."
    )
    try:
        evaluator = ScannerConsistencyEvaluator(
            model,
            task=task,
            weights=weights,
            batch_size=batch_size,
            num_workers=num_workers,
            device=device,
            chunk_size=chunk_size,
            ignore_background=ignore_background,
            positive_class=positive_class,
            n_examples=n_examples,
            save_predictions=not no_save_predictions,
            seed=seed,
            verbose=not no_progress,
        )
        result = evaluator.evaluate(collection, out_dir)
        paths = write_report(result, out_dir, projection=projection)
    except (ValueError, TypeError, FileNotFoundError) as error:
        raise click.ClickException(str(error)) from error
    click.echo(result.summary())
    click.echo(f"Report: {paths['html']}")
    click.echo(f"All numbers: {paths['json']}")
