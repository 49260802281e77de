"""Options spelled and checked the same way in every command.

- the output folder is ``-o/--output-dir`` (:func:`output_dir_option`); a
  single output file is ``-o/--output``; the spellings used before
  (``--out-dir``, ``--output``, a positional ``OUT_DIR``) stay as hidden
  aliases for one release (:func:`hidden_aliases`);
- ``--seed`` is an integer in ``[0, 2**32 - 1]`` (:func:`seed_option`);
- ``--device`` is ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (and ``auto`` where
  the trainer chooses), checked before any work starts (:func:`check_device`);
- ``--overwrite`` lets a command write into a folder or file holding earlier
  outputs, replacing the files it writes and deleting nothing else;
- ``--no-progress`` hides progress bars (``--quiet`` is its hidden alias).

Examples:
    >>> from click.testing import CliRunner
    >>> @click.command()
    ... @output_dir_option(text="Where to write.")
    ... @seed_option()
    ... def show(output_dir, seed):
    ...     click.echo(f"{output_dir} {seed}")
    >>> CliRunner().invoke(show, ["-o", "a", "--seed", "3"]).output.strip()
    'a 3'
    >>> CliRunner().invoke(show, ["--out-dir", "b"]).output.splitlines()[-1]
    'b 0'
    >>> "--out-dir" in CliRunner().invoke(show, ["--help"]).output
    False
    >>> result = CliRunner().invoke(show, [])
    >>> result.exit_code, "Missing option '-o' / '--output-dir'" in result.output
    (2, True)
    >>> check_device("cuda:1x")
    Traceback (most recent call last):
    ...
    click.exceptions.BadParameter: 'cuda:1x' is not a device; valid: cpu, cuda, cuda:N, mps.

"""

from __future__ import annotations

import functools
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from click.core import ParameterSource

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = [
    "HiddenArgument",
    "check_device",
    "check_finite_fields",
    "check_output_suffix",
    "device_option",
    "hidden_aliases",
    "lock_output_dir",
    "no_progress_option",
    "output_dir_option",
    "overwrite_option",
    "parse_seeds",
    "projection_option",
    "resources_options",
    "seed_option",
    "weights_option",
]

_F = TypeVar("_F", bound="Callable[..., Any]")
_GIVEN = {ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT}
_DEVICE = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")
_SEED_MAX = 2**32 - 1


def _decls(param: click.Parameter) -> str:
    return " / ".join(f"'{d}'" for d in param.opts) or f"'{param.name}'"


class HiddenArgument(click.Argument):
    """A positional argument left out of the usage line (an old spelling kept for one release)."""

    def get_usage_pieces(self, ctx: click.Context) -> list[str]:  # noqa: ARG002
        """Nothing: the argument is not advertised."""
        return []


def hidden_aliases(
    name: str,
    *aliases: str,
    required: bool = False,
    positional: str | None = None,
    **attrs: Any,
) -> Callable[[_F], _F]:
    """Hidden old spellings (``aliases``; a ``positional`` argument) of the option ``name``.

    The decorated command receives only ``name``: a value given through an
    alias (with a deprecation note on stderr) replaces the option's default;
    the option and an alias given with different values is a usage error.
    Place the decorator *below* the option ``name`` (closer to the function).

    Args:
        name: The parameter name of the canonical option (e.g. ``output_dir``).
        *aliases: Old option spellings, e.g. ``"--out-dir"``.
        required: The option or one alias must be given (checked here, so the
            canonical option itself is declared ``required=False``).
        positional: Name of a hidden positional argument that is also an alias.
        **attrs: ``type``, ``is_flag``... of the alias options.

    """
    names = [f"_{name}_alias_{i}" for i in range(len(aliases))]

    def decorator(function: _F) -> _F:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            ctx = click.get_current_context()
            main = next(p for p in ctx.command.params if p.name == name)
            chosen = kwargs.get(name) if ctx.get_parameter_source(name) in _GIVEN else None
            spelled = _decls(main)
            pairs = [(p, f"'{a}'") for p, a in zip(names, aliases, strict=True)]
            if positional is not None:
                pairs.append((positional, "the positional OUT_DIR"))
            for param_name, spelling in pairs:
                value = kwargs.pop(param_name, None)
                if ctx.get_parameter_source(param_name) not in _GIVEN:
                    continue
                if chosen is not None and value != chosen:
                    msg = f"Give {spelled} or its old spelling {spelling}, not both."
                    raise click.UsageError(msg, ctx=ctx)
                click.echo(f"Note: {spelling} is deprecated; use {spelled}.", err=True)
                chosen = kwargs[name] = value
            if required and kwargs.get(name) is None:
                raise click.MissingParameter(ctx=ctx, param=main)
            return function(*args, **kwargs)

        command: Any = wrapper
        for param_name, alias in zip(reversed(names), reversed(aliases), strict=True):
            command = click.option(alias, param_name, hidden=True, **attrs)(command)
        if positional is not None:
            argument = click.argument(positional, cls=HiddenArgument, required=False, **attrs)
            command = argument(command)
        return command

    return decorator


def output_dir_option(
    *,
    text: str,
    required: bool = True,
    default: str | Path | None = None,
    aliases: tuple[str, ...] = ("--out-dir",),
    positional: str | None = None,
    dest: str = "output_dir",
) -> Callable[[_F], _F]:
    """``-o/--output-dir FOLDER`` (passed as ``dest``), with hidden old spellings."""
    path_type = click.Path(file_okay=False, path_type=Path)
    option = click.option(
        "-o",
        "--output-dir",
        dest,
        type=path_type,
        default=default,
        show_default=default is not None,
        help=text + (" [required]" if required else ""),
    )
    alias = hidden_aliases(dest, *aliases, required=required, positional=positional, type=path_type)

    def decorator(function: _F) -> _F:
        return option(alias(function))

    return decorator


def seed_option(
    *, default: int | None = 0, text: str = "Seed of every random draw."
) -> Callable[[_F], _F]:
    """``--seed N``: an integer in ``[0, 2**32 - 1]``."""
    return click.option(
        "--seed",
        type=click.IntRange(0, _SEED_MAX),
        default=default,
        show_default=default is not None,
        help=text,
    )


def check_device(value: str | None, *, allow_auto: bool = False, name: str = "--device") -> Any:
    """Refuse a device string that is not ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.

    A CUDA or MPS device that this machine lacks is refused too (torch is
    imported only then).

    Raises:
        click.BadParameter: Naming ``name`` and the valid values.

    Examples:
        >>> check_device("cpu"), check_device(None), check_device("auto", allow_auto=True)
        ('cpu', None, 'auto')

    """
    if value is None or (allow_auto and value == "auto"):
        return value
    valid = "cpu, cuda, cuda:N, mps" + (", auto" if allow_auto else "")
    if not isinstance(value, str) or not _DEVICE.match(value):
        msg = f"{value!r} is not a device; valid: {valid}."
        raise click.BadParameter(msg, param_hint=name)
    if value == "cpu":
        return value
    import torch  # noqa: PLC0415 - only for accelerators

    if value == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            msg = "'mps' is not available on this machine; use cpu."
            raise click.BadParameter(msg, param_hint=name)
        return value
    if not torch.cuda.is_available():
        msg = f"{value!r}: CUDA is not available on this machine; use cpu."
        raise click.BadParameter(msg, param_hint=name)
    index = int(value.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        msg = f"{value!r}: this machine has {torch.cuda.device_count()} CUDA device(s)."
        raise click.BadParameter(msg, param_hint=name)
    return value


def device_option(
    *, default: str | None = "cpu", allow_auto: bool = False, text: str | None = None
) -> Callable[[_F], _F]:
    """``--device``: checked by :func:`check_device` before the command runs."""
    valid = "cpu, cuda, cuda:N or mps" + (" (auto: CUDA if available)" if allow_auto else "")
    return click.option(
        "--device",
        default=default,
        show_default=default is not None,
        callback=lambda _ctx, _param, value: check_device(value, allow_auto=allow_auto),
        help=text or f"Torch device: {valid}.",
    )


def overwrite_option(*, text: str | None = None) -> Callable[[_F], _F]:
    """``--overwrite``: write into an output holding earlier results (nothing else is deleted)."""
    return click.option(
        "--overwrite",
        is_flag=True,
        help=text
        or "Write into an output folder that holds earlier results, replacing the files this "
        "command writes (nothing else is deleted).",
    )


def weights_option(*, text: str) -> Callable[[_F], _F]:
    """``--weights FILE``: an existing local weights file (``None`` when not given)."""
    return click.option(
        "--weights",
        type=click.Path(exists=True, path_type=Path),
        default=None,
        help=text,
    )


def projection_option(*, text: str | None = None) -> Callable[[_F], _F]:
    """``--projection umap|pca``: the 2-D projection of features in the paired analysis."""
    return click.option(
        "--projection",
        type=click.Choice(["umap", "pca"]),
        default="umap",
        show_default=True,
        help=text,
    )


def resources_options() -> Callable[[_F], _F]:
    """``--workers N`` (DataLoader workers) and ``--threads N`` (torch intra-op threads).

    Both default to ``None``: the config's ``trainer.num_workers`` and the
    thread count of :func:`tia_scanner_robust.training.resources.set_threads`
    (the cores left after the workers and the machine's load, at least 1).
    """
    workers = click.option(
        "--workers",
        type=click.IntRange(min=0),
        default=None,
        help="trainer.num_workers: DataLoader worker processes.",
    )
    threads = click.option(
        "--threads",
        type=click.IntRange(min=1),
        default=None,
        help="Torch intra-op threads (default: the cores left after the workers and the "
        "machine's load, at least 1; see docs/training.md).",
    )

    def decorator(function: _F) -> _F:
        return workers(threads(function))

    return decorator


def no_progress_option(*, aliases: tuple[str, ...] = ()) -> Callable[[_F], _F]:
    """``--no-progress``: hide progress bars (old spellings in ``aliases`` stay hidden)."""
    option = click.option("--no-progress", is_flag=True, help="Hide progress bars.")
    if not aliases:
        return option
    alias = hidden_aliases("no_progress", *aliases, is_flag=True, default=False)

    def decorator(function: _F) -> _F:
        return option(alias(function))

    return decorator


def check_output_suffix(path: Path, suffixes: tuple[str, ...], *, name: str = "--output") -> Path:
    """Refuse an output file whose extension is not one of ``suffixes`` or that cannot be written.

    The file's folder is created if needed and must be writable
    (:func:`~tia_scanner_robust.run_folder.check_writable_folder`).

    Raises:
        click.BadParameter: Naming the option, the extension and the valid ones.
        RunFolderError: If the file's folder cannot be written (e.g. under /proc).

    Examples:
        >>> check_output_suffix(Path("grid.PNG"), (".png", ".jpg")).name
        'grid.PNG'

    """
    if path.suffix.lower() not in suffixes:
        shown = repr(path.suffix) if path.suffix else "no extension"
        msg = f"{path}: cannot write {shown}; use one of {', '.join(suffixes)}."
        raise click.BadParameter(msg, param_hint=name)
    from tia_scanner_robust.run_folder import check_writable_folder  # noqa: PLC0415

    check_writable_folder(path.parent)
    return path


def parse_seeds(value: str | None, *, name: str = "--seeds") -> list[int] | None:
    """``"0,1,2"`` to ``[0, 1, 2]``; every seed an integer in ``[0, 2**32 - 1]``.

    Raises:
        click.BadParameter: Naming ``name`` and the bad entry.

    Examples:
        >>> parse_seeds("0, 1,2"), parse_seeds(None)
        ([0, 1, 2], None)

    """
    if value is None:
        return None
    seeds = []
    for item in (v.strip() for v in value.split(",")):
        if not item:
            continue
        try:
            seed = int(item)
        except ValueError:
            seed = -1
        if not 0 <= seed <= _SEED_MAX:
            msg = f"{item!r} is not a seed (an integer from 0 to {_SEED_MAX}); got {value!r}."
            raise click.BadParameter(msg, param_hint=name)
        seeds.append(seed)
    return seeds


def lock_output_dir(
    folder: Path, *, resume: bool = False, overwrite: bool = False, ignore: tuple[str, ...] = ()
) -> Path:
    """Hold ``folder`` for the running command (:func:`~.run_folder.open_run_folder`).

    The lock is released when the command ends (click's context closes), on
    error too.

    Raises:
        RunFolderError: The folder is in use, holds earlier work (without
            ``resume``/``overwrite``) or cannot be written.

    """
    from tia_scanner_robust.run_folder import open_run_folder  # noqa: PLC0415

    context = open_run_folder(folder, resume=resume, overwrite=overwrite, ignore=ignore)
    return click.get_current_context().with_resource(context)


def check_finite_fields(
    data: Mapping[str, Any], *, source: str = "config", hint: str | None = None
) -> None:
    """Refuse NaN or infinite numbers anywhere in a (nested) config dict.

    Raises:
        click.BadParameter: Naming the dotted field (e.g. ``trainer.lr``).

    Examples:
        >>> check_finite_fields({"trainer": {"lr": float("nan")}})
        Traceback (most recent call last):
        ...
        click.exceptions.BadParameter: config field trainer.lr is nan; it must be a finite number.

    """

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{path}.{key}" if path else str(key))
        elif isinstance(node, list | tuple):
            for i, value in enumerate(node):
                walk(value, f"{path}[{i}]")
        elif isinstance(node, float) and not math.isfinite(node):
            msg = f"{source} field {path} is {node}; it must be a finite number."
            raise click.BadParameter(msg, param_hint=hint)

    walk(dict(data), "")
