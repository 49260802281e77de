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
import os

import click

from tia_scanner_robust import __version__

__all__ = ["describe_error", "main"]


def describe_error(error: BaseException) -> str:
    """One line for a user: the exception's type (unless generic) and its message.

    Examples:
        >>> describe_error(FileNotFoundError(2, "No such file or directory", "x.yaml"))
        "FileNotFoundError: [Errno 2] No such file or directory: 'x.yaml'"
        >>> describe_error(ValueError("lr must be > 0, got nan"))
        'lr must be > 0, got nan'

    """
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    text = " ".join(text.split()) or "(no message)"
    if len(text) > 600:  # e.g. a state-dict key dump
        text = text[:600] + " ..."
    if type(error) in {ValueError, RuntimeError, click.ClickException}:
        return text
    if type(error).__module__.startswith("tia_scanner_robust"):  # our own errors say it all
        return text
    return f"{type(error).__name__}: {text}"


#: command name -> (module, attribute, one-line help). The help is repeated
#: here so that ``--help`` can list commands without importing them.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "augment-preview": (
        "tia_scanner_robust.cli.augment_preview",
        "augment_preview",
        "Grid of every style augmentation and scanner profile on one tissue image.",
    ),
    "fit-scanner-profile": (
        "tia_scanner_robust.cli.fit_scanner_profile",
        "fit_scanner_profile",
        "Fit a scanner profile (YAML) mapping one scanner's images to another's from real pairs.",
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

    def invoke(self, ctx: click.Context) -> object:
        """Run the command; an error it raises becomes one line and exit code 1.

        Usage errors (a bad option or value) keep click's exit code 2. Any other
        exception (unreadable file, bad data, a foreign checkpoint) is printed
        as ``Error: <type>: <message>`` with exit code 1 instead of a
        traceback; set ``TIA_SCANNER_ROBUST_DEBUG=1`` to see the traceback.
        """
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as error:
            if os.environ.get("TIA_SCANNER_ROBUST_DEBUG"):
                raise
            raise click.ClickException(describe_error(error)) from error

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
