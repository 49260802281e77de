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

from tia_scanner_robust.cli._options import (
    check_device,
    check_finite_fields,
    device_option,
    lock_output_dir,
    no_progress_option,
    overwrite_option,
    parse_seeds,
    resources_options,
    seed_option,
)

__all__ = [
    "check_aggregators",
    "load_cli_mil_config",
    "open_feature_store",
    "parse_set_options",
    "train_mil",
]


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


def open_feature_store(path: str | Path, *, name: str = "--store") -> Any:
    """Open a FeatureStore read-only, or refuse ``path`` naming ``name``.

    Raises:
        click.BadParameter: If ``path`` is not a readable feature store.

    Examples:
        >>> import tempfile
        >>> open_feature_store(tempfile.mkdtemp())
        Traceback (most recent call last):
        ...
        click.exceptions.BadParameter: ... is not a feature store written by extract-features ...

    """
    from tia_scanner_robust.data.feature_store import FeatureStore  # noqa: PLC0415

    try:
        store = FeatureStore(path, mode="r")
        store.slides()
    except Exception as err:  # zarr raises many kinds; all mean "not a store"
        reason = " ".join(str(err).split()) or type(err).__name__
        msg = f"{path} is not a feature store written by extract-features ({reason})."
        raise click.BadParameter(msg, param_hint=name) from err
    return store


def load_cli_mil_config(config_spec: str, overrides: dict[str, Any]) -> Any:
    """The MIL config, or a usage error naming the file or field (``--config``, NaN fields)."""
    from tia_scanner_robust.training.mil_config import load_mil_config  # noqa: PLC0415

    try:
        config = load_mil_config(config_spec, overrides)
    except UnicodeDecodeError as err:
        msg = f"{config_spec}: not UTF-8 text (byte {err.start}: {err.reason})."
        raise click.BadParameter(msg, param_hint="--config") from err
    except (FileNotFoundError, ValueError, TypeError) as err:
        raise click.BadParameter(str(err), param_hint="--config") from err
    check_finite_fields(config.to_dict(), source=f"config {config_spec}:", hint="--config/--set")
    check_device(config.trainer.device, allow_auto=True, name="trainer.device")
    check_aggregators([config.model.aggregator], name="--aggregator/model.aggregator")
    return config


def check_aggregators(names: list[str], *, name: str = "--aggregators") -> list[str]:
    """Refuse MIL aggregator names that do not exist, naming the option.

    Examples:
        >>> check_aggregators(["gap", "abmil"])
        ['gap', 'abmil']

    """
    from tia_scanner_robust.models import AGGREGATORS  # noqa: PLC0415

    unknown = [n for n in names if str(n).lower() not in AGGREGATORS]
    if unknown:
        msg = f"unknown aggregator(s) {unknown}; valid: {', '.join(sorted(AGGREGATORS))}."
        raise click.BadParameter(msg, param_hint=name)
    return names


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
@seed_option(default=None, text="trainer.seed: seed of every random draw.")
@click.option("--max-steps", type=click.IntRange(1), default=None, help="trainer.max_steps.")
@device_option(default=None, allow_auto=True, text="trainer.device: auto, cpu, cuda, cuda:N, mps.")
@click.option("--resume", is_flag=True, help="Continue from OUTPUT_DIR/last.pt if it exists.")
@overwrite_option(
    text="Start afresh in a run folder that holds an earlier run, replacing the files this "
    "run writes (nothing else is deleted)."
)
@resources_options()
@no_progress_option()
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
    overwrite: bool,
    workers: int | None,
    threads: int | None,
    no_progress: bool,
    compare: bool,
    aggregators: str | None,
    seeds: str | None,
    sets: tuple[str, ...],
) -> None:
    """Train (and evaluate) a MIL model over stored features, with or without ScanGen."""
    from tia_scanner_robust.training.fm_benchmark import compare_scangen  # noqa: PLC0415
    from tia_scanner_robust.training.mil import run_mil  # noqa: PLC0415
    from tia_scanner_robust.training.resources import set_threads  # noqa: PLC0415
    from tia_scanner_robust.training.synthetic import make_synthetic_store  # noqa: PLC0415

    overrides = parse_set_options(sets)
    options = {
        "model": {"aggregator": aggregator},
        "scangen": {"lam": lam},
        "trainer": {
            "seed": seed,
            "max_steps": max_steps,
            "device": device,
            "progress": False if no_progress else None,
            "num_workers": workers,
        },
    }
    for section, values in options.items():
        kept = {k: v for k, v in values.items() if v is not None}
        if kept:
            overrides.setdefault(section, {}).update(kept)
    config = load_cli_mil_config(config_spec, overrides)
    if synthetic and store is not None:
        msg = "Give either --store (or data.store) or --synthetic, not both."
        raise click.UsageError(msg)
    if store is not None:
        open_feature_store(store)
    elif not synthetic and config.data.store is not None:
        open_feature_store(config.data.store, name="data.store")
    elif not synthetic:
        msg = "No features: pass --store, set data.store, or use --synthetic."
        raise click.UsageError(msg)
    if compare and config.scangen.lam <= 0:
        msg = "--compare needs scangen.lam > 0 (use the mil_scangen config or --lam)."
        raise click.UsageError(msg)
    names = check_aggregators(_csv(aggregators) or [config.model.aggregator])
    seed_list = parse_seeds(seeds) or [config.trainer.seed]
    lock_output_dir(output_dir, resume=resume, overwrite=overwrite)
    set_threads(threads, config.trainer.num_workers)
    if synthetic:
        feature_store: Any = output_dir / "synthetic_features.zarr"
        if not (resume and feature_store.exists()):
            click.echo(f"building synthetic features in {feature_store}")
            feature_store = make_synthetic_store(feature_store, **config.synthetic.store_kwargs())
    else:
        feature_store = store or config.data.store
    if compare:
        result = compare_scangen(
            config,
            output_dir,
            store=feature_store,
            aggregators=names,
            seeds=seed_list,
        )
        click.echo((output_dir / "comparison.md").read_text(encoding="utf-8"))
        click.echo(f"wrote {output_dir / 'comparison.json'}")
        return
    result = run_mil(config, output_dir, store=feature_store, resume=resume)
    click.echo(json.dumps(result["test"], indent=2, default=str))
    click.echo(f"wrote {output_dir / 'results.json'}")
