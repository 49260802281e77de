"""RandStainNA templates: the fitted distributions of image colour statistics, and their files.

A template (:class:`RandStainNATemplate`) records, for one colour space (LAB,
HSV or HED in the 8-bit convention of
:mod:`~tia_scanner_robust.augmentations.colorspace`) and each of its three
channels, the distribution across template images of the image-level
channel mean and of the channel standard deviation
(:class:`SeriesDistribution`: family, mean, std). Templates are read and
written as YAML (:func:`load_randstainna_template`,
:func:`save_randstainna_template`; the reference implementation's files are
read too), and one default per colour space ships with the package
(:func:`default_randstainna_template`). Fitting lives in
:mod:`~tia_scanner_robust.augmentations.randstainna`
(:func:`~tia_scanner_robust.augmentations.randstainna.fit_randstainna_template`),
which also re-exports every name of this module.

Examples:
    >>> t = default_randstainna_template("LAB")
    >>> t.channels, t.channel_mean[0].distribution in FITTED_FAMILIES
    (('L', 'A', 'B'), True)

"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import math
import numbers
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from tia_scanner_robust._io import atomic_write_text, to_jsonable
from tia_scanner_robust._validation import check_in_choices
from tia_scanner_robust.augmentations.colorspace import CHANNEL_NAMES, COLOR_SPACES

__all__ = [
    "FITTED_FAMILIES",
    "TEMPLATE_FORMAT",
    "RandStainNATemplate",
    "SeriesDistribution",
    "default_randstainna_template",
    "load_randstainna_template",
    "save_randstainna_template",
]

#: Families a template may record (goodness-of-fit choice).
FITTED_FAMILIES: tuple[str, ...] = ("normal", "laplace")
TEMPLATE_FORMAT = "tia-scanner-robust/randstainna-template/v1"
_SERIES_KEYS = ("avg", "std")  # per channel: distribution of the channel mean / channel std
_FAMILY_ALIASES = {"norm": "normal", "gaussian": "normal"}
# Top-level keys written by the reference implementation's preprocessing script.
_REFERENCE_EXTRA_KEYS = frozenset({"methods", "random", "n_each_class"})


@dataclass(frozen=True)
class SeriesDistribution:
    """Fitted distribution of one per-image statistic across the template images.

    Attributes:
        distribution: ``"normal"`` or ``"laplace"``.
        mean: Mean of the series.
        std: Standard deviation of the series (non-negative).

    Examples:
        >>> SeriesDistribution("laplace", 150.0, 10.0).std
        10.0

    """

    distribution: str
    mean: float
    std: float

    def __post_init__(self) -> None:
        """Validate the family and the parameters."""
        family = _FAMILY_ALIASES.get(self.distribution, self.distribution)
        check_in_choices(family, FITTED_FAMILIES, "distribution")
        object.__setattr__(self, "distribution", family)
        for name in ("mean", "std"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                msg = f"{name} must be a number, got {value!r}."
                raise TypeError(msg)
            if not math.isfinite(value):
                msg = f"{name} must be finite, got {value!r}."
                raise ValueError(msg)
            object.__setattr__(self, name, float(value))
        if self.std < 0:
            msg = f"std must be non-negative, got {self.std}."
            raise ValueError(msg)


@dataclass(frozen=True)
class RandStainNATemplate:
    """A RandStainNA template: per channel, the distributions of image statistics.

    Attributes:
        color_space: ``"LAB"``, ``"HSV"`` or ``"HED"`` (8-bit convention of
            :mod:`~tia_scanner_robust.augmentations.colorspace`).
        channel_mean: Three :class:`SeriesDistribution`, one per channel: the
            distribution of the image-level channel mean.
        channel_std: Three :class:`SeriesDistribution`: the distribution of the
            image-level channel standard deviation.
        n_images: Number of images the template was fitted on (``None`` if unknown).
        metadata: Free-form provenance (how and from what it was made).

    Examples:
        >>> s = SeriesDistribution("normal", 1.0, 0.1)
        >>> t = RandStainNATemplate("HED", (s, s, s), (s, s, s))
        >>> t.channels
        ('H', 'E', 'D')
        >>> RandStainNATemplate.from_dict(t.to_dict()) == t
        True

    """

    color_space: str
    channel_mean: tuple[SeriesDistribution, SeriesDistribution, SeriesDistribution]
    channel_std: tuple[SeriesDistribution, SeriesDistribution, SeriesDistribution]
    n_images: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Validate the colour space, the series and the metadata."""
        if not isinstance(self.color_space, str):
            msg = f"color_space must be a string, got {self.color_space!r}."
            raise TypeError(msg)
        object.__setattr__(
            self,
            "color_space",
            check_in_choices(self.color_space.upper(), COLOR_SPACES, "color_space"),
        )
        for name in ("channel_mean", "channel_std"):
            series = tuple(getattr(self, name))
            if len(series) != 3 or not all(isinstance(s, SeriesDistribution) for s in series):
                msg = f"{name} must hold three SeriesDistribution objects (one per channel)."
                raise TypeError(msg)
            object.__setattr__(self, name, series)
        if any(s.mean < 0 for s in self.channel_std):
            msg = "channel_std: the mean of a channel-std series must be non-negative."
            raise ValueError(msg)
        if self.n_images is not None and (
            isinstance(self.n_images, bool)
            or not isinstance(self.n_images, int)
            or self.n_images < 1
        ):
            msg = f"n_images must be a positive integer or None, got {self.n_images!r}."
            raise ValueError(msg)
        if not isinstance(self.metadata, Mapping):
            msg = f"metadata must be a mapping, got {type(self.metadata).__name__}."
            raise TypeError(msg)
        object.__setattr__(self, "metadata", dict(self.metadata))

    @property
    def channels(self) -> tuple[str, str, str]:
        """Channel names of the colour space (template file keys)."""
        return CHANNEL_NAMES[self.color_space]

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (what the YAML file holds), reference-compatible layout."""
        data: dict[str, Any] = {
            "format": TEMPLATE_FORMAT,
            "color_space": self.color_space,
            "n_images": self.n_images,
            "metadata": to_jsonable(self.metadata),
        }
        for name, avg, std in zip(self.channels, self.channel_mean, self.channel_std, strict=True):
            data[name] = {"avg": dataclasses.asdict(avg), "std": dataclasses.asdict(std)}
        return data

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, source: str | None = None
    ) -> RandStainNATemplate:
        """Build a template from :meth:`to_dict` data (or a reference RandStainNA YAML).

        Args:
            data: The mapping, e.g. from ``yaml.safe_load``.
            source: Name used in error messages (the file), if any.

        Returns:
            The validated template.

        Raises:
            ValueError: Naming ``source`` and the offending field when a field is
                missing, unknown or has a wrong type or value.

        """
        where = f"RandStainNA template {source}" if source else "RandStainNA template"
        if not isinstance(data, Mapping):
            msg = f"{where}: expected a mapping at the top level, got {type(data).__name__}."
            raise ValueError(msg)
        space = data.get("color_space")
        if space is None:
            msg = f"{where}: missing field 'color_space' (one of {', '.join(COLOR_SPACES)})."
            raise ValueError(msg)
        if not isinstance(space, str) or space.upper() not in COLOR_SPACES:
            choices = ", ".join(COLOR_SPACES)
            msg = f"{where}: field 'color_space' must be one of {choices}, got {space!r}."
            raise ValueError(msg)
        space = space.upper()
        channels = CHANNEL_NAMES[space]
        allowed = {
            "format",
            "color_space",
            "n_images",
            "metadata",
            *channels,
            *_REFERENCE_EXTRA_KEYS,
        }
        unknown = sorted(str(k) for k in data if k not in allowed)
        if unknown:
            msg = (
                f"{where}: unknown field(s) {', '.join(map(repr, unknown))} "
                f"for colour space {space}; "
                f"expected {', '.join(sorted(allowed))}."
            )
            raise ValueError(msg)
        series: dict[str, list[SeriesDistribution]] = {"avg": [], "std": []}
        for channel in channels:
            block = data.get(channel)
            if not isinstance(block, Mapping):
                state = "missing" if block is None else f"not a mapping ({type(block).__name__})"
                msg = f"{where}: field '{channel}' is {state}; expected keys 'avg' and 'std'."
                raise ValueError(msg)
            for key in _SERIES_KEYS:
                series[key].append(_parse_series(block.get(key), f"{channel}.{key}", where))
        n_images = data.get("n_images")
        if n_images is not None and (
            isinstance(n_images, bool) or not isinstance(n_images, int) or n_images < 1
        ):
            msg = f"{where}: field 'n_images' must be a positive integer, got {n_images!r}."
            raise ValueError(msg)
        metadata = data.get("metadata") or {}
        if not isinstance(metadata, Mapping):
            msg = f"{where}: field 'metadata' must be a mapping, got {type(metadata).__name__}."
            raise ValueError(msg)
        try:
            return cls(space, tuple(series["avg"]), tuple(series["std"]), n_images, dict(metadata))
        except (TypeError, ValueError) as error:
            msg = f"{where}: {error}"
            raise ValueError(msg) from error

    def series_parameters(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Means and stds of the channel-mean and channel-std series.

        Returns:
            ``(mean_of_means, std_of_means, mean_of_stds, std_of_stds)``, four
            float64 arrays of shape ``(3,)``.

        """
        return (
            np.array([s.mean for s in self.channel_mean]),
            np.array([s.std for s in self.channel_mean]),
            np.array([s.mean for s in self.channel_std]),
            np.array([s.std for s in self.channel_std]),
        )


def _parse_series(block: Any, name: str, where: str) -> SeriesDistribution:
    if not isinstance(block, Mapping):
        state = "missing" if block is None else f"not a mapping ({type(block).__name__})"
        msg = f"{where}: field '{name}' is {state}; expected keys 'distribution', 'mean', 'std'."
        raise ValueError(msg)
    unknown = sorted(str(k) for k in block if k not in {"distribution", "mean", "std"})
    if unknown:
        msg = f"{where}: unknown field(s) {', '.join(map(repr, unknown))} in '{name}'."
        raise ValueError(msg)
    for key in ("distribution", "mean", "std"):
        if key not in block:
            msg = f"{where}: missing field '{name}.{key}'."
            raise ValueError(msg)
    family = block["distribution"]
    if not isinstance(family, str) or _FAMILY_ALIASES.get(family, family) not in FITTED_FAMILIES:
        msg = (
            f"{where}: field '{name}.distribution' must be one of "
            f"{', '.join(FITTED_FAMILIES)}, got {family!r}."
        )
        raise ValueError(msg)
    values = {}
    for key in ("mean", "std"):
        value = block[key]
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Real)
            or not math.isfinite(value)
        ):
            msg = f"{where}: field '{name}.{key}' must be a finite number, got {value!r}."
            raise ValueError(msg)
        values[key] = float(value)
    if values["std"] < 0:
        msg = f"{where}: field '{name}.std' must be non-negative, got {values['std']}."
        raise ValueError(msg)
    return SeriesDistribution(family, values["mean"], values["std"])


# ---------------------------------------------------------------------------
# Files


def load_randstainna_template(path: str | Path) -> RandStainNATemplate:
    """Read a template YAML file (``yaml.safe_load``: no code is executed).

    Also reads the YAML files of the reference implementation (``norm`` is
    read as ``normal``).

    Args:
        path: The YAML file.

    Returns:
        The template.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If the file is not valid YAML or a field is missing or
            wrong (the message names the file and the field).

    Examples:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "lab.yaml"
        >>> _ = save_randstainna_template(default_randstainna_template("LAB"), path)
        >>> load_randstainna_template(path) == default_randstainna_template("LAB")
        True

    """
    path = Path(path)
    if not path.is_file():
        msg = f"RandStainNA template file not found: {path}"
        raise FileNotFoundError(msg)
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        msg = f"Could not read RandStainNA template file {path}: {error}"
        raise ValueError(msg) from error
    return RandStainNATemplate.from_dict(data, source=str(path))


def save_randstainna_template(template: RandStainNATemplate, path: str | Path) -> Path:
    """Write ``template`` as YAML, atomically, with a comment header.

    Args:
        template: The template.
        path: Destination ``.yaml`` file (folders are created).

    Returns:
        The path written.

    Raises:
        TypeError: If ``template`` is not a :class:`RandStainNATemplate`.

    Examples:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "hed.yaml"
        >>> save_randstainna_template(default_randstainna_template("HED"), path).name
        'hed.yaml'

    """
    if not isinstance(template, RandStainNATemplate):
        msg = f"template must be a RandStainNATemplate, got {type(template).__name__}."
        raise TypeError(msg)
    channels = ", ".join(template.channels)
    header = [
        "# RandStainNA template (tia_scanner_robust.augmentations.randstainna).",
        f"# Colour space {template.color_space}, channels {channels}; 8-bit convention",
        "# (LAB/HSV as OpenCV's 8-bit images, HED as skimage.color.rgb2hed).",
        "# Per channel: 'avg' = distribution of the image-level channel mean across the",
        "# template images, 'std' = of the image-level channel std (mean, std, family).",
    ]
    description = template.metadata.get("description")
    if isinstance(description, str) and description:
        header.extend(f"# {line}" for line in textwrap.wrap(description, width=88))
    body = yaml.safe_dump(template.to_dict(), sort_keys=False, default_flow_style=False)
    return atomic_write_text(path, "\n".join(header) + "\n" + body)


@functools.cache
def default_randstainna_template(color_space: str = "LAB") -> RandStainNATemplate:
    """The shipped template for ``color_space``, fitted on the bundled H&E image.

    The templates were fitted on 64 non-overlapping 125 x 125 tiles of
    TIAToolbox's bundled H&E image (``tiatoolbox.data.stain_norm_target()``);
    each file's ``metadata`` says so.

    Args:
        color_space: ``"LAB"``, ``"HSV"`` or ``"HED"``.

    Returns:
        The template (cached; templates are immutable).

    Examples:
        >>> default_randstainna_template("HSV").channels
        ('H', 'S', 'V')

    """
    space = check_in_choices(str(color_space).upper(), COLOR_SPACES, "color_space")
    resource = importlib.resources.files("tia_scanner_robust.augmentations") / "templates"
    with importlib.resources.as_file(resource / f"{space.lower()}.yaml") as path:
        return load_randstainna_template(path)
