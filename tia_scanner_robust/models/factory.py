"""Build the trained network from a model config: the smp wrapper or the user's own class.

``model.arch`` (see :class:`~tia_scanner_robust.training.config.ModelConfig`) is

- an smp architecture name (``"DeepLabV3Plus"``, ``"Unet"``...): a
  :class:`~tia_scanner_robust.models.segmentation.SmpSegmentationModel`;
- ``"tiatoolbox:NAME"``: the class ``NAME`` of TIAToolbox's
  ``tiatoolbox.models`` / ``tiatoolbox.models.architecture`` modules, e.g.
  ``"tiatoolbox:UNetModel"``;
- ``"package.module:Class"``: any importable ``torch.nn.Module`` class (the
  module is imported as installed code; nothing is read from a file).

A user's class is built as ``Class(**model_kwargs)``; when its constructor
takes a class-count argument (``num_classes``, ``num_output_channels``,
``classes``, ``out_channels``) or an input-channel argument (``in_channels``,
``num_input_channels``) that ``model_kwargs`` leaves out, ``num_classes`` and
3 are passed.

The contract a model must meet to train with the trainer and its hooks:

- ``forward`` takes the normalised ``(B, 3, H, W)`` float batch and returns
  logits ``(B, C, H', W')`` for segmentation (``H' <= H``, ``W' <= W``: a
  network with valid convolutions, such as TIAToolbox's ``UNetModel`` with
  its default encoder, returns a centred smaller map, and the targets are
  centre-cropped to it) or ``(B, C)`` for classification; or a dict with
  ``"logits"`` (and ``"embedding"`` for ScanGen);
- photometric hooks (SimCons) need nothing more: the second view goes through
  the same ``forward``;
- for TIAToolbox's engines (``SemanticSegmentor``, ``PatchPredictor``) it is
  a ``ModelABC`` with ``infer_batch`` (and ``preproc_func``/``postproc_func``);
  TIAToolbox's own architectures already are.

Pretrained encoder weights from a local file (``encoder_weights: PATH``) go
into the model's ``encoder`` module (the smp encoder) with
``torch.load(weights_only=True)``; the file is a state dict of that encoder
(a torchvision/timm ResNet state dict works for smp ResNet encoders: their
classifier keys are dropped), optionally wrapped in ``{"state_dict": ...}``
or prefixed with ``encoder.``. A mismatch is an error naming the file.

Examples:
    >>> model = build_model(
    ...     "torch.nn:Conv2d", num_classes=2, model_kwargs={"kernel_size": 3, "padding": 1}
    ... )
    >>> type(model).__name__, model.in_channels, model.out_channels
    ('Conv2d', 3, 2)
    >>> build_model("os:path", num_classes=2)
    Traceback (most recent call last):
    ...
    ValueError: model.arch 'os:path' is not a torch.nn.Module class (got module).

"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path
from typing import Any

from torch import nn

from tia_scanner_robust._validation import load_state_dict_checked, safe_torch_load

__all__ = [
    "CLASS_COUNT_ARGUMENTS",
    "INPUT_CHANNEL_ARGUMENTS",
    "build_model",
    "load_encoder_weights",
    "resolve_model_class",
]

#: Constructor arguments that receive ``num_classes`` (the first one accepted).
CLASS_COUNT_ARGUMENTS: tuple[str, ...] = (
    "num_classes",
    "num_output_channels",
    "classes",
    "out_channels",
)
#: Constructor arguments that receive the 3 input channels (the first one accepted).
INPUT_CHANNEL_ARGUMENTS: tuple[str, ...] = ("in_channels", "num_input_channels")


def _tiatoolbox_class(name: str) -> Any:
    for module_name in ("tiatoolbox.models", "tiatoolbox.models.architecture"):
        found = getattr(importlib.import_module(module_name), name, None)
        if inspect.isclass(found):
            return found
    package = importlib.import_module("tiatoolbox.models.architecture")
    for info in pkgutil.iter_modules(package.__path__):
        try:
            module = importlib.import_module(f"{package.__name__}.{info.name}")
        except ImportError:
            continue
        found = getattr(module, name, None)
        if inspect.isclass(found):
            return found
    msg = f"model.arch 'tiatoolbox:{name}': TIAToolbox has no model class {name!r}."
    raise ValueError(msg)


def resolve_model_class(spec: str) -> type[nn.Module]:
    """The ``torch.nn.Module`` class named by ``"tiatoolbox:NAME"`` or ``"package.module:Class"``.

    Raises:
        ValueError: If the module cannot be imported, has no such attribute,
            or the attribute is not an ``nn.Module`` class.

    Examples:
        >>> resolve_model_class("tiatoolbox:UNetModel").__name__
        'UNetModel'

    """
    module_name, _, name = str(spec).partition(":")
    if not module_name or not name:
        msg = f"model.arch {spec!r} must be 'package.module:Class' or 'tiatoolbox:Class'."
        raise ValueError(msg)
    if module_name == "tiatoolbox":
        found = _tiatoolbox_class(name)
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            msg = f"model.arch {spec!r}: cannot import module {module_name!r} ({err})."
            raise ValueError(msg) from err
        if not hasattr(module, name):
            msg = f"model.arch {spec!r}: module {module_name!r} has no attribute {name!r}."
            raise ValueError(msg)
        found = getattr(module, name)
    if not (inspect.isclass(found) and issubclass(found, nn.Module)):
        msg = f"model.arch {spec!r} is not a torch.nn.Module class (got {type(found).__name__})."
        raise ValueError(msg)
    return found


def _user_model(spec: str, num_classes: int, model_kwargs: dict[str, Any]) -> nn.Module:
    cls = resolve_model_class(spec)
    kwargs = dict(model_kwargs)
    try:
        accepted = set(inspect.signature(cls.__init__).parameters)
    except (TypeError, ValueError):
        accepted = set()
    for names, value in ((CLASS_COUNT_ARGUMENTS, num_classes), (INPUT_CHANNEL_ARGUMENTS, 3)):
        if not any(name in kwargs for name in names):
            name = next((n for n in names if n in accepted), None)
            if name is not None:
                kwargs[name] = value
    try:
        return cls(**kwargs)
    except TypeError as err:
        msg = f"model.arch {spec!r}: could not build it with model_kwargs {kwargs}: {err}"
        raise ValueError(msg) from err


def load_encoder_weights(model: nn.Module, path: str | Path) -> None:
    """Load a local weight file into ``model``'s encoder (``.encoder`` or ``.net.encoder``).

    Args:
        model: The network (an smp model or the smp wrapper).
        path: A state dict of the encoder saved with ``torch.save``.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If the model has no encoder, the file is not a state dict,
            or its weights do not fit the encoder (the message names the file).

    """
    path = Path(path)
    if not path.is_file():
        msg = f"model.encoder_weights: weight file not found: {path}"
        raise FileNotFoundError(msg)
    encoder = getattr(getattr(model, "net", model), "encoder", None)
    if not isinstance(encoder, nn.Module):
        msg = (
            f"model.encoder_weights={str(path)!r}: {type(model).__name__} has no .encoder "
            "module to load it into (give the weights through the model's own arguments)."
        )
        raise ValueError(msg)
    state = safe_torch_load(path, what="encoder weight file")
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if isinstance(state, dict) and state and all(str(k).startswith("encoder.") for k in state):
        state = {str(k).removeprefix("encoder."): v for k, v in state.items()}
    if isinstance(state, dict):  # smp ResNet encoders drop the classifier in load_state_dict
        state = dict(state)
        if not hasattr(encoder, "fc"):
            state = {k: v for k, v in state.items() if not str(k).startswith("fc.")}
    load_state_dict_checked(encoder, state, source=f"model.encoder_weights file {path}")


def build_model(
    arch: str = "DeepLabV3Plus",
    *,
    encoder_name: str = "resnet34",
    encoder_weights: str | None = None,
    num_classes: int = 2,
    patch_size: int = 256,
    resolution: float = 1.0,
    units: str = "baseline",
    model_kwargs: dict[str, Any] | None = None,
    class_dict: dict[int, str] | None = None,
) -> nn.Module:
    """Build the network of a model config (see the module docstring for the forms of ``arch``).

    Args:
        arch: smp architecture, ``"tiatoolbox:NAME"`` or ``"package.module:Class"``.
        encoder_name: smp encoder (smp only).
        encoder_weights: ``None``, an smp hub name (``"imagenet"``) or a local
            weight file (see :func:`load_encoder_weights`).
        num_classes: Output classes.
        patch_size: Inference patch side (smp wrapper).
        resolution: Inference resolution (smp wrapper).
        units: Units of ``resolution`` (smp wrapper).
        model_kwargs: ``smp.create_model`` arguments, or the user's class's
            constructor arguments.
        class_dict: Class index -> name, kept on the model (``class_dict``)
            for TIAToolbox's engines and the reports.

    Returns:
        The model (not yet on a device).

    Raises:
        ValueError: If the class cannot be resolved or built, or the weights
            do not fit.
        FileNotFoundError: If a weight file is missing.

    """
    kwargs = dict(model_kwargs or {})
    weight_file = encoder_weights if _is_file_spec(encoder_weights) else None
    if ":" in arch:
        model = _user_model(arch, num_classes, kwargs)
    else:
        # Lazy: smp is imported only for smp models.
        from tia_scanner_robust.models.segmentation import SmpSegmentationModel  # noqa: PLC0415

        model = SmpSegmentationModel(
            arch=arch,
            encoder_name=encoder_name,
            encoder_weights=None if weight_file else encoder_weights,
            num_classes=num_classes,
            patch_size=patch_size,
            resolution=resolution,
            units=units,
            model_kwargs=kwargs,
            class_dict=class_dict,
        )
    if class_dict is not None and ":" in arch:  # TIAToolbox reads class names from here
        model.class_dict = dict(class_dict)
    if weight_file is not None:
        load_encoder_weights(model, weight_file)
        config = getattr(model, "config", None)
        if isinstance(config, dict) and "encoder_weights" in config:
            config["encoder_weights"] = str(weight_file)
    elif encoder_weights is not None and ":" in arch:
        msg = (
            f"model.encoder_weights={encoder_weights!r} is a hub name, which only smp models "
            "download; for a user's model give a weight file or the model's own arguments."
        )
        raise ValueError(msg)
    return model


def _is_file_spec(value: object) -> bool:
    if not isinstance(value, (str, Path)):
        return False
    text = str(value)
    suffixes = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")
    return "/" in text or "\\" in text or text.lower().endswith(suffixes)
