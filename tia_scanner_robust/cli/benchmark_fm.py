r"""``tia-scanner-robust benchmark-fm``: feature extractors without and with ScanGen (Table 1).

For every feature extractor: extract the manifest's patch features
(``--manifest``, resumable, into ``OUTPUT/features/<model>.zarr``) or build a
synthetic FM-like store (``--synthetic``: the worlds of
:data:`~tia_scanner_robust.training.fm_benchmark.SYNTHETIC_EXTRACTORS`, which
are NOT real foundation models), then train the MIL baseline (``lambda = 0``)
and ScanGen with the same config and seeds and evaluate held-out specimens.
Writes ``benchmark.md`` and ``benchmark.json`` (rows: feature extractors;
columns: AUC, scanner CoV, magnification CoV, without and with ScanGen,
delta %).

Slides without ScanGen splits (``train``/``scangen``/``val``/``test``) are
split by specimen (0.4/0.2/0.2/0.2, stratified by label).

Examples:
    >>> from click.testing import CliRunner
    >>> result = CliRunner().invoke(benchmark_fm, ["-o", "unused"])
    >>> result.exit_code, "--manifest" in result.output
    (2, True)

    On the command line::

        tia-scanner-robust benchmark-fm --manifest data/manifest.csv \
            --models UNI,H-optimus-0,Virchow2 -o runs/table1
        tia-scanner-robust benchmark-fm --synthetic --seeds 0,1,2 -o runs/table1_synthetic

"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from tia_scanner_robust.cli._options import (
    device_option,
    lock_output_dir,
    overwrite_option,
    parse_seeds,
)
from tia_scanner_robust.cli.train_mil import load_cli_mil_config, parse_set_options

__all__ = ["benchmark_fm"]

_SPLITS = {"train", "scangen", "val", "test"}


@click.command(name="benchmark-fm", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--manifest",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Manifest CSV of the slides/patches (with labels).",
)
@click.option(
    "--models",
    default=None,
    help="Comma-separated feature extractor names (with --synthetic: a subset of the "
    "synthetic worlds; default all).",
)
@click.option("--synthetic", is_flag=True, help="Synthetic FM-like feature worlds instead.")
@click.option(
    "-o",
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Output folder (features, runs, benchmark.md/json).",
)
@click.option("--config", "config_spec", default="mil_scangen", show_default=True)
@click.option("--seeds", default="0", show_default=True, help="Comma-separated trainer seeds.")
@click.option("--patch-size", type=click.IntRange(1), default=224, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
@device_option()
@click.option(
    "--resume",
    is_flag=True,
    help="Continue a benchmark in OUTPUT_DIR (features already extracted are reused).",
)
@overwrite_option()
@click.option(
    "--pretrained/--no-pretrained",
    default=True,
    show_default=True,
    help="--no-pretrained: random initialisation (NOT a foundation model).",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="SECTION.KEY=VALUE",
    help="Override a MIL config field, e.g. --set trainer.max_steps=200. Repeatable.",
)
def benchmark_fm(
    manifest: Path | None,
    models: str | None,
    output_dir: Path,
    config_spec: str,
    seeds: str,
    *,
    synthetic: bool,
    patch_size: int,
    batch_size: int,
    device: str,
    resume: bool,
    overwrite: bool,
    pretrained: bool,
    sets: tuple[str, ...],
) -> None:
    """Benchmark feature extractors: AUC and CoV without and with ScanGen."""
    from tia_scanner_robust.training.fm_benchmark import (  # noqa: PLC0415
        SYNTHETIC_EXTRACTORS,
        benchmark_feature_extractors,
    )
    from tia_scanner_robust.training.mil import assign_scangen_splits  # noqa: PLC0415
    from tia_scanner_robust.training.synthetic import make_synthetic_store  # noqa: PLC0415

    if synthetic == (manifest is not None):
        msg = "Give exactly one of --manifest (with --models) or --synthetic."
        raise click.UsageError(msg)
    config = load_cli_mil_config(config_spec, parse_set_options(sets))
    seed_list = parse_seeds(seeds) or [0]
    if config.scangen.lam <= 0:
        msg = "benchmark-fm needs scangen.lam > 0 (the mil_scangen config)."
        raise click.UsageError(msg)
    lock_output_dir(output_dir, resume=resume, overwrite=overwrite)
    stores: dict[str, Any] = {}
    if synthetic:
        base = config.synthetic.store_kwargs()
        base["magnifications"] = ["40x", "20x"]  # so the magnification CoV column is defined
        names = [m.strip() for m in (models or "").split(",") if m.strip()]
        unknown = sorted(set(names) - set(SYNTHETIC_EXTRACTORS))
        if unknown:
            msg = (
                f"Unknown synthetic extractor(s) {unknown}; valid: {sorted(SYNTHETIC_EXTRACTORS)}."
            )
            raise click.UsageError(msg)
        for name, kwargs in SYNTHETIC_EXTRACTORS.items():
            if names and name not in names:
                continue
            path = output_dir / "features" / f"{name}.zarr"
            click.echo(f"building {name} in {path}")
            world = {**dict(base.get("world") or {}), **dict(kwargs.get("world") or {})}
            stores[name] = make_synthetic_store(path, **{**base, **kwargs, "world": world})
    else:
        if not models:
            msg = "--manifest needs --models (comma-separated names)."
            raise click.UsageError(msg)
        from tia_scanner_robust.data.manifest import read_manifest  # noqa: PLC0415
        from tia_scanner_robust.features.extract import extract_features  # noqa: PLC0415

        collection = read_manifest(manifest, incomplete="drop")
        for name in [m.strip() for m in models.split(",") if m.strip()]:
            path = output_dir / "features" / f"{name}.zarr"
            extract_features(
                collection,
                path,
                name,
                patch_size=patch_size,
                batch_size=batch_size,
                device=device,
                pretrained=pretrained,
            )
            from tia_scanner_robust.data.feature_store import FeatureStore  # noqa: PLC0415

            store = FeatureStore(path, mode="r+")
            if not {s.split for s in store.slides()} >= _SPLITS:
                assign_scangen_splits(store, seed=seed_list[0] if seed_list else 0)
            stores[name] = store
    benchmark_feature_extractors(stores, config, output_dir, seeds=seed_list)
    click.echo((output_dir / "benchmark.md").read_text(encoding="utf-8"))
    click.echo(f"wrote {output_dir / 'benchmark.json'}")
