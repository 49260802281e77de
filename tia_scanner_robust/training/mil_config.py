"""Typed MIL configs (baseline and ScanGen), loaded from YAML and validated on construction.

A MIL config (``train-mil``, ``benchmark-fm``; shipped as
``configs/mil_baseline.yaml`` and ``configs/mil_scangen.yaml``) has a name
and five sections, each a dataclass whose defaults are the fields' defaults:

- ``data`` (:class:`MILDataConfig`): feature store and split names;
- ``model`` (:class:`MILModelConfig`): projection ``g`` and aggregator;
- ``trainer`` (:class:`MILTrainerConfig`): the
  :class:`~tia_scanner_robust.training.config.TrainerConfig` with MIL
  defaults (bag batches, cross-entropy, best checkpoint by ``val_auc``);
- ``scangen`` (:class:`ScanGenConfig`): the ScanGen term (``lam = 0``: baseline);
- ``synthetic`` (:class:`SyntheticConfig`): sizes of the synthetic FM-like
  store built by ``--synthetic``.

Unknown sections and keys raise ``ValueError`` naming them and listing the
valid ones; bad values name the field. :func:`load_mil_config` merges a YAML
file (or shipped name, or mapping) and overrides, section by section.

Examples:
    >>> config = load_mil_config("mil_scangen", {"model": {"aggregator": "abmil"}})
    >>> config.scangen.lam > 0, config.model.aggregator, config.trainer.monitor
    (True, 'abmil', 'val_auc')
    >>> load_mil_config(None, {"scangen": {"lamda": 1}})
    Traceback (most recent call last):
    ...
    ValueError: MILConfig.scangen: Unknown ScanGenConfig key(s) ['lamda']; valid keys: ...

"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import yaml

from tia_scanner_robust._validation import read_utf8_text
from tia_scanner_robust.training.config import (
    TrainerConfig,
    _check_choice,
    _check_float,
    _check_int,
    _ConfigBase,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "MILConfig",
    "MILDataConfig",
    "MILModelConfig",
    "MILTrainerConfig",
    "ScanGenConfig",
    "SyntheticConfig",
    "load_mil_config",
]

#: Sections whose nested mappings an override replaces whole (not key by key).
_REPLACED_WHOLE = ("aggregator_kwargs",)


def _check_str(obj: object, name: str, *, allow_none: bool = False) -> None:
    value = getattr(obj, name)
    if value is None and allow_none:
        return
    if isinstance(value, Path):
        value = str(value)
        setattr(obj, name, value)
    if not isinstance(value, str) or not value:
        what = "null or a non-empty string" if allow_none else "a non-empty string"
        msg = f"{type(obj).__name__}.{name} must be {what}, got {value!r}."
        raise ValueError(msg)


def _check_bool(obj: object, name: str) -> None:
    if not isinstance(getattr(obj, name), bool):
        msg = f"{type(obj).__name__}.{name} must be true or false, got {getattr(obj, name)!r}."
        raise ValueError(msg)


def _check_mapping(obj: object, name: str, *, allow_none: bool = False) -> None:
    value = getattr(obj, name)
    if value is None and allow_none:
        return
    if not isinstance(value, dict):
        msg = f"{type(obj).__name__}.{name} must be a mapping, got {value!r}."
        raise ValueError(msg)


def _str_list(obj: object, name: str, *, allow_none: bool = False) -> None:
    value = getattr(obj, name)
    if value is None and allow_none:
        return
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
        msg = f"{type(obj).__name__}.{name} must be a non-empty list of names, got {value!r}."
        raise ValueError(msg)
    setattr(obj, name, [str(v) for v in value])


@dataclass
class MILDataConfig(_ConfigBase):
    """Where the bags come from.

    Attributes:
        store: FeatureStore path (or ``--store`` / ``--synthetic`` on the CLI).
        train_split: Split of the labelled task pool.
        val_split: Split used for model selection (``null``: no validation).
        test_split: Held-out specimens under every scanner.
        scangen_split: The multi-scanner pool of the ScanGen term.
        max_instances: Subsample training bags to this many patches (a new
            subset per access); ``null`` keeps whole bags in memory.
        positive_class: Class whose probability is the AUC score.

    """

    _section: ClassVar[str] = "data"

    store: str | None = None
    train_split: str = "train"
    val_split: str | None = "val"
    test_split: str = "test"
    scangen_split: str = "scangen"
    max_instances: int | None = None
    positive_class: int = 1

    def __post_init__(self) -> None:
        _check_str(self, "store", allow_none=True)
        for name in ("train_split", "test_split", "scangen_split"):
            _check_str(self, name)
        _check_str(self, "val_split", allow_none=True)
        _check_int(self, "max_instances", minimum=1, allow_none=True)
        _check_int(self, "positive_class", minimum=0)


def _default_aggregator_kwargs() -> dict[str, dict[str, Any]]:
    return {
        "gap": {"hidden_dim": 64},
        "abmil": {"attention_dim": 64},
        "dsmil": {"query_dim": 64},
        "slotmil": {"num_slots": 8, "hidden_dim": 64},
    }


@dataclass
class MILModelConfig(_ConfigBase):
    """The MIL model ``f(a(g(h)))`` (see :func:`~tia_scanner_robust.models.mil.build_mil_model`).

    Attributes:
        aggregator: ``"gap"``, ``"abmil"``, ``"dsmil"`` or ``"slotmil"``.
        num_classes: Output classes.
        projection_hidden: Hidden width of the projection ``g``.
        projection_dropout: Dropout in ``g``.
        projection_out: Output width of ``g`` (``null``: ``projection_hidden``).
        projection: ``false`` feeds the features to the aggregator directly.
        aggregator_kwargs: Either ``{aggregator name: kwargs}`` (the entry of
            the configured aggregator is used) or one flat kwargs mapping. An
            override replaces it whole.

    """

    _section: ClassVar[str] = "model"

    aggregator: str = "gap"
    num_classes: int = 2
    projection_hidden: int = 128
    projection_dropout: float = 0.0
    projection_out: int | None = None
    projection: bool = True
    aggregator_kwargs: dict[str, Any] = field(default_factory=_default_aggregator_kwargs)

    def __post_init__(self) -> None:
        _check_str(self, "aggregator")
        _check_int(self, "num_classes", minimum=2)
        _check_int(self, "projection_hidden", minimum=1)
        _check_float(self, "projection_dropout", minimum=0.0)
        _check_int(self, "projection_out", minimum=1, allow_none=True)
        _check_bool(self, "projection")
        if self.aggregator_kwargs is None:
            self.aggregator_kwargs = {}
        _check_mapping(self, "aggregator_kwargs")


@dataclass
class MILTrainerConfig(TrainerConfig):
    """:class:`~tia_scanner_robust.training.config.TrainerConfig` with MIL defaults.

    Bag batches (``features``/``label`` keys, classification), Adam with
    weight decay, at most 400 steps, best checkpoint by ``val_auc``.
    """

    epochs: int = 25
    max_steps: int | None = 400
    batch_size: int = 16
    weight_decay: float = 1e-4
    task: str = "classification"
    image_key: str = "features"
    target_key: str | None = "label"
    ignore_index: int | None = -100
    monitor: str = "val_auc"
    progress: bool = False


@dataclass
class ScanGenConfig(_ConfigBase):
    """The ScanGen term (:class:`~tia_scanner_robust.training.scangen.ScanGenHook`).

    Attributes:
        lam: Weight of the term (``0``: the baseline, no hook).
        alpha: Attraction vs repulsion balance.
        margin: Repulsion margin.
        squared: Squared distances.
        granularity: ``"slide"`` or ``"patch"``.
        n_subsample: Patches drawn per slide embedding.
        patches_per_sample: Patches per sample at patch granularity.
        batch_size: Pool slides per step (specimens x scanners per specimen).
        scanners_per_specimen: Scanners drawn per specimen.
        scanners: Restrict the pool to these scanners (limited-scanner ablation).

    """

    _section: ClassVar[str] = "scangen"

    lam: float = 0.0
    alpha: float = 0.7
    margin: float = 1.0
    squared: bool = True
    granularity: str = "slide"
    n_subsample: int = 32
    patches_per_sample: int = 4
    batch_size: int = 16
    scanners_per_specimen: int = 2
    scanners: list[str] | None = None

    def __post_init__(self) -> None:
        _check_float(self, "lam", minimum=0.0)
        _check_float(self, "alpha", minimum=0.0)
        if self.alpha > 1:
            msg = f"ScanGenConfig.alpha must be in [0, 1], got {self.alpha!r}."
            raise ValueError(msg)
        _check_float(self, "margin", minimum=0.0)
        _check_bool(self, "squared")
        _check_choice(self, "granularity", ("slide", "patch"))
        for name in ("n_subsample", "patches_per_sample", "batch_size"):
            _check_int(self, name, minimum=1)
        _check_int(self, "scanners_per_specimen", minimum=1)
        _str_list(self, "scanners", allow_none=True)


@dataclass
class SyntheticConfig(_ConfigBase):
    """Sizes of the synthetic FM-like store built by ``--synthetic``.

    The fields are the keyword arguments of
    :func:`~tia_scanner_robust.training.synthetic.make_synthetic_store`.

    Attributes:
        feature_dim: Feature width.
        task_specimens: Labelled specimens of the ``train`` split (one scan each).
        task_scanners: Scanners of the ``train`` split (the first ones).
        multi_specimens: Specimens scanned by every scanner
            (``scangen``/``val``/``test``).
        patches: Patches per slide.
        magnifications: Magnifications of the multi-scanner specimens.
        fractions: ``{split: fraction}`` of the multi-scanner specimens
            (``null``: 0.5/0.2/0.3 for scangen/val/test).
        world: Keyword arguments of
            :class:`~tia_scanner_robust.data.synthetic_features.SyntheticFeatureWorld`
            (e.g. ``scanners``, ``scanner_shift``).
        seed: Seed of the world and the split.

    """

    _section: ClassVar[str] = "synthetic"

    feature_dim: int = 64
    task_specimens: int = 300
    task_scanners: int = 2
    multi_specimens: int = 100
    patches: int = 64
    magnifications: list[str] = field(default_factory=lambda: ["40x"])
    fractions: dict[str, float] | None = None
    world: dict[str, Any] | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("feature_dim", "task_specimens", "task_scanners", "patches"):
            _check_int(self, name, minimum=1)
        _check_int(self, "multi_specimens", minimum=2)
        _str_list(self, "magnifications")
        _check_mapping(self, "fractions", allow_none=True)
        _check_mapping(self, "world", allow_none=True)
        _check_int(self, "seed", minimum=0)

    def store_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``make_synthetic_store`` (everything but the path)."""
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in dataclasses.fields(self)}


_SECTIONS: dict[str, type[_ConfigBase]] = {
    "data": MILDataConfig,
    "model": MILModelConfig,
    "trainer": MILTrainerConfig,
    "scangen": ScanGenConfig,
    "synthetic": SyntheticConfig,
}


@dataclass
class MILConfig(_ConfigBase):
    """A whole MIL run: ``name`` and five sections.

    The ``data``, ``model``, ``trainer``, ``scangen`` and ``synthetic``
    sections may be given as mappings (validated into their dataclass).

    Examples:
        >>> MILConfig.from_dict({"trainer": {"lr": 0}})
        Traceback (most recent call last):
        ...
        ValueError: MILConfig.trainer: MILTrainerConfig.lr must be > 0.0, got 0.
        >>> MILConfig().updated({"scangen": {"lam": 0.5}}).scangen.lam
        0.5

    """

    name: str = "mil"
    data: MILDataConfig = field(default_factory=MILDataConfig)
    model: MILModelConfig = field(default_factory=MILModelConfig)
    trainer: MILTrainerConfig = field(default_factory=MILTrainerConfig)
    scangen: ScanGenConfig = field(default_factory=ScanGenConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)

    def __post_init__(self) -> None:
        _check_str(self, "name")
        for name, cls in _SECTIONS.items():
            value = getattr(self, name)
            if isinstance(value, cls):
                continue
            if value is not None and not isinstance(value, dict):
                msg = f"MILConfig.{name} must be a mapping, got {type(value).__name__}."
                raise ValueError(msg)
            try:
                setattr(self, name, cls.from_dict(value))
            except (TypeError, ValueError) as err:
                msg = f"MILConfig.{name}: {err}"
                raise ValueError(msg) from err

    def updated(self, overrides: Mapping[str, Any]) -> MILConfig:
        """A new config with ``overrides`` (``{section: {key: value}}``) merged in."""
        return MILConfig.from_dict(_merge(self.to_dict(), overrides))


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` merged in recursively (``aggregator_kwargs`` replaced whole)."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if (
            isinstance(value, dict)
            and isinstance(out.get(key), dict)
            and key not in _REPLACED_WHOLE
        ):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read_yaml(spec: str | Path) -> tuple[dict[str, Any], str]:
    path = Path(spec)
    if path.is_file():
        text, where = read_utf8_text(path, "MIL config"), f"MIL config {path}"
    else:
        shipped = resources.files("tia_scanner_robust") / "configs" / f"{spec}.yaml"
        if not shipped.is_file():
            msg = f"MIL config {str(spec)!r} is neither a file nor a shipped config name."
            raise FileNotFoundError(msg)
        text, where = shipped.read_text(encoding="utf-8"), f"shipped MIL config {str(spec)!r}"
    try:
        loaded = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        msg = f"Invalid YAML in {where}: {err}"
        raise ValueError(msg) from err
    if not isinstance(loaded, dict):
        msg = f"{where} must be a YAML mapping, got {type(loaded).__name__}."
        raise ValueError(msg)
    return loaded, where


def load_mil_config(
    config: str | Path | Mapping[str, Any] | MILConfig | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> MILConfig:
    """A validated :class:`MILConfig`: defaults <- YAML file / shipped name / mapping <- overrides.

    Args:
        config: A YAML path, a shipped config name (``"mil_baseline"``,
            ``"mil_scangen"``), a mapping, a :class:`MILConfig` or ``None``
            (the defaults: the baseline).
        overrides: ``{section: {key: value}}`` merged last.

    Returns:
        The config.

    Raises:
        FileNotFoundError: If the file or shipped name does not exist.
        ValueError: On invalid YAML, unknown sections or keys, or bad values
            (the message names the file and the field).

    Examples:
        >>> load_mil_config("mil_baseline").scangen.lam
        0.0
        >>> load_mil_config("mil_baseline", {"model": {"aggregator": "abmil"}}).model.aggregator
        'abmil'

    """
    where = None
    if isinstance(config, MILConfig):
        loaded: Mapping[str, Any] = config.to_dict()
    elif isinstance(config, (str, Path)):
        loaded, where = _read_yaml(config)
    elif config is None:
        loaded = {}
    else:
        loaded = config
    try:
        return MILConfig.from_dict(_merge(loaded, overrides or {}))
    except (TypeError, ValueError) as err:
        if where is None:
            raise
        msg = f"Invalid {where}: {err}"
        raise ValueError(msg) from err
