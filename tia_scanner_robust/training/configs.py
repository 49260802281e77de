"""Shipped trainer configs and command-line style overrides.

The package ships one YAML config per row of the SCORPION paper's Table 1
(``tia_scanner_robust/configs/*.yaml``): ``baseline``, each style
augmentation alone (``colorjitter``, ``randstainna``, ``fda``) and each with
SimCons (``<sa>_simcons``: lambda 0.3, supervised loss on the first view).
Their defaults are for real use: DeepLabV3+ with a ResNet34 encoder, 256-px
crops, 150 epochs, the best epoch on validation Dice, CUDA when available.

- :func:`list_configs`: shipped names with their one-line descriptions;
- :func:`resolve_config`: a file path or a shipped name -> the YAML file;
- :func:`load_experiment_config`: read (``yaml.safe_load``), apply overrides,
  validate, return an :class:`~tia_scanner_robust.training.config.ExperimentConfig`;
- :func:`parse_overrides`: ``["trainer.lr=0.01", ...]`` -> nested dict;
- :func:`merge_overrides`: deep merge of nested dicts.

Examples:
    >>> sorted(list_configs())[:3]
    ['baseline', 'colorjitter', 'colorjitter_simcons']
    >>> cfg = load_experiment_config("fda_simcons", overrides={"trainer": {"epochs": 2}})
    >>> cfg.trainer.epochs, cfg.data.style_augmentation, cfg.hooks[0].kwargs["lam"]
    (2, 'fda', 0.3)
    >>> parse_overrides(["trainer.lr=0.01", "model.model_kwargs={encoder_depth: 3}"])
    {'trainer': {'lr': 0.01}, 'model': {'model_kwargs': {'encoder_depth': 3}}}

"""

from __future__ import annotations

import copy
import importlib.resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tia_scanner_robust.training.config import ExperimentConfig, load_config
from tia_scanner_robust.training.run_config import resolve_config_paths

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "CONFIG_PACKAGE",
    "config_path",
    "list_configs",
    "load_experiment_config",
    "merge_overrides",
    "parse_overrides",
    "resolve_config",
]

#: Package folder holding the shipped YAML configs.
CONFIG_PACKAGE = "tia_scanner_robust.configs"
_SECTIONS = ("trainer", "model", "data", "hooks")
#: Old field spellings still read, mapped to the current ones.
_ALIASES = {"checkpoint_every_n_steps": "checkpoint_every_steps"}


def _config_folder() -> Path:
    return Path(str(importlib.resources.files("tia_scanner_robust") / "configs"))


def _is_trainer_config(text: str) -> bool:
    """Whether a YAML text has only the sections of an ``ExperimentConfig``."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return False
    return isinstance(data, dict) and set(data) <= {*_SECTIONS, "versions"}


def list_configs() -> dict[str, str]:
    """Shipped trainer config names mapped to their one-line description (first comment).

    Only configs of the segmentation trainer (sections ``trainer``, ``model``,
    ``data``, ``hooks``) are listed; the folder may hold configs of other
    commands (e.g. the MIL configs of ``train-mil``).

    Examples:
        >>> "baseline" in list_configs() and "randstainna_simcons" in list_configs()
        True

    """
    out: dict[str, str] = {}
    for path in sorted(_config_folder().glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        if not _is_trainer_config(text):
            continue
        first = text.splitlines()[:1]
        line = first[0] if first else ""
        out[path.stem] = line.lstrip("#").strip() if line.startswith("#") else ""
    return out


def config_path(name: str) -> Path:
    """Path of a shipped config.

    Raises:
        ValueError: If ``name`` is not a shipped config (the message lists them).

    Examples:
        >>> config_path("baseline").name
        'baseline.yaml'

    """
    names = list_configs()
    key = str(name).removesuffix(".yaml")
    if key not in names:
        msg = f"Unknown shipped trainer config {name!r}; valid names: {', '.join(names)}."
        raise ValueError(msg)
    return _config_folder() / f"{key}.yaml"


def resolve_config(spec: str | Path) -> Path:
    """A YAML file path, or the path of the shipped config named ``spec``.

    An existing file wins over a shipped name.

    Raises:
        FileNotFoundError: If ``spec`` is neither an existing file nor a
            shipped name (the message lists the names).

    Examples:
        >>> resolve_config("colorjitter").stem
        'colorjitter'

    """
    path = Path(spec)
    if path.is_file():
        return path
    key = str(spec).removesuffix(".yaml")
    names = list_configs()
    if key in names:
        return config_path(key)
    if (_config_folder() / f"{key}.yaml").is_file():
        msg = (
            f"Shipped config {key!r} is not a segmentation-trainer config (it belongs to "
            f"another command); trainer configs: {', '.join(names)}."
        )
        raise FileNotFoundError(msg)
    msg = (
        f"Config {str(spec)!r} is neither a file nor a shipped config; "
        f"shipped configs: {', '.join(names)}."
    )
    raise FileNotFoundError(msg)


def merge_overrides(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``overrides`` into a copy of ``base`` (mappings merge, other values replace).

    Examples:
        >>> merge_overrides({"a": {"b": 1, "c": 2}, "d": [1]}, {"a": {"b": 5}, "d": [2]})
        {'a': {'b': 5, 'c': 2}, 'd': [2]}

    """
    out = copy.deepcopy(dict(base))
    for old, new in _ALIASES.items():  # an override in either spelling replaces both
        if (old in overrides) != (new in overrides):
            out.pop(new if old in overrides else old, None)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_overrides(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """Turn ``"section.key=value"`` strings into a nested dict (values parsed as YAML).

    Args:
        items: Overrides such as ``"trainer.epochs=3"``, ``"data.style_augmentation=fda"``,
            ``"model.encoder_weights=null"`` or ``"hooks=[]"``.

    Returns:
        Nested dict for :func:`merge_overrides`.

    Raises:
        ValueError: On an item without ``=``, an unknown section, or a value
            that is not valid YAML.

    Examples:
        >>> parse_overrides(["trainer.epochs=3", "model.encoder_weights=null"])
        {'trainer': {'epochs': 3}, 'model': {'encoder_weights': None}}
        >>> parse_overrides(["epochs=3"])
        Traceback (most recent call last):
        ...
        ValueError: Override 'epochs=3' must name a section: trainer, model, data, hooks ...

    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = str(item).partition("=")
        key = key.strip()
        if not sep or not key:
            msg = f"Override {item!r} must look like section.key=value (e.g. trainer.epochs=3)."
            raise ValueError(msg)
        parts = key.split(".")
        if parts[0] not in _SECTIONS:
            msg = (
                f"Override {item!r} must name a section: {', '.join(_SECTIONS)} "
                "(e.g. trainer.epochs=3)."
            )
            raise ValueError(msg)
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as err:
            msg = f"Override {item!r}: the value is not valid YAML ({err})."
            raise ValueError(msg) from err
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                msg = f"Override {item!r} conflicts with an earlier override of {part!r}."
                raise ValueError(msg)
        node[parts[-1]] = value
    return out


def load_experiment_config(
    spec: str | Path,
    *,
    overrides: Mapping[str, Any] | None = None,
) -> ExperimentConfig:
    """Read a config file or shipped name, apply overrides and validate.

    Args:
        spec: A YAML file or a shipped config name (see :func:`list_configs`).
        overrides: Nested dict merged into the file's content before
            validation (see :func:`parse_overrides`).

    Returns:
        The validated :class:`~tia_scanner_robust.training.config.ExperimentConfig`.

    Raises:
        FileNotFoundError: If ``spec`` is neither a file nor a shipped name.
        ValueError: If the YAML or a field is invalid; the message names the
            file and the field.

    Examples:
        >>> cfg = load_experiment_config("baseline", overrides={"trainer": {"seed": 3}})
        >>> cfg.trainer.seed, cfg.model.arch, cfg.hooks
        (3, 'DeepLabV3Plus', [])
        >>> load_experiment_config("baseline", overrides={"trainer": {"lr": -1}})
        Traceback (most recent call last):
        ...
        ValueError: Invalid config ...: TrainerConfig.lr must be > 0.0, got -1.

    """
    path = resolve_config(spec)
    config = load_config(path)
    if not overrides:
        return config
    # Paths given as overrides (--set) are relative to the current folder.
    merged = merge_overrides(config.to_dict(), resolve_config_paths(dict(overrides), Path.cwd()))
    try:
        return ExperimentConfig.from_dict(merged)
    except (TypeError, ValueError) as err:
        msg = f"Invalid config {path} with overrides {dict(overrides)}: {err}"
        raise ValueError(msg) from err
