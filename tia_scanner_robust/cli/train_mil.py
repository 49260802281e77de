"""``tia-scanner-robust train-mil``: MIL baseline or ScanGen over stored features.

Reads a MIL config (a YAML file or a shipped name: ``mil_baseline``,
``mil_scangen``), applies overrides, trains with the plugin's trainer
(cross-entropy, best checkpoint by validation AUC, plus the ScanGen hook when
``scangen.lam > 0``), evaluates the held-out ``test`` specimens (task AUC,
scanner CoV, magnification CoV) and writes ``results.json`` in the output
folder. ``--compare`` instead runs baseline (``lambda = 0``) and ScanGen for
every ``--aggregators`` entry and ``--seeds`` value and writes
``comparison.json``/``comparison.md`` (paper Table 2 shape).

The features come from ``--store`` (a FeatureStore written by
``extract-features``, with ``split`` attributes ``train``/``scangen``/
``val``/``test``) or, with ``--synthetic``, from a synthetic FM-like store
built in the output folder (sizes from the config's ``synthetic`` section).

Examples:
    >>> from click.testing import CliRunner
    >>> args = ["--config", "mil_scangen", "-o", "unused", "--set", "bad"]
    >>> result = CliRunner().invoke(train_mil, args)
    >>> result.exit_code, "SECTION.KEY=VALUE" in result.output
    (2, True)

    On the command line::

        tia-scanner-robust train-mil --config mil_scangen --store features.zarr -o runs/sg
        tia-scanner-robust train-mil --config mil_scangen --synthetic --compare
            --aggregators gap,abmil --seeds 0,1,2 -o runs/table2

"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

__all__ = ["parse_set_options", "train_mil"]


def parse_set_options(items: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``["section.key=value", ...]`` to a nested dict (values parsed with ``yaml.safe_load``).

    Raises:
        click.BadParameter: On an item without ``=`` or a dotted key.

    Examples:
        >>> parse_set_options(["scangen.lam=0.5", "model.aggregator=abmil"])
        {'scangen': {'lam': 0.5}, 'model': {'aggregator': 'abmil'}}

    """
    import yaml  # noqa: PLC0415

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            msg = f"expected SECTION.KEY=VALUE, got {item!r}."
            raise click.BadParameter(msg, param_hint="--set")
        *path, last = key.split(".")
        node = out
        for part in path:
            node = node.setdefault(part, {})
        try:
            node[last] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            msg = f"{item!r}: value is not valid YAML ({err})."
            raise click.BadParameter(msg, param_hint="--set") from err
    return out


def _csv(value: str | None, cast: type = str) -> list[Any] | None:
    if value is None:
        return None
    return [cast(v.strip()) for v in value.split(",") if v.strip()]


@click.command(name="train-mil", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_spec",
    default="mil_scangen",
    show_default=True,
    help="YAML config file or shipped name (mil_baseline, mil_scangen).",
)
@click.option(
    "--store",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="FeatureStore (zarr folder) with train/scangen/val/test splits.",
)
@click.option("--synthetic", is_flag=True, help="Build a synthetic FM-like store in the output.")
@click.option(
    "-o",
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Run folder (checkpoints, logs, results.json).",
)
@click.option("--aggregator", default=None, help="model.aggregator: gap, abmil, dsmil, slotmil.")
@click.option(
    "--lam", type=click.FloatRange(min=0), default=None, help="scangen.lam (0: baseline)."
)
@click.option("--seed", type=click.IntRange(0), default=None, help="trainer.seed.")
@click.option("--max-steps", type=click.IntRange(1), default=None, help="trainer.max_steps.")
@click.option("--device", default=None, help="trainer.device: auto, cpu, cuda...")
@click.option("--resume", is_flag=True, help="Continue from OUTPUT_DIR/last.pt if it exists.")
@click.option(
    "--compare",
    is_flag=True,
    help="Baseline vs ScanGen for every --aggregators/--seeds value (Table 2 shape).",
)
@click.option("--aggregators", default=None, help="With --compare: comma-separated names.")
@click.option("--seeds", default=None, help="With --compare: comma-separated seeds.")
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="SECTION.KEY=VALUE",
    help="Override a config field (YAML value), e.g. --set scangen.alpha=0.5. Repeatable.",
)
def train_mil(
    config_spec: str,
    store: Path | None,
    *,
    synthetic: bool,
    output_dir: Path,
    aggregator: str | None,
    lam: float | None,
    seed: int | None,
    max_steps: int | None,
    device: str | None,
    resume: bool,
    compare: bool,
    aggregators: str | None,
    seeds: str | None,
    sets: tuple[str, ...],
) -> None:
    """Train (and evaluate) a MIL model over stored features, with or without ScanGen."""
    from tia_scanner_robust.experiments.scangen import (  # noqa: PLC0415
        compare_scangen,
        load_mil_config,
        make_synthetic_store,
        run_mil,
    )

    overrides = parse_set_options(sets)
    options = {
        "model": {"aggregator": aggregator},
        "scangen": {"lam": lam},
        "trainer": {"seed": seed, "max_steps": max_steps, "device": device},
    }
    for section, values in options.items():
        kept = {k: v for k, v in values.items() if v is not None}
        if kept:
            overrides.setdefault(section, {}).update(kept)
    try:
        config = load_mil_config(config_spec, overrides)
    except (FileNotFoundError, ValueError) as err:
        raise click.UsageError(str(err)) from err
    if synthetic and store is not None:
        msg = "Give either --store (or data.store) or --synthetic, not both."
        raise click.UsageError(msg)
    output_dir.mkdir(parents=True, exist_ok=True)
    if synthetic:
        feature_store: Any = output_dir / "synthetic_features.zarr"
        if not (resume and feature_store.exists()):
            click.echo(f"building synthetic features in {feature_store}")
            feature_store = make_synthetic_store(feature_store, **config["synthetic"])
    else:
        feature_store = store or config["data"].get("store")
        if feature_store is None:
            msg = "No features: pass --store, set data.store, or use --synthetic."
            raise click.UsageError(msg)
    if compare:
        if float(config["scangen"]["lam"]) <= 0:
            msg = "--compare needs scangen.lam > 0 (use the mil_scangen config or --lam)."
            raise click.UsageError(msg)
        result = compare_scangen(
            config,
            output_dir,
            store=feature_store,
            aggregators=_csv(aggregators) or [config["model"]["aggregator"]],
            seeds=_csv(seeds, int) or [int(config["trainer"]["seed"])],
        )
        click.echo((output_dir / "comparison.md").read_text(encoding="utf-8"))
        click.echo(f"wrote {output_dir / 'comparison.json'}")
        return
    result = run_mil(config, output_dir, store=feature_store, resume=resume)
    click.echo(json.dumps(result["test"], indent=2, default=str))
    click.echo(f"wrote {output_dir / 'results.json'}")
