"""``tia-scanner-robust demo``: the offline end-to-end SimCons demo.

A thin wrapper over :func:`~tia_scanner_robust.demo.run.run_demo`:
builds the scanner-paired demo task from TIAToolbox's bundled H&E image,
trains a baseline and a SimCons model (a light Unet/ResNet18 on 128-px
crops), evaluates both through TIAToolbox's ``SemanticSegmentor`` with the
scanner-consistency evaluator, writes ``report.html`` (self-contained) and
``report.json`` into OUTPUT_DIR, and prints a summary table. Finished steps are
reused when the command runs again with the same options, also in a copy of
OUTPUT_DIR; a finished model trained with other options is never replaced
unless ``--overwrite`` is given.

Examples:
    >>> from click.testing import CliRunner
    >>> result = CliRunner().invoke(demo, ["--help"])
    >>> result.exit_code, "--quick" in result.output
    (0, True)

    On the command line::

        tia-scanner-robust demo -o demo_out            # about 4-5 minutes on 2 CPU cores
        tia-scanner-robust demo -o demo_smoke --quick  # smoke run, about a minute

"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from tia_scanner_robust.cli._options import (
    device_option,
    lock_output_dir,
    no_progress_option,
    output_dir_option,
    overwrite_option,
    seed_option,
)

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["demo"]


@click.command(name="demo", context_settings={"help_option_names": ["-h", "--help"]})
@output_dir_option(
    text="Output folder (data/, runs/, eval/, report.html, report.json); finished steps in it "
    "are reused.",
    required=False,
    default="scanner_robust_demo",
)
@overwrite_option(
    text="Train every model again, replacing the runs in the output folder (nothing else is "
    "deleted)."
)
@click.option(
    "--quick", is_flag=True, help="Smoke run: 30 steps per model at batch size 4 (about a minute)."
)
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=None,
    help="Optimiser steps per model (default 200, or 30 with --quick).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    help="Batch size (default 8, or 4 with --quick).",
)
@seed_option(text="Seed of both training runs.")
@device_option()
@click.option(
    "--simcons-config",
    default=None,
    help="Shipped config of the SimCons model (default fda_simcons).",
)
@click.option(
    "--profile",
    "profiles",
    multiple=True,
    help="Scanner profile of the paired test set, repeatable: a built-in name or a fitted "
    "profile file (.yaml, from fit-scanner-profile); the first is the reference scanner "
    "(default: the five built-in profiles).",
)
@no_progress_option()
def demo(
    *,
    output_dir: Path,
    overwrite: bool,
    quick: bool,
    steps: int | None,
    batch_size: int | None,
    seed: int,
    device: str,
    simcons_config: str | None,
    profiles: tuple[str, ...],
    no_progress: bool,
) -> None:
    """Run the end-to-end demo: paired data, baseline vs SimCons training, evaluation, report."""
    from tia_scanner_robust.demo.run import DEMO_VARIANTS, run_demo  # noqa: PLC0415
    from tia_scanner_robust.training.configs import list_configs  # noqa: PLC0415

    variants = dict(DEMO_VARIANTS)
    if simcons_config is not None:
        names = list_configs()
        if simcons_config not in names or "simcons" not in simcons_config:
            valid = ", ".join(n for n in names if "simcons" in n)
            msg = f"Unknown SimCons config {simcons_config!r}; valid names: {valid}."
            raise click.BadParameter(msg, param_hint="--simcons-config")
        variants["simcons"] = simcons_config
    lock_output_dir(output_dir, resume=True, overwrite=overwrite)
    result = run_demo(
        output_dir,
        steps=steps,
        quick=quick,
        seed=seed,
        variants=variants,
        batch_size=batch_size,
        device=device,
        progress=not no_progress,
        echo=click.echo,
        resume=not overwrite,
        profiles=list(profiles) or None,
    )
    click.echo("")
    click.echo(result.summary_table())
    click.echo("")
    click.echo(f"Report: {result.report_html}")
    click.echo(f"Numbers: {result.report_json}")
