"""Named style-augmentation presets: ColorJitter and HEStain tuned for H&E, and a factory.

SimCons (SCORPION paper, section 4.2) compares three style augmentations
(SA): ColorJitter, RandStainNA and FDA. :func:`style_augmentation` builds any
of them, the ``A.HEStain`` preset and the scanner simulator by name, alone or
``"+"``-combined:

- ``"colorjitter"``: :func:`he_color_jitter` (``A.ColorJitter`` with H&E ranges);
- ``"randstainna"``: :class:`~tia_scanner_robust.augmentations.randstainna.RandStainNA`;
- ``"fda"``: :class:`~tia_scanner_robust.augmentations.fda.FourierDomainAdaptation`;
- ``"hestain"``: :func:`he_stain` (``A.HEStain`` with H&E settings);
- ``"scanner"``: :class:`~tia_scanner_robust.augmentations.scanner.ScannerSimulator`.

Examples:
    >>> import albumentations as A
    >>> from tiatoolbox.data import stain_norm_target
    >>> tile = stain_norm_target()[:128, :128]
    >>> aug = style_augmentation("colorjitter+randstainna", p=1.0, seed=0)
    >>> aug(image=tile)["image"].shape
    (128, 128, 3)
    >>> STYLE_AUGMENTATIONS
    ('colorjitter', 'randstainna', 'fda', 'hestain', 'scanner')

"""

from __future__ import annotations

import importlib
import inspect
from typing import TYPE_CHECKING, Any, Literal

import albumentations as A  # noqa: N812 - albumentations' conventional alias

from tia_scanner_robust._validation import check_in_choices, check_probability
from tia_scanner_robust.seeding import reseed_transform

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "HE_COLOR_JITTER_DEFAULTS",
    "HE_STAIN_DEFAULTS",
    "STYLE_AUGMENTATIONS",
    "he_color_jitter",
    "he_stain",
    "style_augmentation",
]

STYLE_AUGMENTATIONS: tuple[str, ...] = ("colorjitter", "randstainna", "fda", "hestain", "scanner")
COMBINE_MODES: tuple[str, ...] = ("sequence", "oneof")

#: ``A.ColorJitter`` ranges for H&E (factors ``1 +- x`` for brightness,
#: contrast and saturation; hue shift ``+- x`` of the full hue circle).
HE_COLOR_JITTER_DEFAULTS: dict[str, float] = {
    "brightness": 0.25,
    "contrast": 0.25,
    "saturation": 0.25,
    "hue": 0.04,
}

#: ``A.HEStain`` settings for H&E: a fixed Macenko reference stain matrix
#: with moderate stain-concentration scaling and shifts.
HE_STAIN_DEFAULTS: dict[str, Any] = {
    "method": "preset",
    "preset": "macenko",
    "intensity_scale_range": (0.75, 1.25),
    "intensity_shift_range": (-0.05, 0.05),
    "augment_background": False,
}


def he_color_jitter(
    *,
    brightness: float | tuple[float, float] = HE_COLOR_JITTER_DEFAULTS["brightness"],
    contrast: float | tuple[float, float] = HE_COLOR_JITTER_DEFAULTS["contrast"],
    saturation: float | tuple[float, float] = HE_COLOR_JITTER_DEFAULTS["saturation"],
    hue: float | tuple[float, float] = HE_COLOR_JITTER_DEFAULTS["hue"],
    p: float = 0.5,
) -> A.ColorJitter:
    """``A.ColorJitter`` with ranges suited to H&E scanner and stain variation.

    Defaults: brightness, contrast and saturation factors in ``[0.75, 1.25]``
    and a hue shift in ``[-0.04, 0.04]`` of the hue circle (about +-14
    degrees). Differences between scanners of the same H&E slide are mostly
    in brightness, contrast and saturation (illumination, sensor gain, colour
    profile); hue moves little, and ``A.ColorJitter``'s default hue range
    ``(-0.5, 0.5)`` (the whole circle) turns tissue green or blue. Each
    argument accepts ``A.ColorJitter``'s forms: a number ``x`` (``1 +- x``,
    ``+- x`` for hue) or an explicit ``(min, max)``.

    Args:
        brightness: Brightness factor range.
        contrast: Contrast factor range.
        saturation: Saturation factor range.
        hue: Hue shift range, within ``[-0.5, 0.5]``.
        p: Probability of applying the transform.

    Returns:
        A configured ``A.ColorJitter``.

    Examples:
        >>> jitter = he_color_jitter(p=1.0)
        >>> jitter.brightness, jitter.hue
        ((0.75, 1.25), (-0.04, 0.04))

    """
    return A.ColorJitter(
        brightness=brightness, contrast=contrast, saturation=saturation, hue=hue, p=p
    )


def he_stain(
    *,
    method: Literal["preset", "random_preset", "vahadane", "macenko"] = HE_STAIN_DEFAULTS["method"],
    preset: str | None = HE_STAIN_DEFAULTS["preset"],
    intensity_scale_range: tuple[float, float] = HE_STAIN_DEFAULTS["intensity_scale_range"],
    intensity_shift_range: tuple[float, float] = HE_STAIN_DEFAULTS["intensity_shift_range"],
    augment_background: bool = HE_STAIN_DEFAULTS["augment_background"],
    p: float = 0.5,
) -> A.HEStain:
    """``A.HEStain`` with settings that keep H&E tiles realistic.

    ``A.HEStain`` unmixes the image into haematoxylin and eosin
    concentrations with a stain matrix, scales and shifts them, and mixes
    back. The defaults use the fixed Macenko reference matrix
    (``method="preset", preset="macenko"``): with unit scale and zero shift it
    reconstructs real H&E tiles closely, whereas ``A.HEStain``'s default
    ``"random_preset"`` and its per-image ``"macenko"`` fit shift the colours
    of many tiles even before any augmentation (see the docs page), and
    ``"vahadane"`` is about ten times slower. Concentrations are scaled by
    ``[0.75, 1.25]`` and shifted by ``[-0.05, 0.05]`` (optical-density units),
    on tissue only (``augment_background=False``).

    Args:
        method: ``A.HEStain``'s stain-matrix method.
        preset: Preset matrix name for ``method="preset"`` (``None`` otherwise).
        intensity_scale_range: Multiplicative range for the two concentrations.
        intensity_shift_range: Additive range for the two concentrations.
        augment_background: Also change background (white) pixels.
        p: Probability of applying the transform.

    Returns:
        A configured ``A.HEStain``.

    Examples:
        >>> stain = he_stain(p=1.0)
        >>> stain.method, stain.preset, stain.intensity_scale_range
        ('preset', 'macenko', (0.75, 1.25))

    """
    if method != "preset":
        preset = None
    return A.HEStain(
        method=method,
        preset=preset,
        intensity_scale_range=intensity_scale_range,
        intensity_shift_range=intensity_shift_range,
        augment_background=augment_background,
        p=p,
    )


def _randstainna(**kwargs: Any) -> A.BasicTransform:
    module = importlib.import_module("tia_scanner_robust.augmentations.randstainna")
    return module.RandStainNA(**kwargs)


def _fda(**kwargs: Any) -> A.BasicTransform:
    module = importlib.import_module("tia_scanner_robust.augmentations.fda")
    return module.FourierDomainAdaptation(**kwargs)


def _scanner(**kwargs: Any) -> A.BasicTransform:
    module = importlib.import_module("tia_scanner_robust.augmentations.scanner")
    return module.ScannerSimulator(**kwargs)


def _builder_signature(name: str) -> inspect.Signature:
    """The keyword arguments a component accepts (the class's own ``__init__``)."""
    if name == "colorjitter":
        return inspect.signature(he_color_jitter)
    if name == "hestain":
        return inspect.signature(he_stain)
    module, cls = {
        "randstainna": ("randstainna", "RandStainNA"),
        "fda": ("fda", "FourierDomainAdaptation"),
        "scanner": ("scanner", "ScannerSimulator"),
    }[name]
    transform_cls = getattr(
        importlib.import_module(f"tia_scanner_robust.augmentations.{module}"), cls
    )
    return inspect.signature(transform_cls.__init__)


_BUILDERS: dict[str, Callable[..., A.BasicTransform]] = {
    "colorjitter": he_color_jitter,
    "randstainna": _randstainna,
    "fda": _fda,
    "hestain": he_stain,
    "scanner": _scanner,
}


def _parse_name(name: str) -> list[str]:
    if not isinstance(name, str):
        msg = (
            f"name must be a string such as 'fda' or 'colorjitter+fda', got {type(name).__name__}."
        )
        raise TypeError(msg)
    parts = [part.strip().lower() for part in name.split("+")]
    valid = ", ".join(STYLE_AUGMENTATIONS)
    for part in parts:
        if not part:
            msg = f"Empty component in style augmentation name {name!r}; valid names: {valid}."
            raise ValueError(msg)
        check_in_choices(part, STYLE_AUGMENTATIONS, "style augmentation")
    duplicates = sorted({part for part in parts if parts.count(part) > 1})
    if duplicates:
        msg = f"Style augmentation name {name!r} lists {', '.join(duplicates)} more than once."
        raise ValueError(msg)
    return parts


def _route_kwargs(parts: list[str], kwargs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Split ``kwargs`` into per-component dicts."""
    routed: dict[str, dict[str, Any]] = {part: {} for part in parts}
    loose: dict[str, Any] = {}
    for key, value in kwargs.items():
        if key in STYLE_AUGMENTATIONS:
            if key not in routed:
                msg = f"Got arguments for {key!r}, which is not part of {'+'.join(parts)!r}."
                raise ValueError(msg)
            if not isinstance(value, dict):
                kind = type(value).__name__
                msg = f"Arguments for {key!r} must be a dict of keyword arguments, got {kind}."
                raise TypeError(msg)
            routed[key].update(value)
        else:
            loose[key] = value
    if loose:
        if len(parts) > 1:
            msg = (
                f"For a combination ({'+'.join(parts)}) pass each component's arguments as a "
                f"dict named after it, e.g. {parts[-1]}={{...}}; got loose argument(s) "
                f"{', '.join(sorted(loose))}."
            )
            raise ValueError(msg)
        duplicated = sorted(set(loose) & set(routed[parts[0]]))
        if duplicated:
            msg = f"Argument(s) {', '.join(duplicated)} given twice for {parts[0]!r}."
            raise ValueError(msg)
        routed[parts[0]].update(loose)
    for part, part_kwargs in routed.items():
        accepted = [name for name in _builder_signature(part).parameters if name != "self"]
        unknown = sorted(set(part_kwargs) - set(accepted))
        if unknown:
            msg = (
                f"Unknown argument(s) for {part!r}: {', '.join(unknown)}; "
                f"accepted: {', '.join(accepted)}."
            )
            raise TypeError(msg)
    return routed


def style_augmentation(
    name: str,
    *,
    p: float = 0.5,
    combine: Literal["sequence", "oneof"] = "sequence",
    seed: int | None = None,
    **kwargs: Any,
) -> A.BasicTransform | A.Compose:
    """Build a style augmentation by name.

    ``name`` is one of :data:`STYLE_AUGMENTATIONS` or several joined with
    ``"+"`` (e.g. ``"colorjitter+fda"``).

    - One name: returns the transform (or ``A.Compose([transform], seed=seed)``
      when ``seed`` is given). Keyword arguments go to the component, e.g.
      ``style_augmentation("fda", beta_range=(0.01, 0.05))``.
    - A combination: keyword arguments are per-component dicts named after
      the component, e.g. ``style_augmentation("colorjitter+fda",
      fda={"beta_range": (0.01, 0.05)})``. ``combine="sequence"`` (default)
      returns ``A.Compose([c1, c2, ...])``: each component is applied in turn
      with its own probability. ``combine="oneof"`` returns
      ``A.Compose([A.OneOf([c1, c2, ...], p=p)])``: with probability ``p`` one
      component is chosen (uniformly, unless components carry their own ``p``,
      which ``A.OneOf`` uses as weights) and applied.

    Components that read call metadata (FDA's ``fda_reference``) get it from
    the call as usual: ``aug(image=x, fda_reference=[ref])``.

    Args:
        name: Component name(s), case-insensitive.
        p: Probability of each component (``"sequence"``, and single names) or
            of the ``A.OneOf`` block (``"oneof"``). A ``p`` inside a
            component's arguments overrides it for that component.
        combine: ``"sequence"`` or ``"oneof"`` (combinations only).
        seed: If given, the result is an ``A.Compose`` seeded with it.
        **kwargs: Component arguments (see above).

    Returns:
        A transform, or an ``A.Compose``.

    Raises:
        ValueError: For an unknown name (the message lists the valid ones),
            a repeated component, loose arguments for a combination, or an
            invalid ``p``/``combine``.
        TypeError: For arguments a component does not accept.

    Examples:
        >>> import albumentations as A
        >>> import numpy as np
        >>> fda = style_augmentation("fda", beta_range=(0.01, 0.05), p=1.0)
        >>> type(fda).__name__
        'FourierDomainAdaptation'
        >>> combo = style_augmentation("colorjitter+fda", fda={"beta_range": (0.02, 0.04)}, seed=0)
        >>> [type(t).__name__ for t in combo.transforms]
        ['ColorJitter', 'FourierDomainAdaptation']
        >>> tile = np.full((32, 32, 3), 200, np.uint8)
        >>> combo(image=tile, fda_reference=[tile])["image"].shape
        (32, 32, 3)
        >>> style_augmentation("cutmix")
        Traceback (most recent call last):
        ...
        ValueError: Unknown style augmentation 'cutmix'; valid values: colorjitter, randstainna, ...

    """
    parts = _parse_name(name)
    p = check_probability(p, "p")
    check_in_choices(combine, COMBINE_MODES, "combine")
    routed = _route_kwargs(parts, kwargs)
    transforms = [_BUILDERS[part](**{"p": p, **routed[part]}) for part in parts]
    if len(transforms) == 1 and seed is None:
        return transforms[0]
    if combine == "oneof" and len(transforms) > 1:
        # inside A.OneOf the components' p are selection weights: uniform unless given
        for part, transform in zip(parts, transforms, strict=True):
            transform.p = float(routed[part].get("p", 1.0))
        transforms = [A.OneOf(transforms, p=p)]
    compose = A.Compose(transforms, p=1.0, seed=seed)
    if seed is not None:
        # One shared stream: Compose(seed=...) alone seeds every child with the
        # same seed, which correlates the components' draws (see reseed_transform).
        reseed_transform(compose, seed)
    return compose
