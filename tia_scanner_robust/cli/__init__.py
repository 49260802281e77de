"""Command-line interface: ``tia-scanner-robust COMMAND ...``.

Each command lives in its own module under :mod:`tia_scanner_robust.cli` and
is a thin wrapper over the Python API. Commands are imported lazily, so
``tia-scanner-robust --help`` answers without importing torch or TIAToolbox.

Examples:
    >>> from click.testing import CliRunner
    >>> result = CliRunner().invoke(main, ["--version"])
    >>> result.output.startswith("tia-scanner-robust")
    True

"""

from __future__ import annotations

import importlib

import click

from tia_scanner_robust import __version__

__all__ = ["main"]

#: command name -> (module, attribute, one-line help). The help is repeated
#: here so that ``--help`` can list commands without importing them.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "augment-preview": (
        "tia_scanner_robust.cli.augment_preview",
        "augment_preview",
        "Grid of every style augmentation and scanner profile on one tissue image.",
    ),
    "fit-randstainna": (
        "tia_scanner_robust.cli.fit_randstainna",
        "fit_randstainna",
        "Fit a RandStainNA template (per-channel distributions) from images.",
    ),
    "build-paired": (
        "tia_scanner_robust.cli.build_paired",
        "build_paired",
        "Build a scanner-paired dataset (registered multi-scanner WSIs or simulated scanners).",
    ),
    "evaluate": (
        "tia_scanner_robust.cli.evaluate",
        "evaluate",
        "Scanner-consistency evaluation of a model through TIAToolbox's engines.",
    ),
    "analyze": (
        "tia_scanner_robust.cli.analyze",
        "analyze",
        "Paired versus unpaired colour/feature analysis figures of a paired dataset.",
    ),
    "train": (
        "tia_scanner_robust.cli.train",
        "train",
        "Train a segmentation model from a YAML config (optionally with SimCons).",
    ),
    "demo": (
        "tia_scanner_robust.cli.demo",
        "demo",
        "End-to-end demo: paired set, baseline vs SimCons training, evaluation, report.",
    ),
    "extract-features": (
        "tia_scanner_robust.cli.extract_features",
        "extract_features",
        "Foundation-model patch features of a manifest's slides into a zarr feature store.",
    ),
    "train-mil": (
        "tia_scanner_robust.cli.train_mil",
        "train_mil",
        "Train a MIL classifier on a feature store, baseline or with the ScanGen loss.",
    ),
    "benchmark-fm": (
        "tia_scanner_robust.cli.benchmark_fm",
        "benchmark_fm",
        "Table of AUC and scanner/magnification CoV per feature extractor, without/with ScanGen.",
    ),
}


class LazyGroup(click.Group):
    """A click group that imports a command's module only when it is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:  # noqa: ARG002
        """Return the names of every command, sorted."""
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:  # noqa: ARG002
        """Import and return the command called ``cmd_name``."""
        if cmd_name not in COMMANDS:
            return None
        module_name, attr, _ = COMMANDS[cmd_name]
        return getattr(importlib.import_module(module_name), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:  # noqa: ARG002
        """List commands with their short help without importing them."""
        rows = [(name, COMMANDS[name][2]) for name in sorted(COMMANDS)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tia-scanner-robust")
def main() -> None:
    """Measure and mitigate the scanner sensitivity of pathology models.

    A TIAToolbox plugin implementing ScanGen (scanner-contrastive MIL) and
    SCORPION/SimCons (scanner-paired consistency and style-consistency
    training). Run ``tia-scanner-robust COMMAND --help`` for a command's options.
    """
