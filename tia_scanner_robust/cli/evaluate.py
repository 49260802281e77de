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

    Labelled data that is not paired (different tissue per scanner, a
    manifest with masks or labels) gets the unpaired protocol (per-scanner
    Dice or accuracy, mean, minimum and worst scanner); ``--protocol auto``
    (default) picks it when no specimen is shared across scanners::

        tia-scanner-robust evaluate --data cosas.csv --protocol unpaired -o results/

"""

from __future__ import annotations

from pathlib import Path

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
    load_collection,
    open_collection,
    paired_data_options,
    resolution_options,
    start_command,
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
@weights_option(text="Local weights (state dict) for a TIAToolbox pretrained name.")
@click.option(
    "--task",
    type=click.Choice(["segmentation", "classification", "embedding"]),
    default="segmentation",
    show_default=True,
)
@output_dir_option(text="Output folder (report.json, report.html, figures).", dest="out_dir")
@overwrite_option()
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--num-workers", default=0, show_default=True, type=click.IntRange(min=0))
@device_option()
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
@projection_option(text="Feature projection of the paired analysis (embeddings).")
@click.option(
    "--protocol",
    type=click.Choice(["auto", "paired", "unpaired"]),
    default="auto",
    show_default=True,
    help="paired: consistency of the same tissue across scanners (plus per-scanner task "
    "metrics when masks/labels exist); unpaired: per-scanner task metrics against ground "
    "truth on different tissue per scanner; auto: paired when specimens are shared.",
)
@click.option(
    "--n-resamples",
    "n_resamples",
    default=1000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Bootstrap resamples of the 95% intervals (over specimens).",
)
@resolution_options
@click.option(
    "--empty-pairs",
    type=click.Choice(["exclude", "one", "nan"]),
    default="exclude",
    show_default=True,
    help="Segmentation: a specimen with no foreground in either map of a pair is left out of "
    "paired Dice (exclude; counted), scores 1 (one: SCORPION's definition) or makes the pair "
    "NaN (nan).",
)
@click.option("--no-save-predictions", is_flag=True, help="Do not keep per-scanner predictions.")
@no_progress_option()
def evaluate(
    *,
    data: str,
    data_format: str,
    model: str,
    weights: Path | None,
    task: str,
    out_dir: Path,
    overwrite: bool,
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
    protocol: str,
    n_resamples: int,
    mpp: float | None,
    patch_size: int | None,
    size_policy: str,
    empty_pairs: str,
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
    from tia_scanner_robust.engines.unpaired import (  # noqa: PLC0415
        UnpairedEvaluator,
        unpaired_from_paired,
    )
    from tia_scanner_robust.report import write_report  # noqa: PLC0415

    samples, chosen = _choose_protocol(protocol, data, data_format)
    settings = {
        "task": task,
        "weights": weights,
        "batch_size": batch_size,
        "num_workers": num_workers,
        "device": device,
        "chunk_size": chunk_size,
        "ignore_background": ignore_background,
        "positive_class": positive_class,
        "n_examples": n_examples,
        "seed": seed,
        "verbose": not no_progress,
        "mpp": mpp,
        "patch_size": patch_size,
        "size_policy": size_policy,
    }
    if chosen == "unpaired" and samples is not None:
        start_command(out_dir, seed=seed, overwrite=overwrite)
    else:
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
    if chosen == "unpaired":
        if samples is None:
            samples = list(collection)
        scanners = sorted({s.scanner for s in samples})
        click.echo(
            f"Evaluating {len(samples)} samples of {len(scanners)} scanners {scanners} "
            f"(unpaired protocol, {task}, model {model})."
        )
        try:
            evaluator = UnpairedEvaluator(model, n_resamples=n_resamples, **settings)
            unpaired = evaluator.evaluate(samples, out_dir)
            from tia_scanner_robust.report.unpaired import (  # noqa: PLC0415
                write_unpaired_report,
            )

            paths = write_unpaired_report(unpaired, out_dir)
        except (ValueError, TypeError, FileNotFoundError) as error:
            raise click.ClickException(str(error)) from error
        click.echo(unpaired.summary())
        click.echo(f"Report: {paths['html']}")
        click.echo(f"All numbers: {paths['json']}")
        return

    click.echo(
        f"Evaluating {len(collection.groups)} specimens x {len(collection.scanners)} scanners "
        f"{collection.scanners} ({task}, model {model})."
    )
    try:
        evaluator = ScannerConsistencyEvaluator(
            model,
            save_predictions=not no_save_predictions,
            n_resamples=n_resamples,
            empty_pairs=empty_pairs,
            **settings,
        )
        result = evaluator.evaluate(collection, out_dir)
        labels = {s: [x.label for x in collection.by_scanner(s)] for s in collection.scanners}
        unpaired = unpaired_from_paired(result, labels=labels, n_resamples=n_resamples)
        paths = write_report(result, out_dir, projection=projection, unpaired=unpaired)
    except (ValueError, TypeError, FileNotFoundError) as error:
        raise click.ClickException(str(error)) from error
    click.echo(result.summary())
    if unpaired is not None:
        click.echo(unpaired.summary())
    click.echo(f"Report: {paths['html']}")
    click.echo(f"All numbers: {paths['json']}")


def _choose_protocol(protocol: str, data: str, data_format: str) -> tuple[list | None, str]:
    """The protocol to run, and the manifest's samples when they were read to decide it.

    A manifest is read without requiring pairs, so that ``auto`` can see
    whether specimens are shared; other data (SCORPION folders, the demo) is
    paired by construction.
    """
    from tia_scanner_robust.engines.unpaired import (  # noqa: PLC0415
        choose_protocol,
        read_unpaired_manifest,
    )

    path = Path(data)
    is_manifest = data != "demo" and (
        data_format == "manifest" or (data_format == "auto" and path.is_file())
    )
    if protocol == "paired" or not is_manifest:
        return None, "unpaired" if protocol == "unpaired" else "paired"
    try:
        samples = read_unpaired_manifest(path)
    except (ValueError, FileNotFoundError) as error:
        raise click.ClickException(str(error)) from error
    return samples, choose_protocol(protocol, samples)
