"""Turn a model specification into a TIAToolbox-ready ``nn.Module`` and IO config.

The evaluator accepts a model in several forms; :func:`resolve_model`
normalises them all into ``(module, ioconfig, description)``:

- ``"builtin"`` (alias ``"classical"``): the offline
  :class:`~tia_scanner_robust.models.classical.ColourDeconvolutionSegmenter`
  with :func:`~tia_scanner_robust.models.classical.classical_ioconfig`.
- A TIAToolbox pretrained model name (``"fcn_resnet50_unet-bcss"``,
  ``"resnet18-kather100k"``, a torchvision backbone such as ``"resnet18"``
  (random-initialised in TIAToolbox 2.x), a timm/foundation-model name such as
  ``"UNI"``...): built with :func:`tiatoolbox.models.architecture.get_pretrained_model`.
  Weights come from the Hugging Face hub unless ``weights=`` names a local
  file (a plain ``state_dict`` saved with ``torch.save``).
- An ``nn.Module`` (ideally a TIAToolbox ``ModelABC``): used as is; its
  ``ioconfig`` attribute, when present, is the default IO config.
- A checkpoint file (``.pt``/``.pth``/``.ckpt``), always read with
  ``torch.load(weights_only=True)`` (no code in the file runs). Accepted
  payloads (dicts):

  - written by :meth:`SmpSegmentationModel.save_checkpoint` or the plugin's
    trainer: ``{"config" | "model_config": {...smp config...},
    "state_dict" | "model": {...}}``;
  - ``{"arch": NAME, "state_dict": {...}, "config": {...}}`` where ``NAME`` is
    ``"builtin"``/``"classical"`` (``config`` holds the thresholds, no weights
    needed), a name registered with :func:`register_architecture`, or a
    TIAToolbox pretrained name (the architecture is built without downloading
    and the state dict loaded into it). ``"model_name"`` is an alias of ``"arch"``.

  A bare state dict cannot be interpreted alone: pass the architecture as
  ``model=`` and the file as ``weights=``.

Examples:
    >>> module, ioconfig, name = resolve_model("builtin")
    >>> type(module).__name__, name
    ('ColourDeconvolutionSegmenter', 'builtin')

"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from tia_scanner_robust._validation import (
    load_checkpoint_dict,
    load_state_dict_checked,
    safe_torch_load,
    summarize_state_dict_error,
)

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "ARCHITECTURES",
    "CHECKPOINT_SUFFIXES",
    "WeightsUnavailableError",
    "load_checkpoint",
    "load_model_checkpoint",
    "register_architecture",
    "resolve_model",
]

#: File suffixes treated as checkpoints when ``model`` is a string.
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".tar")

#: Architecture name -> factory ``f(**config) -> nn.Module`` for ``{"arch": ...}`` checkpoints.
ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {}

_BUILTIN_NAMES = ("builtin", "classical")
_STATE_DICT = "a state dict (parameter name -> tensor) saved with torch.save"


def register_architecture(name: str, factory: Callable[..., nn.Module]) -> None:
    """Make ``{"arch": name, "config": {...}, "state_dict": ...}`` checkpoints loadable.

    Args:
        name: Architecture name stored in checkpoints.
        factory: Called as ``factory(**config)``; returns an ``nn.Module``.

    Raises:
        ValueError: If ``name`` is empty or reserved.
        TypeError: If ``factory`` is not callable.

    Examples:
        >>> from torch import nn
        >>> register_architecture("tiny-linear", lambda d=4: nn.Linear(d, 2))
        >>> "tiny-linear" in ARCHITECTURES
        True

    """
    if not isinstance(name, str) or not name.strip():
        msg = f"name must be a non-empty string, got {name!r}."
        raise ValueError(msg)
    if name in _BUILTIN_NAMES:
        msg = f"name {name!r} is reserved for the builtin segmenter."
        raise ValueError(msg)
    if not callable(factory):
        msg = f"factory must be callable, got {type(factory).__name__}."
        raise TypeError(msg)
    ARCHITECTURES[name] = factory


def _builtin(config: dict[str, Any] | None = None) -> tuple[nn.Module, Any]:
    from tia_scanner_robust.models.classical import (  # noqa: PLC0415 - keeps import light
        ColourDeconvolutionSegmenter,
        classical_ioconfig,
    )

    return ColourDeconvolutionSegmenter(**(config or {})), classical_ioconfig()


class WeightsUnavailableError(RuntimeError):
    """The weights of a pretrained model name could not be fetched (offline, hub down)."""


def _offline_message(name: str, error: BaseException) -> str:
    """One line: the name, that its weights could not be fetched, how to pass local ones."""
    reason = " ".join(str(error).split()) or type(error).__name__
    return (
        f"Could not fetch the weights of pretrained model {name!r} from the Hugging Face hub "
        f"({type(error).__name__}: {reason[:200]}). Offline, pass local weights: "
        f"--model {name} --weights PATH (a state dict saved with torch.save; weights= in "
        f"Python), or a checkpoint {{'arch': '{name}', 'state_dict': ...}} as --model."
    )


def _backbone(name: str, weights: str | Path | None) -> nn.Module | None:
    """A TIAToolbox torchvision/timm feature backbone (``None``: ``name`` is not one).

    torchvision backbones are random-initialised in TIAToolbox 2.x; timm ones
    download their weights unless ``weights`` names a local state dict, which
    is loaded (TIAToolbox itself ignores local weights for these names).
    """
    import timm  # noqa: PLC0415
    from tiatoolbox.models.architecture.vanilla import (  # noqa: PLC0415
        CNNBackbone,
        TimmBackbone,
        timm_arch_dict,
        torch_cnn_backbone_dict,
    )

    if name in torch_cnn_backbone_dict:
        model = CNNBackbone(name)
    elif name in timm_arch_dict or name in timm.list_models():
        try:
            model = TimmBackbone(name, pretrained=weights is None)
        except Exception as error:
            if weights is not None:
                raise
            raise WeightsUnavailableError(_offline_message(name, error)) from None
    else:
        return None
    if weights is not None:
        state = safe_torch_load(weights, what="weights file", expected=_STATE_DICT)
        load_state_dict_checked(model, state, source=f"weights file {weights}")
    return model


def _tiatoolbox_pretrained(name: str, weights: str | Path | None) -> tuple[nn.Module, Any]:
    """Build a TIAToolbox pretrained model (weights from the hub unless given).

    Raises:
        WeightsUnavailableError: If the hub cannot be reached (one line naming
            the model and how to pass local weights).
    """
    from tiatoolbox.models.architecture import get_pretrained_model  # noqa: PLC0415

    if weights is not None and not Path(weights).is_file():
        msg = f"weights file not found: {weights}"
        raise FileNotFoundError(msg)
    if weights is not None:  # one clear line for a pickled or foreign file
        safe_torch_load(weights, what="weights file", expected=_STATE_DICT)
    backbone = _backbone(name, weights)
    if backbone is not None:
        return backbone, None
    if not _is_tiatoolbox_name(name):
        msg = (
            f"Unknown model {name!r}: not 'builtin', not an existing checkpoint file and not a "
            f"TIAToolbox pretrained model name (Pretrained model `{name}` does not exist.)."
        )
        raise ValueError(msg)
    if weights is None:
        try:
            return get_pretrained_model(name, None)
        except Exception as error:  # noqa: BLE001 - the hub: no network, proxy, closed client...
            raise WeightsUnavailableError(_offline_message(name, error)) from None
    try:
        return get_pretrained_model(name, str(weights))
    except RuntimeError as error:  # load_state_dict: weights of another architecture
        msg = (
            f"The weights in weights file {weights} do not fit the TIAToolbox model {name!r}: "
            f"{summarize_state_dict_error(error)}. They were saved from another architecture."
        )
        raise ValueError(msg) from None


def _is_backbone_name(name: str) -> bool:
    """A torchvision or timm backbone name TIAToolbox builds (feature extractors)."""
    import timm  # noqa: PLC0415
    from tiatoolbox.models.architecture.vanilla import (  # noqa: PLC0415
        timm_arch_dict,
        torch_cnn_backbone_dict,
    )

    return name in torch_cnn_backbone_dict or name in timm_arch_dict or name in timm.list_models()


def _is_tiatoolbox_name(name: str) -> bool:
    from tiatoolbox.models.architecture import PRETRAINED_INFO  # noqa: PLC0415

    return name in PRETRAINED_INFO


def load_model_checkpoint(
    path: str | Path, *, map_location: str = "cpu"
) -> tuple[nn.Module, Any, str]:
    """Load a segmentation or classification model checkpoint (see the module docstring).

    Not to be confused with the trainer's ``load_checkpoint`` (which resumes
    training) or ``load_mil_checkpoint`` (MIL models).

    Args:
        path: The checkpoint file.
        map_location: Device for the loaded tensors.

    Returns:
        ``(module, ioconfig or None, description)``.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the payload is not one of the accepted layouts; the
            message names the file and what was found.

    Examples:
        >>> import tempfile, pathlib, torch
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "cd.pt"
        >>> torch.save({"arch": "builtin", "config": {"h_threshold": 0.06}}, p)
        >>> module, _, desc = load_model_checkpoint(p)
        >>> module.h_threshold, desc.startswith("checkpoint:")
        (0.06, True)

    """
    path = Path(path)
    payload = load_checkpoint_dict(
        path,
        expected="a model checkpoint: a dict with 'arch' or an smp 'config', and 'state_dict'",
        map_location=map_location,
    )
    desc = f"checkpoint:{path.name}"
    smp_config = payload.get("config", payload.get("model_config"))
    arch = payload.get("arch", payload.get("model_name"))
    state = payload.get("state_dict", payload.get("model"))

    if arch is None and isinstance(smp_config, dict) and "encoder_name" in smp_config:
        from tia_scanner_robust.models.segmentation import (  # noqa: PLC0415
            SmpSegmentationModel,
        )

        model = SmpSegmentationModel.from_checkpoint(path, map_location=map_location)
        return model, model.ioconfig, desc
    if arch is None:
        if payload and all(torch.is_tensor(v) for v in payload.values()):
            msg = (
                f"Checkpoint {path} is a bare state dict: it does not say which architecture "
                "it belongs to. Pass the architecture as model= (e.g. a TIAToolbox pretrained "
                "name) and this file as weights=."
            )
        else:
            msg = (
                f"Checkpoint {path} has no 'arch'/'model_name' entry and no smp 'config'; "
                f"found keys {sorted(map(str, payload))}."
            )
        raise ValueError(msg)
    if not isinstance(arch, str):
        msg = f"Checkpoint {path}: 'arch' must be a string, got {type(arch).__name__}."
        raise ValueError(msg)
    config = payload.get("config") or {}
    if not isinstance(config, dict):
        msg = f"Checkpoint {path}: 'config' must be a dict, got {type(config).__name__}."
        raise ValueError(msg)

    model, ioconfig = _build_arch(arch, config, state, path)
    return model.eval(), ioconfig, desc


def load_checkpoint(path: str | Path, *, map_location: str = "cpu") -> tuple[nn.Module, Any, str]:
    """Deprecated alias of :func:`load_model_checkpoint`.

    Examples:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     load_checkpoint("missing.pt")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        FileNotFoundError: Checkpoint file not found: missing.pt

    """
    warnings.warn(
        "tia_scanner_robust.engines.loading.load_checkpoint is deprecated; "
        "use load_model_checkpoint.",
        DeprecationWarning,
        stacklevel=2,
    )
    return load_model_checkpoint(path, map_location=map_location)


def _build_arch(arch: str, config: dict[str, Any], state: Any, path: Path) -> tuple[nn.Module, Any]:
    """Build the architecture named in a checkpoint and load its state dict."""
    ioconfig = None
    if arch in _BUILTIN_NAMES:
        model, ioconfig = _builtin(config)
    elif arch in ARCHITECTURES:
        model = ARCHITECTURES[arch](**config)
        ioconfig = getattr(model, "ioconfig", None)
    elif _is_tiatoolbox_name(arch) or _is_backbone_name(arch):
        if not isinstance(state, dict):
            msg = f"Checkpoint {path}: arch {arch!r} needs a 'state_dict'."
            raise ValueError(msg)
        with tempfile.TemporaryDirectory() as tmp:
            weights = Path(tmp) / "weights.pth"
            torch.save(state, weights)
            model, ioconfig = _tiatoolbox_pretrained(arch, weights)
        return model, ioconfig  # weights already loaded
    else:
        known = sorted([*_BUILTIN_NAMES, *ARCHITECTURES])
        msg = (
            f"Checkpoint {path}: unknown arch {arch!r}. Known: {', '.join(known)}, "
            "or any TIAToolbox pretrained model name (register others with "
            "register_architecture)."
        )
        raise ValueError(msg)
    if isinstance(state, dict) and state:
        load_state_dict_checked(model, state, source=f"checkpoint {path}")
    return model, ioconfig


def resolve_model(
    model: str | Path | nn.Module,
    *,
    weights: str | Path | None = None,
) -> tuple[nn.Module, Any, str]:
    """Normalise a model specification (see the module docstring).

    Args:
        model: ``"builtin"``, a TIAToolbox pretrained name, a checkpoint path
            or an ``nn.Module``.
        weights: Local weights (a ``state_dict`` file) for a TIAToolbox
            pretrained name, or for an ``nn.Module`` (loaded with
            ``torch.load(weights_only=True)``).

    Returns:
        ``(module, ioconfig or None, description)``: the module in eval mode,
        the IO config it comes with (``None`` when unknown) and a short
        description for reports.

    Raises:
        TypeError: If ``model`` is of an unsupported type.
        ValueError: On an unknown name or an unreadable checkpoint.
        WeightsUnavailableError: If a pretrained name's weights cannot be
            fetched (offline): pass ``weights=`` (a local state dict).

    Examples:
        >>> from torch import nn
        >>> module, ioconfig, desc = resolve_model(nn.Identity())
        >>> ioconfig is None, desc
        (True, 'module:Identity')

    """
    if isinstance(model, nn.Module):
        if weights is not None:
            state = safe_torch_load(weights, what="weights file", expected=_STATE_DICT)
            load_state_dict_checked(model, state, source=f"weights file {weights}")
        return model.eval(), getattr(model, "ioconfig", None), f"module:{type(model).__name__}"
    if not isinstance(model, (str, Path)):
        msg = (
            "model must be 'builtin', a TIAToolbox pretrained name, a checkpoint path or an "
            f"nn.Module; got {type(model).__name__}."
        )
        raise TypeError(msg)
    text = str(model)
    if text in _BUILTIN_NAMES:
        module, ioconfig = _builtin()
        return module.eval(), ioconfig, "builtin"
    path = Path(text)
    if path.suffix.lower() in CHECKPOINT_SUFFIXES or path.is_file():
        if weights is not None:
            msg = "weights= is only used with a pretrained model name or an nn.Module."
            raise ValueError(msg)
        return load_model_checkpoint(path)
    module, ioconfig = _tiatoolbox_pretrained(text, weights)
    return module.eval(), ioconfig, f"tiatoolbox:{text}"
