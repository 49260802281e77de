"""File options of a training config: path resolution, style-augmentation files, versions.

A run's config holds everything it needs, including files:

- style-augmentation files in ``data.style_kwargs`` and in a hook's
  ``kwargs.style_kwargs`` (the SimCons second view): RandStainNA
  ``templates`` (YAML files written by ``fit-randstainna``), FDA
  ``reference_images`` (a folder of images, one image file, or a list of
  files/folders: a bank of unlabelled images from the target scanners) and
  scanner ``profiles`` (fitted profile YAML files, mixed with profile names);
  for a ``"a+b"`` combination they sit in the component's own mapping
  (``style_kwargs: {fda: {reference_images: bank/}}``);
- ``model.encoder_weights`` when it is a local file (a path with a folder
  part or a ``.pt``/``.pth``/``.bin``/``.ckpt``/``.safetensors`` suffix;
  otherwise it is an smp hub name such as ``"imagenet"``).

:func:`resolve_config_paths` turns relative paths of a config mapping into
absolute ones (against the config file's folder for a YAML file, the current
folder for ``--set`` overrides), so the run folder's ``config.yaml`` names the
same files from anywhere. :func:`load_style_kwargs` checks that the files
exist (the error names the config field and the file) and reads the FDA bank.
:func:`package_versions` lists the versions recorded in ``config.yaml``.

Examples:
    >>> import pathlib
    >>> raw = {"data": {"style_kwargs": {"templates": "lab.yaml"}}}
    >>> out = resolve_config_paths(raw, pathlib.Path("/exp"))
    >>> out["data"]["style_kwargs"]["templates"]
    '/exp/lab.yaml'
    >>> is_weight_path("imagenet"), is_weight_path("weights/resnet34.pth")
    (False, True)

"""

from __future__ import annotations

import copy
import importlib.metadata
import platform
from pathlib import Path
from typing import Any

import numpy as np

from tia_scanner_robust._validation import read_rgb_image

__all__ = [
    "PATH_OPTIONS",
    "WEIGHT_SUFFIXES",
    "is_weight_path",
    "load_style_kwargs",
    "package_versions",
    "resolve_config_paths",
]

#: Style-augmentation options that hold file paths.
PATH_OPTIONS: tuple[str, ...] = ("templates", "reference_images", "profiles")
#: Suffixes that make ``model.encoder_weights`` a local file.
WEIGHT_SUFFIXES: tuple[str, ...] = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")
_IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
_PROFILE_SUFFIXES: tuple[str, ...] = (".yaml", ".yml", ".json")
_PACKAGES: tuple[str, ...] = (
    "tia-scanner-robust",
    "torch",
    "tiatoolbox",
    "segmentation-models-pytorch",
    "albumentations",
    "numpy",
    "opencv-python-headless",
)


def is_weight_path(value: object) -> bool:
    """Whether ``model.encoder_weights`` names a local file rather than an smp hub name."""
    if not isinstance(value, (str, Path)):
        return False
    text = str(value)
    return "/" in text or "\\" in text or text.lower().endswith(WEIGHT_SUFFIXES)


def _absolute(value: str, base: Path) -> str:
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def _resolve_option(name: str, value: Any, base: Path) -> Any:
    if name == "profiles":  # names of built-in profiles stay names
        items = value if isinstance(value, list) else [value]
        out = [
            _absolute(v, base)
            if isinstance(v, str) and v.lower().endswith(_PROFILE_SUFFIXES)
            else v
            for v in items
        ]
        return out if isinstance(value, list) else out[0]
    if isinstance(value, str):
        return _absolute(value, base)
    if isinstance(value, list):
        return [_absolute(v, base) if isinstance(v, str) else v for v in value]
    return value


def _resolve_style(kwargs: Any, base: Path) -> Any:
    if not isinstance(kwargs, dict):
        return kwargs
    out = {}
    for key, value in kwargs.items():
        if key in PATH_OPTIONS:
            out[key] = _resolve_option(key, value, base)
        elif isinstance(value, dict):  # a component's own options ("a+b" combinations)
            out[key] = _resolve_style(value, base)
        else:
            out[key] = value
    return out


def resolve_config_paths(config: dict[str, Any], base: str | Path) -> dict[str, Any]:
    """A copy of a raw config mapping with its relative file options made absolute.

    Resolved: ``data.style_kwargs`` and ``hooks[i].kwargs.style_kwargs``
    (``templates``, ``reference_images``, ``profiles`` files; see
    :data:`PATH_OPTIONS`) and ``model.encoder_weights`` when it is a file
    (:func:`is_weight_path`). Other values, and anything that is not a
    mapping where one is expected, are left for the config validation.

    Args:
        config: The mapping read from YAML (or parsed ``--set`` overrides).
        base: Folder that relative paths are relative to.

    Returns:
        The resolved copy.

    Examples:
        >>> cfg = {
        ...     "model": {"encoder_weights": "w/enc.pth"},
        ...     "hooks": [
        ...         {
        ...             "name": "simcons",
        ...             "kwargs": {"style_kwargs": {"fda": {"reference_images": "b"}}},
        ...         }
        ...     ],
        ... }
        >>> out = resolve_config_paths(cfg, "/runs")
        >>> out["model"]["encoder_weights"], out["hooks"][0]["kwargs"]["style_kwargs"]
        ('/runs/w/enc.pth', {'fda': {'reference_images': '/runs/b'}})

    """
    if not isinstance(config, dict):
        return config
    base = Path(base)
    out = copy.deepcopy(config)
    data = out.get("data")
    if isinstance(data, dict) and "style_kwargs" in data:
        data["style_kwargs"] = _resolve_style(data["style_kwargs"], base)
    model = out.get("model")
    if isinstance(model, dict) and is_weight_path(model.get("encoder_weights")):
        model["encoder_weights"] = _absolute(str(model["encoder_weights"]), base)
    hooks = out.get("hooks")
    for hook in hooks if isinstance(hooks, list) else []:
        kwargs = hook.get("kwargs") if isinstance(hook, dict) else None
        if isinstance(kwargs, dict) and "style_kwargs" in kwargs:
            kwargs["style_kwargs"] = _resolve_style(kwargs["style_kwargs"], base)
    return out


def _existing_file(value: Any, where: str) -> str:
    if not isinstance(value, (str, Path)):
        msg = f"{where}: expected a file path, got {value!r}."
        raise ValueError(msg)
    if not Path(value).is_file():
        msg = f"{where}: file not found: {value}"
        raise FileNotFoundError(msg)
    return str(value)


def _reference_files(value: Any, where: str) -> list[Path]:
    items = value if isinstance(value, (list, tuple)) else [value]
    if not items:
        msg = f"{where}: give a folder, an image file or a list of them, got an empty list."
        raise ValueError(msg)
    files: list[Path] = []
    for item in items:
        if not isinstance(item, (str, Path)):
            msg = f"{where}: expected a folder or image path, got {item!r}."
            raise ValueError(msg)
        path = Path(item)
        if path.is_dir():
            found = sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES
            )
            if not found:
                msg = f"{where}: no images ({', '.join(_IMAGE_SUFFIXES)}) in folder {path}."
                raise FileNotFoundError(msg)
            files += found
        elif path.is_file():
            files.append(path)
        else:
            msg = f"{where}: no such folder or image file: {path}"
            raise FileNotFoundError(msg)
    return files


def _load_option(name: str, value: Any, where: str) -> Any:  # noqa: PLR0911 - one return per form
    if name == "templates":
        if value is None or isinstance(value, dict):
            return value
        items = value if isinstance(value, list) else [value]
        return [
            item if isinstance(item, dict) else _existing_file(item, f"{where}[{i}]")
            for i, item in enumerate(items)
        ]
    if name == "reference_images":
        if value is None:
            return None
        if isinstance(value, np.ndarray):
            return [value]
        if isinstance(value, (list, tuple)) and value and isinstance(value[0], np.ndarray):
            return list(value)
        return [read_rgb_image(path) for path in _reference_files(value, where)]
    # profiles: files must exist; names are checked by the scanner simulator
    items = value if isinstance(value, list) else [value]
    for i, item in enumerate(items):
        if isinstance(item, str) and item.lower().endswith(_PROFILE_SUFFIXES):
            _existing_file(item, f"{where}[{i}]")
    return value


def load_style_kwargs(kwargs: dict[str, Any] | None, where: str) -> dict[str, Any]:
    """Style-augmentation options ready for the constructors: files checked, FDA bank read.

    RandStainNA ``templates`` become a list of existing files (or template
    mappings); FDA ``reference_images`` (a folder, an image file or a list of
    them) become the list of RGB arrays; scanner ``profiles`` files must
    exist. Options of combination components are handled in their mapping.

    Args:
        kwargs: ``style_kwargs`` of the config (paths already absolute, see
            :func:`resolve_config_paths`).
        where: Config field named in errors (``"data.style_kwargs"``).

    Returns:
        A new dict (the config's own is not changed).

    Raises:
        FileNotFoundError: If a file or folder is missing or a folder holds no
            image (the message names the field and the path).
        ValueError: If an option has the wrong type.

    Examples:
        >>> import tempfile, pathlib, numpy as np
        >>> from tia_scanner_robust._io import atomic_write_image
        >>> bank = pathlib.Path(tempfile.mkdtemp())
        >>> _ = atomic_write_image(bank / "a.png", np.zeros((8, 8, 3), np.uint8))
        >>> out = load_style_kwargs({"reference_images": str(bank)}, "data.style_kwargs")
        >>> len(out["reference_images"]), out["reference_images"][0].shape
        (1, (8, 8, 3))
        >>> load_style_kwargs({"templates": "/no/lab.yaml"}, "data.style_kwargs")
        Traceback (most recent call last):
        ...
        FileNotFoundError: data.style_kwargs.templates[0]: file not found: /no/lab.yaml

    """
    out: dict[str, Any] = {}
    for key, value in (kwargs or {}).items():
        if key in PATH_OPTIONS:
            out[key] = _load_option(key, value, f"{where}.{key}")
        elif isinstance(value, dict):
            out[key] = load_style_kwargs(value, f"{where}.{key}")
        else:
            out[key] = value
    return out


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages a training run depends on (absent ones left out).

    Examples:
        >>> sorted(package_versions())[:2]
        ['albumentations', 'numpy']

    """
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return dict(sorted(versions.items()))
