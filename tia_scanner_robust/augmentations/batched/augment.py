"""``BatchStyleAugment``: named style augmentations applied to a whole batch on its device.

The batched counterpart of
:func:`~tia_scanner_robust.augmentations.presets.style_augmentation`:
``"colorjitter"``, ``"randstainna"``, ``"fda"``, ``"scanner"`` or a
``"+"``-combination, each component with its own probability ``p`` drawn
per sample (``combine="sequence"``), or one component per sample
(``combine="oneof"``). ``"hestain"`` has no batched version.

Use it in any training loop on the device batch:

.. code-block:: python

    aug = BatchStyleAugment("randstainna", p=0.5)
    generator = torch.Generator().manual_seed(0)
    for images, masks in loader:  # uint8 (B, 3, H, W)
        images = aug(images.to("cuda"), generator=generator)
        ...

:meth:`BatchStyleAugment.from_transform` converts an albumentations style
augmentation (what ``style_augmentation`` builds) when every part of it has
a batched version; :func:`batched_version` returns ``None`` otherwise.

Examples:
    >>> import torch
    >>> from tiatoolbox.data import stain_norm_target
    >>> tile = torch.from_numpy(stain_norm_target()[:64, :64]).permute(2, 0, 1)
    >>> batch = torch.stack([tile, tile.flip(-1)])
    >>> aug = BatchStyleAugment("colorjitter+fda", p=1.0)
    >>> out = aug(batch, generator=torch.Generator().manual_seed(0))
    >>> out.shape, out.dtype
    (torch.Size([2, 3, 64, 64]), torch.uint8)
    >>> BatchStyleAugment.from_transform(style_augmentation("randstainna", p=1.0)).names
    ['randstainna']

"""

from __future__ import annotations

import inspect
from typing import Any

import albumentations as A  # noqa: N812
import numpy as np
import torch

from tia_scanner_robust._validation import check_in_choices, check_probability
from tia_scanner_robust.augmentations.batched._backend import check_backend
from tia_scanner_robust.augmentations.batched._common import check_batch, rand, select_rows
from tia_scanner_robust.augmentations.batched.colorjitter import BatchColorJitter
from tia_scanner_robust.augmentations.batched.fda import BatchFDA
from tia_scanner_robust.augmentations.batched.randstainna import BatchRandStainNA
from tia_scanner_robust.augmentations.batched.scanner import BatchScannerSimulator
from tia_scanner_robust.augmentations.fda import FourierDomainAdaptation
from tia_scanner_robust.augmentations.presets import style_augmentation
from tia_scanner_robust.augmentations.randstainna import RandStainNA
from tia_scanner_robust.augmentations.scanner import ScannerSimulator

__all__ = ["BATCHED_STYLE_AUGMENTATIONS", "BatchStyleAugment", "batched_version"]

#: Component names with a batched version.
BATCHED_STYLE_AUGMENTATIONS: tuple[str, ...] = ("colorjitter", "randstainna", "fda", "scanner")
_COMBINE = ("sequence", "oneof")
_CLASSES: dict[str, type] = {
    "colorjitter": BatchColorJitter,
    "randstainna": BatchRandStainNA,
    "fda": BatchFDA,
    "scanner": BatchScannerSimulator,
}
# used by the doctest of the module
_ = style_augmentation


def _parse(name: str) -> list[str]:
    if not isinstance(name, str):
        msg = (
            f"name must be a string such as 'fda' or 'colorjitter+fda', got {type(name).__name__}."
        )
        raise TypeError(msg)
    parts = [part.strip().lower() for part in name.split("+")]
    for part in parts:
        check_in_choices(part, BATCHED_STYLE_AUGMENTATIONS, "batched style augmentation")
    if len(set(parts)) != len(parts):
        msg = f"Style augmentation name {name!r} lists a component more than once."
        raise ValueError(msg)
    return parts


def _build(
    parts: list[str], p: float, kwargs: dict[str, Any], backend: str
) -> list[tuple[str, Any, float]]:
    routed: dict[str, dict[str, Any]] = {part: {} for part in parts}
    loose = {k: v for k, v in kwargs.items() if k not in BATCHED_STYLE_AUGMENTATIONS}
    for key, value in kwargs.items():
        if key in BATCHED_STYLE_AUGMENTATIONS:
            if key not in routed or not isinstance(value, dict):
                msg = f"Arguments for {key!r} must be a dict and {key!r} part of the name."
                raise ValueError(msg)
            routed[key].update(value)
    if loose:
        if len(parts) > 1:
            msg = (
                f"For a combination ({'+'.join(parts)}) pass each component's arguments as a "
                f"dict named after it; got loose argument(s) {', '.join(sorted(loose))}."
            )
            raise ValueError(msg)
        routed[parts[0]].update(loose)
    components = []
    for part in parts:
        options = dict(routed[part])
        part_p = check_probability(options.pop("p", p), f"{part}.p")
        accepted = [n for n in inspect.signature(_CLASSES[part].__init__).parameters if n != "self"]
        if "backend" in accepted:
            options.setdefault("backend", backend)
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            msg = (
                f"Unknown argument(s) for batched {part!r}: {', '.join(unknown)}; "
                f"accepted: {', '.join(accepted)}."
            )
            raise TypeError(msg)
        components.append((part, _CLASSES[part](**options), part_p))
    return components


class BatchStyleAugment:
    """Style augmentation of a whole ``(B, 3, H, W)`` batch on its device.

    Args:
        name: ``"colorjitter"``, ``"randstainna"``, ``"fda"``, ``"scanner"``
            or a ``"+"``-combination (see :data:`BATCHED_STYLE_AUGMENTATIONS`).
        p: Per-sample probability of each component (``"sequence"``) or of
            the block (``"oneof"``); a ``p`` in a component's arguments
            overrides it for that component.
        combine: ``"sequence"`` (each component in turn) or ``"oneof"`` (one
            component per sample, drawn with the components' ``p`` as weights).
        backend: ``"auto"`` (default: on a CPU batch ColorJitter, RandStainNA
            and FDA run OpenCV/SciPy per sample, which is faster per core than
            torch there; on a GPU everything is torch), ``"torch"`` (torch
            kernels everywhere) or ``"opencv"`` (CPU batches only). The
            scanner simulator always uses torch.
        **kwargs: Component arguments: loose for one name, per-component
            dicts (``fda={"beta_range": (0.01, 0.05)}``) for a combination.
            ``"fda"`` takes its references from the batch unless given a
            ``reference_images`` bank tensor.

    Raises:
        ValueError: For an unknown name or bad arguments.

    Examples:
        >>> import torch
        >>> aug = BatchStyleAugment("randstainna", p=0.5, color_spaces=["LAB"])
        >>> aug.names, aug.probabilities
        (['randstainna'], [0.5])
        >>> x = torch.randint(0, 256, (4, 8, 8, 3), dtype=torch.uint8)
        >>> aug(x, channels_last=True).shape  # (B, H, W, 3) batches too
        torch.Size([4, 8, 8, 3])

    """

    def __init__(
        self,
        name: str | None = "colorjitter",
        *,
        p: float = 1.0,
        combine: str = "sequence",
        backend: str = "auto",
        **kwargs: Any,
    ) -> None:
        self.combine = check_in_choices(combine, _COMBINE, "combine")
        self.p = check_probability(p, "p")
        self.backend = check_backend(backend)
        self.components: list[tuple[str, Any, float]] = (
            [] if name is None else _build(_parse(name), self.p, kwargs, self.backend)
        )

    @property
    def names(self) -> list[str]:
        """Component names, in order."""
        return [name for name, _, _ in self.components]

    @property
    def probabilities(self) -> list[float]:
        """Component probabilities (weights for ``"oneof"``)."""
        return [p for _, _, p in self.components]

    def __repr__(self) -> str:
        parts = ", ".join(f"{c!r} (p={p})" for _, c, p in self.components)
        return f"{type(self).__name__}([{parts}], combine={self.combine!r}, p={self.p})"

    @classmethod
    def from_transform(cls, transform: Any) -> BatchStyleAugment:
        """The batched equivalent of an albumentations style augmentation.

        Raises:
            ValueError: If a part of ``transform`` has no batched version.

        """
        converted = batched_version(transform)
        if converted is None:
            msg = (
                f"{type(transform).__name__} has no batched version (supported: A.ColorJitter, "
                "RandStainNA (official=False), FourierDomainAdaptation, ScannerSimulator, and "
                "A.Compose / A.OneOf of them)."
            )
            raise ValueError(msg)
        return converted

    def _apply_component(
        self,
        component: Any,
        images: torch.Tensor,
        rows: torch.Tensor,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        whole = rows.numel() == images.shape[0]
        subset = images if whole else images[rows]
        if isinstance(component, BatchFDA) and component.reference_images is None:
            params = component.sample(
                rows.numel(), generator, pool_size=images.shape[0], positions=rows.cpu()
            )
            return component.apply(subset, params, pool=images)
        return component.apply(subset, component.sample(rows.numel(), generator))

    def __call__(
        self,
        images: torch.Tensor,
        generator: torch.Generator | None = None,
        *,
        channels_last: bool = False,
    ) -> torch.Tensor:
        """Augment a batch: uint8 (``0..255``) or float (``[0, 1]``), same dtype and device out.

        Args:
            images: ``(B, 3, H, W)`` (or ``(B, H, W, 3)`` with ``channels_last=True``).
            generator: Random generator (a CPU one is best: parameters are
                drawn on its device; ``None``: torch's global generator).
            channels_last: The batch is ``(B, H, W, 3)``.

        """
        if channels_last:
            if not isinstance(images, torch.Tensor) or images.ndim != 4:
                msg = "images must be a (B, H, W, 3) tensor with channels_last=True."
                raise ValueError(msg)
            out = self(images.permute(0, 3, 1, 2), generator)
            return out.permute(0, 2, 3, 1).contiguous()
        images = check_batch(images)
        batch = images.shape[0]
        cpu = torch.device("cpu")
        out = images
        if self.combine == "oneof" and self.components:
            chosen = rand((batch,), generator, cpu) < self.p
            weights = torch.tensor(self.probabilities, dtype=torch.float64)
            if float(weights.sum()) <= 0:
                return images.clone()
            pick = torch.multinomial(weights, batch, replacement=True, generator=generator)
            for k, (_, component, _) in enumerate(self.components):
                rows = select_rows(chosen & (pick == k)).to(images.device)
                if rows.numel():
                    out = out.clone() if out is images else out
                    out[rows] = self._apply_component(component, images, rows, generator)
            return out if out is not images else images.clone()
        out = images
        for _, component, p in self.components:
            rows = select_rows(rand((batch,), generator, cpu) < p).to(images.device)
            if rows.numel() == batch:
                out = self._apply_component(component, out, rows, generator)
            elif rows.numel():
                out = out.clone() if out is images else out
                out[rows] = self._apply_component(component, out, rows, generator)
        return out.clone() if out is images else out


def _convert_one(transform: Any) -> tuple[str, Any, float] | None:  # noqa: PLR0911 - one per type
    p = float(getattr(transform, "p", 1.0))
    if isinstance(transform, RandStainNA):
        if getattr(transform, "official", False):
            return None
        batched = BatchRandStainNA(
            templates=list(transform.active_templates.values()),
            std_hyper=transform.std_hyper,
            distribution=transform.distribution,
        )
        return ("randstainna", batched, p)
    if isinstance(transform, FourierDomainAdaptation):
        bank = transform.reference_images
        tensor = None
        if bank is not None:
            if len({(np.asarray(r).shape, np.asarray(r).dtype) for r in bank}) != 1:
                return None
            stacked = np.stack([np.asarray(r) for r in bank])
            tensor = torch.from_numpy(np.ascontiguousarray(stacked)).permute(0, 3, 1, 2)
        batched = BatchFDA(tensor, beta_range=transform.beta_range, window=transform.window)
        return ("fda", batched, p)
    if isinstance(transform, ScannerSimulator):
        return ("scanner", BatchScannerSimulator(list(transform._profiles), jpeg="cpu"), p)  # noqa: SLF001
    if type(transform) is A.ColorJitter:
        batched = BatchColorJitter(
            brightness=tuple(transform.brightness),
            contrast=tuple(transform.contrast),
            saturation=tuple(transform.saturation),
            hue=tuple(transform.hue),
        )
        return ("colorjitter", batched, p)
    return None


def batched_version(transform: Any) -> BatchStyleAugment | None:
    """The :class:`BatchStyleAugment` equivalent to an albumentations transform, or ``None``.

    Supported: ``A.ColorJitter``, :class:`~tia_scanner_robust.augmentations.randstainna.RandStainNA`
    (default mode; ``official=True`` has no batched version),
    :class:`~tia_scanner_robust.augmentations.fda.FourierDomainAdaptation`
    (metadata mode: references from the batch; or a bank of same-size
    images), :class:`~tia_scanner_robust.augmentations.scanner.ScannerSimulator`
    (JPEG on the CPU), and ``A.Compose``/``A.Sequential`` (sequence) or
    ``A.OneOf`` (one per sample) of them. Probabilities carry over.

    Examples:
        >>> import albumentations as A
        >>> batched_version(A.Compose([A.ColorJitter(p=0.5)])).probabilities
        [0.5]
        >>> batched_version(A.HEStain()) is None
        True

    """
    if isinstance(transform, (A.Compose, A.Sequential, A.OneOf)):
        nested = transform.transforms
        if (
            not isinstance(transform, A.OneOf)
            and len(nested) == 1
            and isinstance(nested[0], (A.Compose, A.Sequential, A.OneOf))
            and float(transform.p) >= 1.0
        ):
            return batched_version(nested[0])
        children = [_convert_one(child) for child in transform.transforms]
        if not children or any(child is None for child in children):
            return None
        oneof = isinstance(transform, A.OneOf)
        if not oneof and float(getattr(transform, "p", 1.0)) < 1.0:
            return None
        out = BatchStyleAugment(
            None, p=float(transform.p) if oneof else 1.0, combine="oneof" if oneof else "sequence"
        )
        out.components = list(children)
        return out
    single = _convert_one(transform)
    if single is None:
        return None
    out = BatchStyleAugment(None)
    out.components = [single]
    return out
