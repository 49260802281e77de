"""Options and loading shared by the commands that read a scanner-paired dataset.

``evaluate`` and ``analyze`` take the same ``--data`` / ``--format`` /
``--incomplete`` / ``--demo-*`` / ``--seed`` options
(:func:`paired_data_options`) and start the same way
(:func:`open_collection`: seed, create the output folder, read the data).

Examples:
    >>> @click.command()
    ... @paired_data_options
    ... def show(**kwargs):
    ...     click.echo(sorted(kwargs))
    >>> from click.testing import CliRunner
    >>> CliRunner().invoke(show, ["--data", "demo"]).output.strip()
    "['data', 'data_format', 'demo_tile_size', 'demo_tiles', 'incomplete', 'seed']"

"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from tia_scanner_robust.cli._options import lock_output_dir, seed_option

if TYPE_CHECKING:
    from collections.abc import Callable

    from tia_scanner_robust.data.paired import PairedCollection

__all__ = [
    "FORMAT_OPTION",
    "load_collection",
    "open_collection",
    "paired_data_options",
    "resolution_options",
    "start_command",
]

_F = TypeVar("_F", bound="Callable[..., Any]")

#: ``--format auto|scorpion|manifest`` (parameter ``data_format``): the layout of ``--data``.
FORMAT_OPTION = click.option(
    "--format",
    "data_format",
    type=click.Choice(["auto", "scorpion", "manifest"]),
    default="auto",
    show_default=True,
    help="Dataset layout (auto: a .csv file is a manifest, a folder SCORPION).",
)

_OPTIONS = (
    click.option(
        "--data",
        required=True,
        help="SCORPION folder, manifest CSV, or 'demo' (offline demo set).",
    ),
    FORMAT_OPTION,
    click.option(
        "--incomplete",
        type=click.Choice(["error", "drop"]),
        default="error",
        show_default=True,
        help="Specimens missing a scanner: stop, or drop them.",
    ),
    click.option(
        "--demo-tiles",
        default=12,
        show_default=True,
        help="--data demo: tiles (10 or more: fewer specimens give a warning).",
    ),
    click.option(
        "--demo-tile-size", default=192, show_default=True, help="--data demo: tile side."
    ),
    seed_option(),
)


def paired_data_options(command: _F) -> _F:
    """Add the paired-dataset options to a click command (in ``--help`` order)."""
    for option in reversed(_OPTIONS):
        command = option(command)
    return command


_RESOLUTION_OPTIONS = (
    click.option(
        "--mpp",
        type=click.FloatRange(min=0, min_open=True),
        default=None,
        help="Resolution the model is fed at (um/px). WSIs are read at it; tiles whose "
        "manifest mpp differs are rescaled to it (default: the model's IO config).",
    ),
    click.option(
        "--patch-size",
        type=click.IntRange(min=1),
        default=None,
        help="Model patch size in px (default: the model's IO config); with --size-policy "
        "resize, tiles are resized to it.",
    ),
    click.option(
        "--size-policy",
        type=click.Choice(["auto", "group", "resize"]),
        default="auto",
        show_default=True,
        help="Tiles of other sizes than the model's input: group (one engine call per size, "
        "fully convolutional models) or resize (to the patch size); auto picks by model. "
        "Every resize is recorded in report.json and warned about.",
    ),
)


def resolution_options(command: _F) -> _F:
    """Add ``--mpp``, ``--patch-size`` and ``--size-policy`` (the model's input resolution)."""
    for option in reversed(_RESOLUTION_OPTIONS):
        command = option(command)
    return command


def load_collection(
    data: str,
    data_format: str,
    out_dir: Path,
    *,
    incomplete: str = "error",
    seed: int = 0,
    demo_tiles: int = 12,
    demo_tile_size: int = 192,
) -> PairedCollection:
    """Read ``--data`` (a SCORPION folder, a manifest CSV or ``demo``).

    ``demo`` builds (or reuses) the embedded demo set in ``out_dir/demo_data``
    with :func:`~tia_scanner_robust.data.demo.build_demo_dataset`.
    ``data_format="auto"`` reads a ``.csv`` file as a manifest and a folder as
    the SCORPION layout.

    Raises:
        click.ClickException: On a missing path or an unreadable dataset.

    """
    from tia_scanner_robust.data.demo import build_demo_dataset  # noqa: PLC0415
    from tia_scanner_robust.data.manifest import read_manifest  # noqa: PLC0415
    from tia_scanner_robust.data.scorpion import read_scorpion  # noqa: PLC0415

    try:
        if data == "demo":
            return build_demo_dataset(
                out_dir / "demo_data", tile_size=demo_tile_size, n_tiles=demo_tiles, seed=seed
            )
        path = Path(data)
        if not path.exists():
            msg = f"--data {data!r}: no such file or folder (or pass 'demo')."
            raise click.ClickException(msg)
        fmt = data_format
        if fmt == "auto":
            fmt = "manifest" if path.is_file() else "scorpion"
        if fmt == "manifest":
            return read_manifest(path, incomplete=incomplete)
        return read_scorpion(path, incomplete=incomplete)
    except (ValueError, FileNotFoundError, KeyError) as error:
        raise click.ClickException(str(error)) from error


def open_collection(
    data: str,
    data_format: str,
    out_dir: Path,
    *,
    incomplete: str = "error",
    seed: int = 0,
    demo_tiles: int = 12,
    demo_tile_size: int = 192,
    overwrite: bool = False,
) -> PairedCollection:
    """Seed every generator, lock ``out_dir`` and read the paired dataset.

    The common start of the commands using :func:`paired_data_options`; see
    :func:`load_collection` for ``data`` and ``data_format``. ``out_dir`` is
    held for the command (:func:`~tia_scanner_robust.cli._options.lock_output_dir`):
    a folder holding earlier results (other than ``demo_data/``, which is
    reused) is refused unless ``overwrite``.
    """
    start_command(out_dir, seed=seed, overwrite=overwrite, ignore=("demo_data",))
    return load_collection(
        data,
        data_format,
        out_dir,
        incomplete=incomplete,
        seed=seed,
        demo_tiles=demo_tiles,
        demo_tile_size=demo_tile_size,
    )


def start_command(
    out_dir: Path, *, seed: int, overwrite: bool, ignore: tuple[str, ...] = ()
) -> None:
    """Seed every generator and hold ``out_dir`` for the command.

    ``out_dir`` is locked with :func:`~tia_scanner_robust.cli._options.lock_output_dir`
    (entries named in ``ignore`` do not count as earlier results).
    """
    from tia_scanner_robust.seeding import seed_everything  # noqa: PLC0415

    seed_everything(seed)
    lock_output_dir(out_dir, overwrite=overwrite, ignore=ignore)
