"""Dataclass configs for training, loaded from YAML and validated on construction.

An experiment config has four sections:

.. code-block:: yaml

    trainer:            # TrainerConfig: loop, optimiser, schedule, checkpoints
      epochs: 150
      batch_size: 8
      optimizer: adam
      lr: 0.0001
      monitor: val_dice
      mode: max
      output_dir: runs/simcons
    model:              # ModelConfig: the smp network (SmpSegmentationModel)
      arch: DeepLabV3Plus
      encoder_name: resnet34
      num_classes: 2
    data:               # DataConfig: image/mask folders and ordinary augmentations
      train_dir: data/train
      val_dir: data/val
      crop_size: 256
    hooks:              # list of HookConfig: registered hook name + kwargs
      - name: simcons
        kwargs: {style_augmentation: colorjitter, lam: 0.3}

Every section rejects unknown keys (the error lists the valid ones) and
checks its values in ``__post_init__`` with messages naming the field.
YAML is read with :func:`yaml.safe_load` (no code runs).

Examples:
    >>> cfg = ExperimentConfig.from_dict({"trainer": {"epochs": 2, "lr": 0.01}})
    >>> cfg.trainer.epochs, cfg.trainer.optimizer
    (2, 'adam')
    >>> TrainerConfig(optimiser="adam")
    Traceback (most recent call last):
    ...
    TypeError: TrainerConfig.__init__() got an unexpected keyword argument 'optimiser'
    >>> TrainerConfig.from_dict({"optimiser": "adam"})
    Traceback (most recent call last):
    ...
    ValueError: Unknown TrainerConfig key(s) ['optimiser']; valid keys: ...

"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml

from tia_scanner_robust._constants import IMAGENET_MEAN, IMAGENET_STD
from tia_scanner_robust._io import to_jsonable
from tia_scanner_robust._validation import check_in_choices, read_utf8_text
from tia_scanner_robust.training.run_config import resolve_config_paths

__all__ = [
    "OPTIMIZERS",
    "SCHEDULERS",
    "TRAINING_TASKS",
    "DataConfig",
    "ExperimentConfig",
    "HookConfig",
    "ModelConfig",
    "TrainerConfig",
    "load_config",
]

#: Optimisers the trainer builds by name.
OPTIMIZERS: tuple[str, ...] = ("adam", "adamw", "sgd")
#: Learning-rate schedules (stepped once per optimiser step).
SCHEDULERS: tuple[str, ...] = ("none", "cosine", "step")
#: Training tasks (``TrainerConfig.task``): the built-in task adapter of
#: :mod:`~tia_scanner_robust.training.tasks`, i.e. the default loss and validation metrics.
TRAINING_TASKS: tuple[str, ...] = ("segmentation", "classification")

_C = TypeVar("_C", bound="_ConfigBase")


class _ConfigBase:
    """``from_dict``/``to_dict`` with unknown-key errors for a dataclass config."""

    _section: ClassVar[str] = "config"

    @classmethod
    def from_dict(cls: type[_C], data: dict[str, Any] | None) -> _C:
        """Build from a plain mapping; unknown keys raise ``ValueError`` listing valid ones."""
        data = {} if data is None else data
        if not isinstance(data, dict):
            msg = f"{cls.__name__} expects a mapping, got {type(data).__name__}."
            raise TypeError(msg)
        names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(names))
        if unknown:
            msg = f"Unknown {cls.__name__} key(s) {unknown}; valid keys: {', '.join(names)}."
            raise ValueError(msg)
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists instead of tuples) suitable for YAML, JSON and checkpoints."""
        return to_jsonable(dataclasses.asdict(self), allow_nan=True)  # type: ignore[call-overload]


def _name(cls: object, field_name: str) -> str:
    return f"{type(cls).__name__}.{field_name}"


def _check_int(obj: object, name: str, *, minimum: int, allow_none: bool = False) -> None:
    value = getattr(obj, name)
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        msg = f"{_name(obj, name)} must be an int >= {minimum}, got {value!r}."
        raise ValueError(msg)


def _check_float(
    obj: object,
    name: str,
    *,
    minimum: float | None = None,
    strict: bool = False,
    allow_none: bool = False,
) -> None:
    value = getattr(obj, name)
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        msg = f"{_name(obj, name)} must be a number, got {value!r}."
        raise ValueError(msg)
    if minimum is not None and (value <= minimum if strict else value < minimum):
        op = ">" if strict else ">="
        msg = f"{_name(obj, name)} must be {op} {minimum}, got {value!r}."
        raise ValueError(msg)
    setattr(obj, name, float(value))


#: Old spelling of ``TrainerConfig.checkpoint_every_steps``, still read.
_OLD_CHECKPOINT_KEY = "checkpoint_every_n_steps"

#: ``module:Class`` form of ``ModelConfig.arch`` (a user's model class).
_CLASS_SPEC = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*")

#: Values of ``DataConfig.style_device``.
STYLE_DEVICES: tuple[str, ...] = ("cpu", "batch")


def _check_choice(obj: object, name: str, choices: tuple[str, ...]) -> None:
    check_in_choices(getattr(obj, name), choices, _name(obj, name))


def _class_dict(value: object) -> dict[int, str] | None:
    """``{index: name}`` with int keys (YAML and JSON may give string keys), or ``None``."""
    if value is None:
        return None
    if not isinstance(value, dict) or not value:
        msg = f"ModelConfig.class_dict must be a mapping of class index to name, got {value!r}."
        raise ValueError(msg)
    try:
        out = {int(k): str(v) for k, v in value.items()}
    except (TypeError, ValueError):
        msg = f"ModelConfig.class_dict keys must be class indices (0, 1, ...), got {list(value)}."
        raise ValueError(msg) from None
    if sorted(out) != list(range(len(out))):
        msg = f"ModelConfig.class_dict keys must be 0..{len(out) - 1}, got {sorted(out)}."
        raise ValueError(msg)
    return out


def _check_triplet(obj: object, name: str) -> None:
    value = getattr(obj, name)
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 3
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        msg = f"{_name(obj, name)} must be three numbers (R, G, B), got {value!r}."
        raise ValueError(msg)
    setattr(obj, name, tuple(float(v) for v in value))


@dataclass
class TrainerConfig(_ConfigBase):
    """Training-loop options of :class:`~tia_scanner_robust.training.trainer.Trainer`.

    Attributes:
        epochs: Number of epochs; ``None`` (with ``max_steps``): as many as
            ``max_steps`` takes. Default 10 when neither is given.
        max_steps: Number of optimiser steps, whatever the epoch length. With
            ``epochs`` too, the run ends at whichever comes first (the
            schedule spans that many steps); give ``max_steps`` alone (or
            ``epochs: null``) to train by steps only.
        batch_size: Per-process batch size (under DDP each rank loads this many).
        val_batch_size: Validation batch size (default ``batch_size``).
        num_workers: DataLoader workers.
        drop_last: Drop the last incomplete training batch.
        optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"``.
        lr: Learning rate.
        weight_decay: Weight decay.
        momentum: SGD momentum.
        scheduler: ``"none"``, ``"cosine"`` (to ``min_lr`` over all steps) or
            ``"step"`` (multiply by ``gamma`` every ``step_epochs`` epochs).
        min_lr: Final learning rate of the cosine schedule.
        step_epochs: Period of the step schedule, in epochs.
        gamma: Decay factor of the step schedule.
        amp: Mixed precision: ``"auto"`` (on when training on CUDA), ``True``
            or ``False``. Always off on the CPU.
        grad_clip_norm: Clip the global gradient norm to this value.
        task: ``"segmentation"`` (default loss CE + Dice, metric ``val_dice``)
            or ``"classification"`` (CE, ``val_accuracy``).
        image_key: Batch key of the input images.
        target_key: Batch key of the targets (default: ``"mask"`` for
            segmentation, ``"label"`` for classification).
        ignore_index: Target value excluded from loss and metrics.
        normalize_mean: Mean used to normalise uint8 NHWC images (ImageNet).
        normalize_std: Standard deviation used for the normalisation.
        dice_include_background: Whether class 0 enters ``val_dice``.
        monitor: Validation metric selecting the best checkpoint.
        mode: ``"max"`` or ``"min"`` for ``monitor``.
        val_every_steps: Validate (and log a ``metrics.jsonl`` row, update
            ``best.pt``, write ``last.pt``) every N optimiser steps and at the
            last step, instead of at every epoch end. The training means of a
            row then cover the steps since the previous row.
        checkpoint_every_steps: Also write the resumable checkpoint every N
            steps (with epoch-based validation it is written at each epoch
            end too). The old spelling ``checkpoint_every_n_steps`` is still
            read by :meth:`from_dict` (and YAML) and as an attribute.
        keep_step_checkpoints: Keep a copy of every step checkpoint
            (``step_00000010.pt``...) besides ``last.pt``.
        log_every_n_steps: Period of the per-step log (``steps.jsonl``).
        seed: Seed of every random generator (data order, augmentations,
            hooks, initial RNG state).
        deterministic: Ask torch for deterministic kernels.
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        output_dir: Folder for checkpoints and logs.
        progress: Show tqdm progress bars (rank 0 only).

    """

    _section: ClassVar[str] = "trainer"

    epochs: int | None = None
    max_steps: int | None = None
    batch_size: int = 8
    val_batch_size: int | None = None
    num_workers: int = 0
    drop_last: bool = True
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    scheduler: str = "none"
    min_lr: float = 0.0
    step_epochs: int = 30
    gamma: float = 0.1
    amp: bool | str = "auto"
    grad_clip_norm: float | None = None
    task: str = "segmentation"
    image_key: str = "image"
    target_key: str | None = None
    ignore_index: int | None = None
    normalize_mean: tuple[float, float, float] = IMAGENET_MEAN
    normalize_std: tuple[float, float, float] = IMAGENET_STD
    dice_include_background: bool = False
    monitor: str = "val_dice"
    mode: str = "max"
    val_every_steps: int | None = None
    checkpoint_every_steps: int | None = None
    keep_step_checkpoints: bool = False
    log_every_n_steps: int = 10
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"
    output_dir: str = "runs/train"
    progress: bool = True

    def __post_init__(self) -> None:
        if self.epochs is None and self.max_steps is None:
            self.epochs = 10
        _check_int(self, "epochs", minimum=1, allow_none=True)
        _check_int(self, "max_steps", minimum=1, allow_none=True)
        _check_int(self, "batch_size", minimum=1)
        _check_int(self, "val_batch_size", minimum=1, allow_none=True)
        _check_int(self, "num_workers", minimum=0)
        _check_choice(self, "optimizer", OPTIMIZERS)
        _check_float(self, "lr", minimum=0.0, strict=True)
        _check_float(self, "weight_decay", minimum=0.0)
        _check_float(self, "momentum", minimum=0.0)
        _check_choice(self, "scheduler", SCHEDULERS)
        _check_float(self, "min_lr", minimum=0.0)
        _check_int(self, "step_epochs", minimum=1)
        _check_float(self, "gamma", minimum=0.0, strict=True)
        if self.amp not in (True, False, "auto"):
            msg = f"TrainerConfig.amp must be true, false or 'auto'; got {self.amp!r}."
            raise ValueError(msg)
        _check_float(self, "grad_clip_norm", minimum=0.0, strict=True, allow_none=True)
        _check_choice(self, "task", TRAINING_TASKS)
        if self.target_key is None:
            self.target_key = "mask" if self.task == "segmentation" else "label"
        for name in ("image_key", "target_key", "monitor", "device", "output_dir"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                msg = (
                    f"TrainerConfig.{name} must be a non-empty string, got {getattr(self, name)!r}."
                )
                raise ValueError(msg)
        _check_int(self, "ignore_index", minimum=-(2**31), allow_none=True)
        _check_triplet(self, "normalize_mean")
        _check_triplet(self, "normalize_std")
        if min(self.normalize_std) <= 0:
            msg = f"TrainerConfig.normalize_std must be > 0, got {self.normalize_std!r}."
            raise ValueError(msg)
        _check_choice(self, "mode", ("max", "min"))
        _check_int(self, "val_every_steps", minimum=1, allow_none=True)
        _check_int(self, "checkpoint_every_steps", minimum=1, allow_none=True)
        _check_int(self, "log_every_n_steps", minimum=1)
        _check_int(self, "seed", minimum=0)
        if self.seed >= 2**32:
            msg = f"TrainerConfig.seed must be < 2**32, got {self.seed}."
            raise ValueError(msg)
        for name in (
            "drop_last",
            "dice_include_background",
            "keep_step_checkpoints",
            "deterministic",
            "progress",
        ):
            if not isinstance(getattr(self, name), bool):
                msg = f"TrainerConfig.{name} must be true or false, got {getattr(self, name)!r}."
                raise ValueError(msg)

    @classmethod
    def from_dict(cls: type[_C], data: dict[str, Any] | None) -> _C:
        """Build from a mapping; also reads the old spelling ``checkpoint_every_n_steps``."""
        if isinstance(data, dict) and _OLD_CHECKPOINT_KEY in data:
            data = dict(data)
            old = data.pop(_OLD_CHECKPOINT_KEY)
            new = data.get("checkpoint_every_steps")
            if new is not None and old is not None and new != old:
                msg = (
                    f"{cls.__name__}.checkpoint_every_steps ({new}) and its old spelling "
                    f"{_OLD_CHECKPOINT_KEY} ({old}) differ; give one."
                )
                raise ValueError(msg)
            data["checkpoint_every_steps"] = new if new is not None else old
        return super().from_dict(data)

    @property
    def checkpoint_every_n_steps(self) -> int | None:
        """Old spelling of ``checkpoint_every_steps``."""
        return self.checkpoint_every_steps


@dataclass
class ModelConfig(_ConfigBase):
    """The network: an smp architecture or the user's own ``torch.nn.Module`` class.

    See :func:`~tia_scanner_robust.models.factory.build_model` for how each
    form is built and the contract a user's model must meet.

    Attributes:
        arch: An smp architecture name (default ``"DeepLabV3Plus"``, the
            paper's; built as
            :class:`~tia_scanner_robust.models.segmentation.SmpSegmentationModel`),
            ``"tiatoolbox:NAME"`` (a class of
            ``tiatoolbox.models.architecture``, e.g. ``"tiatoolbox:UNetModel"``)
            or ``"package.module:Class"`` (any importable ``torch.nn.Module``
            class, built with ``model_kwargs``).
        encoder_name: smp encoder (default ``"resnet34"``, the paper's; smp only).
        encoder_weights: ``None`` (random init), an smp hub name such as
            ``"imagenet"`` (downloaded by smp), or the path of a local weight
            file (a state dict of the smp encoder, read with
            ``torch.load(weights_only=True)``; relative to the config file's folder).
        num_classes: Output classes (>= 2).
        patch_size: Inference patch side for TIAToolbox's engines.
        resolution: Inference resolution.
        units: Units of ``resolution`` (``"baseline"``, ``"mpp"``, ``"power"``, ``"level"``).
        model_kwargs: Extra ``smp.create_model`` keyword arguments, or the
            constructor arguments of a user's model class.
        class_dict: Class index -> name (e.g. ``{0: background, 1: tumour}``),
            stored with the model so that reports name the classes; one name
            per class. ``None``: reports say ``class 0``, ``class 1``...

    """

    _section: ClassVar[str] = "model"

    arch: str = "DeepLabV3Plus"
    encoder_name: str = "resnet34"
    encoder_weights: str | None = None
    num_classes: int = 2
    patch_size: int = 256
    resolution: float = 1.0
    units: str = "baseline"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    class_dict: dict[int, str] | None = None

    def __post_init__(self) -> None:
        self.class_dict = _class_dict(self.class_dict)
        for name in ("arch", "encoder_name"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                msg = f"ModelConfig.{name} must be a non-empty string, got {getattr(self, name)!r}."
                raise ValueError(msg)
        if ":" in self.arch and not _CLASS_SPEC.fullmatch(self.arch):
            msg = (
                "ModelConfig.arch with ':' must be 'tiatoolbox:ClassName' or "
                f"'package.module:ClassName', got {self.arch!r}."
            )
            raise ValueError(msg)
        if self.encoder_weights is not None and not isinstance(self.encoder_weights, str):
            msg = (
                "ModelConfig.encoder_weights must be null or a string, "
                f"got {self.encoder_weights!r}."
            )
            raise ValueError(msg)
        _check_int(self, "num_classes", minimum=2)
        _check_int(self, "patch_size", minimum=16)
        _check_float(self, "resolution", minimum=0.0, strict=True)
        _check_choice(self, "units", ("baseline", "mpp", "power", "level"))
        if self.class_dict is not None and len(self.class_dict) != self.num_classes:
            msg = (
                f"ModelConfig.class_dict names {len(self.class_dict)} classes but "
                f"num_classes is {self.num_classes}."
            )
            raise ValueError(msg)
        if not isinstance(self.model_kwargs, dict):
            msg = f"ModelConfig.model_kwargs must be a mapping, got {self.model_kwargs!r}."
            raise ValueError(msg)


@dataclass
class DataConfig(_ConfigBase):
    """Image/mask folders and the ordinary augmentations of the paper.

    Attributes:
        train_dir: Folder with ``images/`` and ``masks/``.
        val_dir: Validation folder (same layout), optional.
        crop_size: Random crop side for training (padded when smaller);
            ``None`` keeps full images (they must share one size).
        val_crop_size: Centre crop for validation (``None``: full images).
        num_classes: Expected number of classes (labels are checked).
        flip_p: Probability of each horizontal and vertical flip.
        blur_p: Probability of Gaussian blur.
        noise_p: Probability of Gaussian noise.
        style_augmentation: Optional style augmentation in the ordinary
            pipeline (a :func:`~tia_scanner_robust.augmentations.style_augmentation`
            name such as ``"colorjitter"``), the paper's "SA" rows.
        style_p: Probability of that style augmentation.
        style_kwargs: Options of that style augmentation (the keyword
            arguments of :func:`~tia_scanner_robust.augmentations.style_augmentation`;
            per component for a ``"a+b"`` combination). File options take
            paths, relative to the config file's folder: RandStainNA
            ``templates`` (YAML files from ``fit-randstainna``), FDA
            ``reference_images`` (a folder or a list of image files: a bank
            of target-scanner images) and scanner ``profiles`` (profile
            names or fitted profile YAML files); see
            :mod:`~tia_scanner_robust.training.run_config`.
        check_data: Open every image and mask when the run starts and check
            their sizes and mask values (fails in seconds, naming the file).
        style_device: Where that style augmentation runs: ``"cpu"`` (default,
            in the DataLoader workers, per image) or ``"batch"`` (deferred to
            the training device, on the whole batch, by a
            :class:`~tia_scanner_robust.training.simcons.BatchStyleHook` placed
            before the configured hooks; the workers then only decode, crop,
            flip, blur and add noise).

    """

    _section: ClassVar[str] = "data"

    train_dir: str | None = None
    val_dir: str | None = None
    crop_size: int | None = 256
    val_crop_size: int | None = None
    num_classes: int | None = None
    flip_p: float = 0.5
    blur_p: float = 0.2
    noise_p: float = 0.2
    style_augmentation: str | None = None
    style_p: float = 0.5
    style_device: str = "cpu"
    style_kwargs: dict[str, Any] = field(default_factory=dict)
    check_data: bool = True

    def __post_init__(self) -> None:
        _check_choice(self, "style_device", STYLE_DEVICES)
        for name in ("train_dir", "val_dir", "style_augmentation"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (str, Path)) or not str(value)):
                msg = f"DataConfig.{name} must be null or a non-empty string, got {value!r}."
                raise ValueError(msg)
            if isinstance(value, Path):
                setattr(self, name, str(value))
        _check_int(self, "crop_size", minimum=1, allow_none=True)
        _check_int(self, "val_crop_size", minimum=1, allow_none=True)
        _check_int(self, "num_classes", minimum=2, allow_none=True)
        if not isinstance(self.style_kwargs, dict):
            msg = f"DataConfig.style_kwargs must be a mapping, got {self.style_kwargs!r}."
            raise ValueError(msg)
        if self.style_kwargs and self.style_augmentation is None:
            msg = "DataConfig.style_kwargs is set but DataConfig.style_augmentation is null."
            raise ValueError(msg)
        if not isinstance(self.check_data, bool):
            msg = f"DataConfig.check_data must be true or false, got {self.check_data!r}."
            raise ValueError(msg)
        for name in ("flip_p", "blur_p", "noise_p", "style_p"):
            _check_float(self, name, minimum=0.0)
            if getattr(self, name) > 1:
                msg = f"DataConfig.{name} must be in [0, 1], got {getattr(self, name)!r}."
                raise ValueError(msg)


@dataclass
class HookConfig(_ConfigBase):
    """A hook by registry name with its keyword arguments.

    Attributes:
        name: Name in :data:`~tia_scanner_robust.training.hooks.HOOK_REGISTRY`
            (or an entry point of group ``tia_scanner_robust.hooks``).
        kwargs: Keyword arguments of the hook's constructor.

    """

    _section: ClassVar[str] = "hooks"

    name: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            msg = f"HookConfig.name must be a non-empty string, got {self.name!r}."
            raise ValueError(msg)
        if not isinstance(self.kwargs, dict):
            msg = f"HookConfig.kwargs of hook {self.name!r} must be a mapping, got {self.kwargs!r}."
            raise ValueError(msg)


@dataclass
class ExperimentConfig(_ConfigBase):
    """Top-level config: ``trainer``, ``model``, ``data`` and ``hooks`` sections.

    ``versions`` (package versions) is informational: the run folder's
    ``config.yaml`` records the versions that ran it; it does not change a run.
    """

    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    hooks: list[HookConfig] = field(default_factory=list)
    versions: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.versions, dict):
            msg = f"ExperimentConfig.versions must be a mapping, got {self.versions!r}."
            raise ValueError(msg)
        for name, cls in (("trainer", TrainerConfig), ("model", ModelConfig), ("data", DataConfig)):
            value = getattr(self, name)
            if isinstance(value, dict) or value is None:
                setattr(self, name, cls.from_dict(value))
            elif not isinstance(value, cls):
                msg = f"ExperimentConfig.{name} must be a mapping, got {type(value).__name__}."
                raise ValueError(msg)
        hooks = self.hooks or []
        if not isinstance(hooks, list):
            msg = f"ExperimentConfig.hooks must be a list of {{name, kwargs}}, got {hooks!r}."
            raise ValueError(msg)
        parsed = []
        for i, hook in enumerate(hooks):
            if isinstance(hook, HookConfig):
                parsed.append(hook)
            elif isinstance(hook, str):
                parsed.append(HookConfig(name=hook))
            elif isinstance(hook, dict):
                try:
                    parsed.append(HookConfig.from_dict(hook))
                except ValueError as err:
                    msg = f"ExperimentConfig.hooks[{i}]: {err}"
                    raise ValueError(msg) from err
            else:
                msg = f"ExperimentConfig.hooks[{i}] must be a mapping or a name, got {hook!r}."
                raise ValueError(msg)
        self.hooks = parsed


def load_config(path: str | Path) -> ExperimentConfig:
    r"""Read an :class:`ExperimentConfig` from a YAML file (``yaml.safe_load``).

    Relative file options (``data.style_kwargs`` and hook ``style_kwargs``
    files, a local ``model.encoder_weights``) are made absolute against the
    file's folder (:func:`~tia_scanner_robust.training.run_config.resolve_config_paths`).

    Args:
        path: YAML file with optional ``trainer``, ``model``, ``data`` and
            ``hooks`` sections.

    Returns:
        The validated config.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If the YAML is invalid or a section/key/value is wrong
            (the message names the file and the field).

    Examples:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "cfg.yaml"
        >>> _ = p.write_text("trainer:\n  epochs: 3\nhooks:\n  - name: simcons\n")
        >>> cfg = load_config(p)
        >>> cfg.trainer.epochs, cfg.hooks[0].name
        (3, 'simcons')

    """
    path = Path(path)
    if not path.is_file():
        msg = f"Config file not found: {path}"
        raise FileNotFoundError(msg)
    try:
        data = yaml.safe_load(read_utf8_text(path, "config file"))
    except yaml.YAMLError as err:
        msg = f"Invalid YAML in {path}: {err}"
        raise ValueError(msg) from err
    # File options (style-augmentation files, local encoder weights) are
    # relative to the config file's folder.
    data = resolve_config_paths(data, path.parent.resolve())
    try:
        return ExperimentConfig.from_dict(data)
    except (TypeError, ValueError) as err:
        msg = f"Invalid config {path}: {err}"
        raise ValueError(msg) from err
