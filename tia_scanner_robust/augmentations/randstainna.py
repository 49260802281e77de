"""RandStainNA: random virtual stain templates with Reinhard transfer (Shen et al., 2022).

Fitting (:func:`fit_randstainna_template`): every template image is converted
to a colour space (LAB, HSV or HED, see
:mod:`~tia_scanner_robust.augmentations.colorspace`) and summarised by its
per-channel mean and standard deviation. Across images this gives six
series (mean and std of each of three channels); the template stores, for
each series, its sample mean, its (population) standard deviation and the
family, ``"normal"`` or ``"laplace"``, whose maximum-likelihood fit has the
larger log-likelihood.

Augmentation (:class:`RandStainNA`): per image, pick a colour space at random
among the configured ones, draw a virtual template

``mu_hat_c ~ D(m_c, s_c * (1 + std_hyper))``,
``sigma_hat_c ~ D(m'_c, s'_c * (1 + std_hyper))``

where ``D(m, s)`` is the series' family (or ``distribution``) with mean ``m``
and standard deviation ``s``, and move the image's channel statistics to it
with Reinhard transfer (:func:`.colorspace.reinhard_transfer`).

Unlike the reference implementation this module returns RGB (not BGR) and
samples the family recorded in the template (not always ``distribution``).

Examples:
    >>> import numpy as np
    >>> import albumentations as A
    >>> image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    >>> aug = A.Compose([RandStainNA(p=1.0)], seed=0)
    >>> aug(image=image)["image"].shape
    (32, 32, 3)

"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from albumentations.core.transforms_interface import BaseTransformInitSchema, ImageOnlyTransform
from pydantic import Field, field_validator
from tqdm.auto import tqdm

from tia_scanner_robust._io import to_jsonable
from tia_scanner_robust._validation import check_in_choices, check_rgb_image, read_rgb_image
from tia_scanner_robust.augmentations.colorspace import (
    _RGB_FROM_HED,
    COLOR_SPACES,
    channel_stats,
    reinhard_transfer,
    rgb_to_colorspace,
)
from tia_scanner_robust.augmentations.randstainna_template import (
    FITTED_FAMILIES,
    TEMPLATE_FORMAT,
    RandStainNATemplate,
    SeriesDistribution,
    default_randstainna_template,
    load_randstainna_template,
    save_randstainna_template,
)

__all__ = [
    "DEFAULT_COLOR_SPACES",
    "FITTED_FAMILIES",
    "IMAGE_EXTENSIONS",
    "MIN_STD_FRACTION",
    "TEMPLATE_FORMAT",
    "RandStainNA",
    "RandStainNATemplate",
    "SeriesDistribution",
    "default_randstainna_template",
    "expand_image_paths",
    "fit_randstainna_template",
    "load_randstainna_template",
    "official_reinhard_transfer",
    "sample_virtual_template",
    "save_randstainna_template",
]

#: Families :class:`RandStainNA` may sample (``distribution`` override).
SAMPLING_FAMILIES: tuple[str, ...] = ("normal", "laplace", "uniform")
#: Colour spaces drawn from by default (one shipped template each).
DEFAULT_COLOR_SPACES: tuple[str, ...] = ("LAB", "HSV", "HED")
#: File extensions that :func:`expand_image_paths` collects from folders.
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
#: A sampled target std is clipped below at this fraction of the template's
#: mean channel std (a negative or zero draw would invert or flatten the channel).
MIN_STD_FRACTION = 0.05
#: What ``templates`` may be: a template file, a fitted mapping, a
#: :class:`RandStainNATemplate`, a list of them, or ``None`` (the defaults).
TemplateSource = str | Path | Mapping[str, Any] | RandStainNATemplate | Sequence[Any] | None


# ---------------------------------------------------------------------------
# Fitting


def expand_image_paths(
    inputs: str | Path | Iterable[str | Path],
    *,
    recursive: bool = False,
    extensions: Iterable[str] = IMAGE_EXTENSIONS,
) -> list[Path]:
    """Expand files and folders into a sorted list of image files.

    Folders contribute their files whose extension is in ``extensions``
    (case-insensitive; subfolders too with ``recursive=True``); files given
    explicitly are kept whatever their extension.

    Args:
        inputs: A path or an iterable of paths (files or folders).
        recursive: Also search subfolders.
        extensions: Image file extensions collected from folders.

    Returns:
        The image files, folders expanded in sorted order.

    Raises:
        FileNotFoundError: If an input does not exist.
        ValueError: If no image file is found.

    Examples:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "a.png").write_bytes(b"")
        >>> _ = (d / "notes.txt").write_text("")
        >>> [p.name for p in expand_image_paths(d)]
        ['a.png']

    """
    items = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    suffixes = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}
    files: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            pattern = path.rglob("*") if recursive else path.iterdir()
            files.extend(sorted(p for p in pattern if p.is_file() and p.suffix.lower() in suffixes))
        elif path.is_file():
            files.append(path)
        else:
            msg = f"Input not found: {path}"
            raise FileNotFoundError(msg)
    if not files:
        where = ", ".join(str(i) for i in items) or "(no inputs)"
        msg = f"No image files ({', '.join(sorted(suffixes))}) found in: {where}"
        raise ValueError(msg)
    return files


def _choose_family(values: np.ndarray) -> str:
    """``"normal"`` or ``"laplace"``: the maximum-likelihood fit with the larger log-likelihood.

    Degenerate fits (zero spread) fall back to ``"normal"``.
    """
    n = values.size
    sigma = float(values.std())
    scale = float(np.abs(values - np.median(values)).mean())  # Laplace MLE scale b
    if n < 2 or sigma <= 0 or scale <= 0:
        return "normal"
    loglik_normal = -0.5 * n * (math.log(2.0 * math.pi * sigma**2) + 1.0)
    loglik_laplace = -n * (math.log(2.0 * scale) + 1.0)
    return "laplace" if loglik_laplace > loglik_normal else "normal"


def fit_randstainna_template(
    images: Iterable[np.ndarray | str | Path] | str | Path,
    color_space: str = "LAB",
    *,
    distribution: Literal["auto", "normal", "laplace"] = "auto",
    metadata: Mapping[str, Any] | None = None,
    verbose: bool = True,
) -> RandStainNATemplate:
    """Fit a RandStainNA template from images, streamed one at a time.

    Each image (an RGB array or an image file) is converted to
    ``color_space`` and reduced to its per-channel mean and std; only these
    six numbers per image are kept. Each of the six series is summarised by
    its mean and population std; its family is ``"normal"`` or ``"laplace"``
    by the larger maximum-likelihood log-likelihood (``distribution="auto"``,
    both families have two parameters so this equals an AIC/BIC choice;
    zero-spread series are ``"normal"``), or the family forced by
    ``distribution``.

    Args:
        images: Iterable of ``(H, W, 3)`` RGB arrays (uint8, or float32 in
            ``[0, 1]``) and/or image file paths; a single path (file or
            folder) is expanded with :func:`expand_image_paths`.
        color_space: ``"LAB"``, ``"HSV"`` or ``"HED"``.
        distribution: ``"auto"`` (goodness of fit), ``"normal"`` or ``"laplace"``.
        metadata: Provenance stored in the template (e.g. data set, date).
        verbose: Show a tqdm progress bar.

    Returns:
        The fitted template.

    Raises:
        ValueError: If there is no image, an image is not RGB, or a file
            cannot be decoded (the message names the image or file).
        FileNotFoundError: If an image file does not exist.

    Examples:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> tiles = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(8)]
        >>> template = fit_randstainna_template(tiles, "HED", verbose=False)
        >>> template.color_space, template.n_images
        ('HED', 8)

    """
    space = check_in_choices(str(color_space).upper(), COLOR_SPACES, "color_space")
    check_in_choices(distribution, ("auto", *FITTED_FAMILIES), "distribution")
    if isinstance(images, (str, Path)):
        images = expand_image_paths(images)
    if isinstance(images, np.ndarray) and images.ndim != 4:
        msg = (
            "images must be an iterable of images (a list, or an (N, H, W, 3) array); "
            f"got one array of shape {images.shape}."
        )
        raise ValueError(msg)
    total = len(images) if isinstance(images, Sequence | np.ndarray) else None
    stats: list[np.ndarray] = []
    progress = tqdm(
        images,
        total=total,
        desc=f"Fitting RandStainNA template ({space})",
        unit="image",
        disable=not verbose,
        leave=False,
    )
    for index, item in enumerate(progress):
        if isinstance(item, (str, Path)):
            image = read_rgb_image(item)
        else:
            image = check_rgb_image(item, name=f"images[{index}]")
        mean, std = channel_stats(rgb_to_colorspace(image, space))
        stats.append(np.concatenate([mean, std]))
    if not stats:
        msg = "No images to fit a RandStainNA template on (the input was empty)."
        raise ValueError(msg)
    table = np.stack(stats)  # (n_images, 6): means then stds per channel

    def series(column: int) -> SeriesDistribution:
        values = table[:, column]
        family = _choose_family(values) if distribution == "auto" else distribution
        return SeriesDistribution(family, float(values.mean()), float(values.std()))

    meta = {"fitted_with": "tia_scanner_robust.augmentations.fit_randstainna_template"}
    meta["family_rule"] = (
        "maximum log-likelihood of normal vs laplace fits"
        if distribution == "auto"
        else f"forced {distribution}"
    )
    meta.update(metadata or {})
    return RandStainNATemplate(
        color_space=space,
        channel_mean=(series(0), series(1), series(2)),
        channel_std=(series(3), series(4), series(5)),
        n_images=len(stats),
        metadata=to_jsonable(meta, allow_nan=True),
    )


def _bundled_tiles(tile_size: int = 125) -> list[np.ndarray]:
    """Non-overlapping tiles of TIAToolbox's bundled 1000 x 1000 H&E image (row-major)."""
    from tiatoolbox.data import stain_norm_target  # noqa: PLC0415 - heavy, maintainers only

    image = np.ascontiguousarray(stain_norm_target())
    rows, cols = image.shape[0] // tile_size, image.shape[1] // tile_size
    return [
        np.ascontiguousarray(
            image[i * tile_size : (i + 1) * tile_size, j * tile_size : (j + 1) * tile_size]
        )
        for i in range(rows)
        for j in range(cols)
    ]


def _fit_default_template(color_space: str) -> RandStainNATemplate:
    """Refit a shipped default template (what ``templates/*.yaml`` hold)."""
    tiles = _bundled_tiles(125)
    description = (
        f"Default template shipped with tia_scanner_robust: fitted on {len(tiles)} non-overlapping "
        "125x125 tiles (8x8 grid) of TIAToolbox's bundled H&E image "
        "(tiatoolbox.data.stain_norm_target()) with fit_randstainna_template(distribution='auto'). "
        "Regenerate with tia_scanner_robust.augmentations.randstainna._write_default_templates()."
    )
    return fit_randstainna_template(
        tiles,
        color_space,
        metadata={"description": description, "source": "tiatoolbox.data.stain_norm_target()"},
        verbose=False,
    )


def _write_default_templates(out_dir: str | Path | None = None) -> list[Path]:
    """Regenerate the shipped default templates (maintainers only)."""
    folder = Path(out_dir) if out_dir is not None else Path(__file__).parent / "templates"
    return [
        save_randstainna_template(_fit_default_template(space), folder / f"{space.lower()}.yaml")
        for space in COLOR_SPACES
    ]


# ---------------------------------------------------------------------------
# The transform


def _normalise_template_item(item: Any, index: int) -> str | dict[str, Any]:
    if isinstance(item, RandStainNATemplate):
        return item.to_dict()
    if isinstance(item, Path):
        return str(item)
    if isinstance(item, str):
        return item
    if isinstance(item, Mapping):
        return to_jsonable(item, allow_nan=True)
    msg = (
        f"templates[{index}] must be a YAML file path, a template dict or a RandStainNATemplate; "
        f"got {type(item).__name__}."
    )
    raise ValueError(msg)


def _load_template_item(item: str | Mapping[str, Any], index: int) -> RandStainNATemplate:
    if isinstance(item, str):
        return load_randstainna_template(item)
    return RandStainNATemplate.from_dict(item, source=f"templates[{index}]")


def _draw(rng: np.random.Generator, family: str, mean: float, std: float) -> float:
    """One draw from ``family`` parameterised by its mean and standard deviation."""
    if family == "laplace":
        return float(rng.laplace(mean, std / math.sqrt(2.0)))
    if family == "uniform":
        half_width = math.sqrt(3.0) * std
        return float(rng.uniform(mean - half_width, mean + half_width))
    return float(rng.normal(mean, std))


def sample_virtual_template(
    template: RandStainNATemplate,
    rng: np.random.Generator,
    *,
    std_hyper: float = 0.0,
    distribution: str | None = None,
    clip_std: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw a virtual template ``(mu_hat, sigma_hat)`` (three values each).

    Draws, in channel order, ``mu_hat_c`` then ``sigma_hat_c`` from
    ``D(mean, std * (1 + std_hyper))``; ``D`` is the series' fitted family
    unless ``distribution`` overrides it. ``sigma_hat_c`` is clipped below at
    ``MIN_STD_FRACTION`` times the template's mean channel std (unless
    ``clip_std=False``, the official code's behaviour: a negative draw then
    inverts the channel in the transfer).

    Args:
        template: The template.
        rng: NumPy generator.
        std_hyper: Spread adjustment, ``>= -1``.
        distribution: ``None`` (fitted family), ``"normal"``, ``"laplace"`` or ``"uniform"``.
        clip_std: Clip ``sigma_hat`` below (default) or keep the raw draw.

    Returns:
        ``(target_mean, target_std)``, float64 arrays of shape ``(3,)``.

    Examples:
        >>> import numpy as np
        >>> t = default_randstainna_template("LAB")
        >>> mu, sigma = sample_virtual_template(t, np.random.default_rng(0), std_hyper=-1.0)
        >>> bool(np.allclose(mu, [s.mean for s in t.channel_mean]))
        True

    """
    factor = 1.0 + float(std_hyper)
    if factor < 0:
        msg = f"std_hyper must be >= -1, got {std_hyper}."
        raise ValueError(msg)
    if distribution is not None:
        check_in_choices(distribution, SAMPLING_FAMILIES, "distribution")
    target_mean = np.empty(3)
    target_std = np.empty(3)
    for c, (avg, std) in enumerate(zip(template.channel_mean, template.channel_std, strict=True)):
        target_mean[c] = _draw(rng, distribution or avg.distribution, avg.mean, avg.std * factor)
        target_std[c] = _draw(rng, distribution or std.distribution, std.mean, std.std * factor)
        if clip_std:
            target_std[c] = max(target_std[c], MIN_STD_FRACTION * std.mean)
    return target_mean, target_std


_OFFICIAL_FORWARD = {"LAB": cv2.COLOR_RGB2LAB, "HSV": cv2.COLOR_RGB2HSV}
_OFFICIAL_BACKWARD = {"LAB": cv2.COLOR_LAB2RGB, "HSV": cv2.COLOR_HSV2RGB}
#: The official code clips the image's channel std below at this value.
OFFICIAL_MIN_IMAGE_STD = 1e-4


def official_reinhard_transfer(
    image: np.ndarray,
    space: str,
    target_mean: np.ndarray,
    target_std: np.ndarray,
) -> np.ndarray:
    """Reinhard transfer exactly as the official RandStainNA code does it.

    Differences from :func:`.colorspace.reinhard_transfer` (the default):

    - the image's channel std is clipped below at ``1e-4`` (default: a
      constant channel is moved to the target mean with gain 0);
    - a negative ``target_std`` is used as is: the channel is inverted
      about its mean (default: targets must be non-negative);
    - LAB/HSV: the transferred values are clipped to ``[0, 255]`` and
      truncated to uint8 before OpenCV's 8-bit conversion back (default:
      float values, hue wrapped modulo 180 instead of clipped);
    - HED: negative densities are not clipped before ``hed2rgb``, and the
      RGB result is min-max stretched to ``[0, 255]`` per image and truncated
      (default: densities clipped at 0, RGB clipped and rounded, no stretch).

    A float32 image is rounded to uint8 first (the official code works on
    uint8 images) and returned as float32 in ``[0, 1]``.

    Args:
        image: ``(H, W, 3)`` RGB, uint8 or float32 in ``[0, 1]``.
        space: ``"LAB"``, ``"HSV"`` or ``"HED"``.
        target_mean: Three target channel means (8-bit convention).
        target_std: Three target channel stds (any sign).

    Returns:
        The transferred RGB image, same shape and dtype as ``image``.

    Examples:
        >>> import numpy as np
        >>> img = np.random.default_rng(0).integers(60, 200, (32, 32, 3)).astype(np.uint8)
        >>> out = official_reinhard_transfer(img, "HED", [0.1, 0.1, 0.05], [0.02, 0.02, 0.01])
        >>> int(out.min()), int(out.max()) >= 254  # stretched to the full range, truncated
        (0, True)

    """
    space = check_in_choices(str(space).upper(), COLOR_SPACES, "colour space")
    image = check_rgb_image(image)
    is_float = image.dtype != np.uint8
    rgb = np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8) if is_float else image
    target_mean = np.asarray(target_mean, dtype=np.float64).reshape(3)
    target_std = np.asarray(target_std, dtype=np.float64).reshape(3)
    if space == "HED":
        values = rgb_to_colorspace(rgb, "HED").astype(np.float64)
    else:
        values = cv2.cvtColor(rgb, _OFFICIAL_FORWARD[space]).astype(np.float64)
    mean = values.mean(axis=(0, 1))
    std = np.clip(values.std(axis=(0, 1)), OFFICIAL_MIN_IMAGE_STD, 255.0)
    values = (values - mean) * (target_std / std) + target_mean
    if space == "HED":
        out = np.clip(np.exp(values @ (_RGB_FROM_HED * math.log(1e-6))), 0.0, 1.0)
        low, high = float(out.min()), float(out.max())
        # a flat result (high == low) is 0/0 in the official code; it becomes black here
        out = (255.0 * (out - low) / (high - low) if high > low else 0 * out).astype(np.uint8)
    else:
        out = cv2.cvtColor(np.clip(values, 0, 255).astype(np.uint8), _OFFICIAL_BACKWARD[space])
    return out.astype(np.float32) / np.float32(255.0) if is_float else out


class RandStainNA(ImageOnlyTransform):
    """RandStainNA stain augmentation (Shen et al., MICCAI 2022) as an albumentations transform.

    Per image: pick a colour space uniformly among ``color_spaces``, draw a
    virtual template from that space's :class:`RandStainNATemplate` (see
    :func:`sample_virtual_template`) and apply Reinhard transfer to it in that
    space (:func:`.colorspace.reinhard_transfer`). RGB in, RGB out; uint8 and
    float32 (``[0, 1]``) images keep their dtype.

    The sampled parameters (``color_space``, ``target_mean``, ``target_std``)
    are returned by :meth:`get_params` and available after a call as
    ``transform.params`` (and in ``A.ReplayCompose`` replays).

    Args:
        templates: ``None`` for the shipped templates fitted on TIAToolbox's
            bundled H&E image, or one or several templates, each a YAML file
            path, a dict (:meth:`RandStainNATemplate.to_dict` layout) or a
            :class:`RandStainNATemplate`; at most one per colour space. Paths
            and dicts are kept as given so the transform serialises with
            ``A.to_dict``; template objects are stored as dicts.
        color_spaces: Colour spaces to choose from per image. ``None``: every
            space of ``templates`` (all of ``"LAB"``, ``"HSV"``, ``"HED"`` for
            the shipped ones). Each must have a template.
        std_hyper: Spread adjustment of the virtual templates: the series'
            std is multiplied by ``1 + std_hyper`` (``-1``: always the mean
            template, i.e. Reinhard stain normalisation; ``0``: the fitted
            spread; ``> 0``: wider). Default ``-0.3`` as in the reference.
        distribution: ``None`` samples each series from its fitted family;
            ``"normal"``, ``"laplace"`` or ``"uniform"`` (the interval with the
            same mean and std) overrides it.
        official: ``False`` (default): this module's transfer (float colour
            values, hue wrapped, HED densities clipped at 0, sampled stds
            clipped below at ``MIN_STD_FRACTION`` of the template mean).
            ``True``: reproduce the official RandStainNA code's choices
            (:func:`official_reinhard_transfer`: LAB/HSV truncated to uint8,
            HED min-max stretched per image without clipping negative
            densities, negative sampled stds kept, which invert the
            channel), to match published RandStainNA results.
        p: Probability of applying the transform.

    Targets:
        image, volume

    Image types:
        uint8, float32

    Number of channels:
        3 (RGB)

    References:
        - Shen, Y., et al. RandStainNA: Learning Stain-Agnostic Features from
          Histology Slides by Bridging Stain Augmentation and Normalization.
          MICCAI 2022.
        - Reinhard, E., et al. Color transfer between images. IEEE Computer
          Graphics and Applications 21(5), 2001.

    Examples:
        >>> import numpy as np
        >>> import albumentations as A
        >>> from tiatoolbox.data import stain_norm_target
        >>> tile = stain_norm_target()[:128, :128]
        >>> aug = A.Compose([RandStainNA(color_spaces=["LAB", "HED"], p=1.0)], seed=1)
        >>> out = aug(image=tile)["image"]
        >>> out.shape, out.dtype
        ((128, 128, 3), dtype('uint8'))
        >>> aug.transforms[0].params["color_space"] in ("LAB", "HED")
        True

    """

    class InitSchema(BaseTransformInitSchema):
        """Validation of the constructor arguments."""

        templates: Any
        color_spaces: list[str] | None
        std_hyper: float = Field(ge=-1.0)
        distribution: Literal["normal", "laplace", "uniform"] | None
        official: bool

        @field_validator("templates", mode="before")
        @classmethod
        def _normalise_templates(cls, value: Any) -> list[str | dict[str, Any]] | None:
            if value is None:
                return None
            single = isinstance(value, (str, Path, Mapping, RandStainNATemplate))
            items = [value] if single else value
            if not isinstance(items, (list, tuple)) or not items:
                msg = (
                    "templates must be None, a template (path, dict, RandStainNATemplate) "
                    f"or a non-empty list of them; got {value!r}."
                )
                raise ValueError(msg)
            return [_normalise_template_item(item, i) for i, item in enumerate(items)]

        @field_validator("color_spaces", mode="before")
        @classmethod
        def _normalise_spaces(cls, value: Any) -> list[str] | None:
            if value is None:
                return None
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, (list, tuple)) or not items:
                msg = f"color_spaces must be a colour space or a non-empty list; got {value!r}."
                raise ValueError(msg)
            spaces: list[str] = []
            for item in items:
                if not isinstance(item, str):
                    msg = f"color_spaces entries must be strings; got {item!r}."
                    raise ValueError(msg)
                space = check_in_choices(item.upper(), COLOR_SPACES, "colour space in color_spaces")
                if space in spaces:
                    msg = f"color_spaces lists {space} twice."
                    raise ValueError(msg)
                spaces.append(space)
            return spaces

    def __init__(
        self,
        templates: TemplateSource = None,
        color_spaces: Sequence[str] | str | None = None,
        std_hyper: float = -0.3,
        distribution: Literal["normal", "laplace", "uniform"] | None = None,
        p: float = 0.5,
        *,
        official: bool = False,
    ) -> None:
        super().__init__(p=p)
        self.templates = templates
        self.color_spaces = color_spaces
        self.std_hyper = float(std_hyper)
        self.distribution = distribution
        self.official = bool(official)
        self._templates = self._resolve_templates()
        self._spaces = tuple(self._templates)

    def _resolve_templates(self) -> dict[str, RandStainNATemplate]:
        if self.templates is None:
            spaces = self.color_spaces or list(DEFAULT_COLOR_SPACES)
            return {space: default_randstainna_template(space) for space in spaces}
        loaded: dict[str, RandStainNATemplate] = {}
        for index, item in enumerate(self.templates):
            template = _load_template_item(item, index)
            if template.color_space in loaded:
                msg = (
                    f"templates: two templates for colour space {template.color_space} "
                    f"(templates[{index}])."
                )
                raise ValueError(msg)
            loaded[template.color_space] = template
        if self.color_spaces is None:
            return loaded
        missing = [space for space in self.color_spaces if space not in loaded]
        if missing:
            msg = (
                f"color_spaces asks for {', '.join(missing)} but templates only cover "
                f"{', '.join(loaded)}; give a template for every colour space."
            )
            raise ValueError(msg)
        return {space: loaded[space] for space in self.color_spaces}

    @property
    def active_templates(self) -> dict[str, RandStainNATemplate]:
        """The templates drawn from, by colour space."""
        return dict(self._templates)

    def get_params(self) -> dict[str, Any]:
        """Sample the colour space and the virtual template for one image.

        Returns:
            ``{"color_space": str, "target_mean": (3,) array, "target_std": (3,) array}``.

        """
        index = (
            int(self.random_generator.integers(len(self._spaces))) if len(self._spaces) > 1 else 0
        )
        space = self._spaces[index]
        target_mean, target_std = sample_virtual_template(
            self._templates[space],
            self.random_generator,
            std_hyper=self.std_hyper,
            distribution=self.distribution,
            clip_std=not self.official,
        )
        return {"color_space": space, "target_mean": target_mean, "target_std": target_std}

    def apply(
        self,
        img: np.ndarray,
        color_space: str,
        target_mean: np.ndarray,
        target_std: np.ndarray,
        **params: Any,  # noqa: ARG002 - albumentations passes shape etc.
    ) -> np.ndarray:
        """Reinhard transfer of ``img`` to the sampled virtual template."""
        if self.official:
            return official_reinhard_transfer(img, color_space, target_mean, target_std)
        return reinhard_transfer(img, color_space, target_mean, target_std)
