r"""``tia-scanner-robust train``: train a segmentation model from a YAML config.

A thin wrapper over :func:`~tia_scanner_robust.training.builder.build_trainer`
and :meth:`~tia_scanner_robust.training.trainer.Trainer.fit`: read the config
(a YAML file or a shipped name such as ``baseline`` or ``fda_simcons``, see
``--list-configs``), apply the command-line overrides, train, and print where
the best checkpoint is. A config error exits with code 2 and a message naming
the field.

Examples:
    >>> from click.testing import CliRunner
    >>> result = CliRunner().invoke(train, ["--list-configs"])
    >>> result.exit_code, "randstainna_simcons" in result.output
    (0, True)
    >>> result = CliRunner().invoke(train, ["--config", "baseline", "--set", "trainer.lr=-1"])
    >>> result.exit_code, "TrainerConfig.lr must be > 0" in result.output
    (2, True)

    On the command line::

        tia-scanner-robust train --config fda_simcons --train-dir data/train \
            --val-dir data/val --output-dir runs/fda_simcons
        tia-scanner-robust train --config my_experiment.yaml --resume auto

"""

from __future__ import annotations

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
    resources_options,
    seed_option,
)

__all__ = ["train"]


def _list_configs(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from tia_scanner_robust.training.configs import list_configs  # noqa: PLC0415

    configs = list_configs()
    width = max(len(name) for name in configs)
    for name, description in configs.items():
        click.echo(f"{name:<{width}}  {description}")
    ctx.exit(0)


def _overrides(
    sets: tuple[str, ...],
    *,
    output_dir: Path | None,
    seed: int | None,
    device: str | None,
    train_dir: Path | None,
    val_dir: Path | None,
) -> dict[str, Any]:
    from tia_scanner_robust.training.configs import (  # noqa: PLC0415
        merge_overrides,
        parse_overrides,
    )

    try:
        overrides = parse_overrides(sets)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--set") from err
    options: dict[str, Any] = {"trainer": {}, "data": {}}
    if output_dir is not None:
        options["trainer"]["output_dir"] = str(output_dir)
    if seed is not None:
        options["trainer"]["seed"] = seed
    if device is not None:
        options["trainer"]["device"] = device
    if train_dir is not None:
        options["data"]["train_dir"] = str(train_dir)
    if val_dir is not None:
        options["data"]["val_dir"] = str(val_dir)
    return merge_overrides(overrides, {k: v for k, v in options.items() if v})


def _best_step(history: list[dict[str, Any]]) -> str:
    """``", step N"`` of the last row marked best (validation every N steps), else ``""``."""
    steps = [row.get("step") for row in history if row.get("is_best")]
    return f", step {steps[-1]}" if steps and steps[-1] is not None else ""


@click.command(name="train", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_spec",
    metavar="CONFIG",
    help="YAML config file, or a shipped config name (see --list-configs).",
)
@click.option(
    "--resume",
    default=None,
    metavar="auto|PATH",
    help="Continue from OUTPUT_DIR/last.pt ('auto', if it exists) or from a checkpoint file.",
)
@click.option(
    "-o",
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Run folder: checkpoints and logs (overrides trainer.output_dir).",
)
@overwrite_option(
    text="Start afresh in a run folder that holds an earlier run, replacing the files this "
    "run writes (nothing else is deleted)."
)
@seed_option(default=None, text="trainer.seed: seed of every random draw.")
@device_option(default=None, allow_auto=True, text="trainer.device: auto, cpu, cuda, cuda:N, mps.")
@click.option(
    "--train-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="data.train_dir (a folder with images/ and masks/).",
)
@click.option(
    "--val-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="data.val_dir (a folder with images/ and masks/).",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="SECTION.KEY=VALUE",
    help="Override any config field (value parsed as YAML), e.g. --set trainer.epochs=20 "
    "--set model.encoder_weights=imagenet. Repeatable.",
)
@click.option(
    "--stop-at-step",
    type=click.IntRange(min=1),
    default=None,
    help="Stop (after writing last.pt) once this many optimiser steps are done.",
)
@resources_options()
@no_progress_option()
@click.option(
    "--list-configs",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_list_configs,
    help="List the shipped configs and exit.",
)
def train(
    *,
    config_spec: str | None,
    resume: str | None,
    output_dir: Path | None,
    overwrite: bool,
    seed: int | None,
    device: str | None,
    train_dir: Path | None,
    val_dir: Path | None,
    sets: tuple[str, ...],
    stop_at_step: int | None,
    workers: int | None,
    threads: int | None,
    no_progress: bool,
) -> None:
    """Train a segmentation model (optionally with SimCons) from a YAML config.

    CONFIG is a YAML file with trainer/model/data/hooks sections (see
    docs/training.md) or a shipped name: baseline, colorjitter, randstainna,
    fda, or <one of those three>_simcons.
    """
    from tia_scanner_robust.training.builder import build_trainer  # noqa: PLC0415
    from tia_scanner_robust.training.configs import (  # noqa: PLC0415
        load_experiment_config,
        resolve_config,
    )

    if not config_spec:
        msg = "Missing option '--config' (a YAML file or a shipped name; see --list-configs)."
        raise click.UsageError(msg)
    overrides = _overrides(
        sets,
        output_dir=output_dir,
        seed=seed,
        device=device,
        train_dir=train_dir,
        val_dir=val_dir,
    )
    if no_progress:
        overrides.setdefault("trainer", {})["progress"] = False
    if workers is not None:
        overrides.setdefault("trainer", {})["num_workers"] = workers
    try:
        path = resolve_config(config_spec)
        config = load_experiment_config(path, overrides=overrides)
    except UnicodeDecodeError as err:
        msg = f"{config_spec}: not UTF-8 text (byte {err.start}: {err.reason})."
        raise click.BadParameter(msg, param_hint="--config") from err
    except (FileNotFoundError, ValueError) as err:
        raise click.BadParameter(str(err), param_hint="--config") from err
    check_finite_fields(config.to_dict(), source=f"config {path}:", hint="--config/--set")
    check_device(config.trainer.device, allow_auto=True, name="trainer.device")
    if resume is not None and resume != "auto" and not Path(resume).is_file():
        msg = f"{resume!r} is neither 'auto' nor an existing checkpoint file."
        raise click.BadParameter(msg, param_hint="--resume")
    lock_output_dir(Path(config.trainer.output_dir), resume=resume is not None, overwrite=overwrite)
    from tia_scanner_robust.training.resources import set_threads  # noqa: PLC0415

    threads = set_threads(threads, config.trainer.num_workers)
    try:
        trainer = build_trainer(config)
    except (FileNotFoundError, ValueError, KeyError, TypeError) as err:
        text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        msg = f"Invalid config {path}: {text}"
        raise click.BadParameter(msg, param_hint="--config") from err

    hooks = ", ".join(h.name for h in config.hooks) or "none"
    click.echo(
        f"Training {config.model.arch}/{config.model.encoder_name} from {path} "
        f"(style augmentation: {config.data.style_augmentation or 'none'}, hooks: {hooks}) "
        f"on {trainer.device} ({threads} threads, {config.trainer.num_workers} workers): "
        f"{trainer.total_steps} steps, {trainer.steps_per_epoch} per epoch; "
        f"output in {trainer.output_dir}"
    )
    try:
        result = trainer.fit(resume_from=resume, stop_at_step=stop_at_step)
    finally:
        trainer.close()
    if result.stopped_early:
        click.echo(f"Stopped at step {result.global_step}; resume with --resume auto.")
    if result.best_checkpoint is not None:
        click.echo(
            f"Best checkpoint: {result.best_checkpoint} "
            f"({result.monitor} = {result.best_metric:.4f} at epoch {result.best_epoch}"
            f"{_best_step(result.history)})"
        )
    else:
        click.echo(f"No validation metric '{result.monitor}': best.pt was not written.")
    click.echo(f"Last checkpoint: {result.last_checkpoint} (step {result.global_step})")
