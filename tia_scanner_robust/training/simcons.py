"""SimCons as a trainer hook: style-augmented second view, one forward, consistency term.

``L_total = L_sup(F(x), y) + lambda * L_cons(F(x), F(SA(x)))`` (SCORPION paper, Eq. 1).

How a training step runs with :class:`SimConsHook` (batch of ``B`` items):

1. ``on_batch_start`` (CPU, uint8 HWC images before normalisation): builds
   ``SA(x_i)`` for every item with the style augmentation (any
   albumentations transform, e.g. from
   :func:`tia_scanner_robust.augmentations.style_augmentation`), passing
   other images of the batch as FDA references through the transform's
   ``metadata_key``; concatenates ``[x, SA(x)]`` into a ``2B`` batch,
   duplicates the targets and sets ``batch["supervised_mask"]`` to
   ``[True]*B + [supervise == "both"]*B``.
2. The trainer runs the model ONCE on the ``2B`` batch (both views share the
   BatchNorm statistics of the step) and computes the supervised loss on the
   rows selected by ``supervised_mask`` (the first view, or both).
3. ``on_loss`` splits the outputs into ``F(x)`` (first ``B`` rows) and
   ``F(SA(x))`` (last ``B`` rows) and adds
   ``losses["consistency"] = lam * SimConsLoss(F(x), F(SA(x)))``; the
   unweighted value is logged as ``consistency_unweighted``.

A step therefore costs about twice a plain step (twice the images through
the network); compare variants at equal optimiser steps.

The augmentation is seeded from ``(seed, global_step, rank)``, so the hook is
stateless and a resumed run draws the same views.

Examples:
    >>> import albumentations as A, torch
    >>> hook = SimConsHook(A.ColorJitter(p=1.0), lam=0.5)
    >>> batch = {
    ...     "image": torch.full((2, 8, 8, 3), 128, dtype=torch.uint8),
    ...     "mask": torch.zeros(2, 8, 8, dtype=torch.long),
    ... }
    >>> out = hook.on_batch_start(None, batch)
    >>> out["image"].shape, out["supervised_mask"].tolist()
    (torch.Size([4, 8, 8, 3]), [True, True, False, False])

"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from tia_scanner_robust.losses.simcons import SimConsLoss
from tia_scanner_robust.training.hooks import Hook, register_hook
from tia_scanner_robust.training.state import derive_seed, reseed_transform

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["BATCH_SIZE_KEY", "SUPERVISE_CHOICES", "SimConsHook", "metadata_keys"]

logger = logging.getLogger(__name__)

#: Batch key holding the size ``B`` of the original view.
BATCH_SIZE_KEY = "simcons_batch_size"
#: Values of ``supervise``.
SUPERVISE_CHOICES: tuple[str, ...] = ("first", "both")
_FDA_REFERENCES = ("batch", "none")
_SEED_SALT = 0x5C0A5  # decorrelates the hook's stream from the data pipeline's


def metadata_keys(transform: object) -> list[str]:
    """The ``metadata_key`` names used by a transform or any transform nested in it.

    Examples:
        >>> import albumentations as A
        >>> metadata_keys(A.Compose([A.ColorJitter(), A.FDA(metadata_key="ref")]))
        ['ref']

    """
    keys: list[str] = []
    key = getattr(transform, "metadata_key", None)
    if isinstance(key, str):
        keys.append(key)
    for child in getattr(transform, "transforms", None) or []:
        keys += [k for k in metadata_keys(child) if k not in keys]
    return keys


def _repeat_rows(value: Any, n: int) -> Any:
    """Duplicate the first axis of per-item batch entries (tensors, arrays, lists)."""
    if isinstance(value, torch.Tensor) and value.ndim and value.shape[0] == n:
        return torch.cat([value, value])
    if isinstance(value, np.ndarray) and value.ndim and value.shape[0] == n:
        return np.concatenate([value, value])
    if isinstance(value, (list, tuple)) and len(value) == n:
        return type(value)(list(value) + list(value))
    return value


@register_hook("simcons")
class SimConsHook(Hook):
    """Add the SimCons consistency term, running the model once on ``[x, SA(x)]``.

    Args:
        style_augmentation: The style augmentation ``SA``: an albumentations
            transform/composition, a preset name for
            :func:`tia_scanner_robust.augmentations.style_augmentation`
            (e.g. ``"colorjitter"``, ``"randstainna"``, ``"fda"``,
            ``"colorjitter+fda"``; built with ``p=1.0`` unless
            ``style_kwargs`` says otherwise), or a callable ``f(image) ->
            image`` on ``(H, W, 3)`` uint8 arrays. It must be photometric
            (pixel ``i`` of ``SA(x)`` shows pixel ``i`` of ``x``).
        lam: Weight ``lambda`` of the consistency term (paper: 0.3-0.5 best;
            above about 0.3 the primary task can degrade).
        supervise: ``"first"`` (supervised loss on ``x`` only) or ``"both"``
            (also on ``SA(x)``).
        mode: ``"segmentation"`` or ``"classification"``; ``None`` takes the
            trainer's ``config.task``.
        denominator: Soft Dice form for segmentation (``"squared"`` or ``"linear"``).
        reduction: Reduction of :class:`~tia_scanner_robust.losses.simcons.SimConsLoss`.
        stop_gradient: Detach the original branch (default ``False``: both
            branches get gradients, as in the paper).
        classification_loss: ``"symmetric_kl"`` or ``"mse"``.
        fda_references: ``"batch"``: transforms with a ``metadata_key``
            (FDA) receive another image of the same batch as reference;
            ``"none"``: pass nothing (the transform uses its own bank).
        style_kwargs: Keyword arguments for a preset name.
        seed: Seed of the augmentation stream (default: the trainer's seed).
        image_key: Batch key of the images (default: the trainer's ``image_key``).

    Raises:
        ValueError: On invalid options.

    Examples:
        >>> hook = SimConsHook(lambda image: 255 - image, lam=0.3, supervise="both")
        >>> hook.lam, hook.supervise
        (0.3, 'both')

    """

    def __init__(
        self,
        style_augmentation: Any = "colorjitter",
        lam: float = 0.3,
        supervise: str = "first",
        *,
        mode: str | None = None,
        denominator: str = "squared",
        reduction: str = "mean",
        stop_gradient: bool = False,
        classification_loss: str = "symmetric_kl",
        fda_references: str = "batch",
        style_kwargs: dict[str, Any] | None = None,
        seed: int | None = None,
        image_key: str | None = None,
    ) -> None:
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not lam >= 0:
            msg = f"lam must be a number >= 0, got {lam!r}."
            raise ValueError(msg)
        if supervise not in SUPERVISE_CHOICES:
            msg = f"Unknown supervise {supervise!r}; valid values: {', '.join(SUPERVISE_CHOICES)}."
            raise ValueError(msg)
        if fda_references not in _FDA_REFERENCES:
            valid = ", ".join(_FDA_REFERENCES)
            msg = f"Unknown fda_references {fda_references!r}; valid values: {valid}."
            raise ValueError(msg)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            msg = f"seed must be a non-negative int or None, got {seed!r}."
            raise ValueError(msg)
        self.lam = float(lam)
        self.supervise = supervise
        self.mode = mode
        self.fda_references = fda_references
        self.seed = seed
        self.image_key = image_key
        self.transform = self._resolve(style_augmentation, dict(style_kwargs or {}))
        self._is_albumentations = hasattr(self.transform, "set_random_state")
        self._metadata_keys = metadata_keys(self.transform)
        # Validate the loss options now; the mode may still change at fit start.
        self._loss_kwargs = {
            "denominator": denominator,
            "reduction": reduction,
            "stop_gradient": stop_gradient,
            "classification_loss": classification_loss,
        }
        self.loss = SimConsLoss(mode=mode or "segmentation", **self._loss_kwargs)
        self._warned_single = False

    @staticmethod
    def _resolve(style: Any, style_kwargs: dict[str, Any]) -> Callable[..., Any]:
        if isinstance(style, str):
            # Lazy: the presets module imports every style augmentation.
            from tia_scanner_robust.augmentations import (  # noqa: PLC0415
                style_augmentation,
            )

            return style_augmentation(style, **{"p": 1.0, **style_kwargs})
        if style_kwargs:
            msg = "style_kwargs only apply when style_augmentation is a preset name."
            raise ValueError(msg)
        if not callable(style):
            msg = (
                "style_augmentation must be a transform, a preset name or a callable, "
                f"got {style!r}."
            )
            raise TypeError(msg)
        return style

    def __repr__(self) -> str:
        return (
            f"SimConsHook(style_augmentation={type(self.transform).__name__}, lam={self.lam}, "
            f"supervise={self.supervise!r}, loss={self.loss!r})"
        )

    # ------------------------------------------------------------------ helpers
    def _criterion(self, trainer: Any) -> SimConsLoss:
        mode = self.mode or getattr(getattr(trainer, "config", None), "task", "segmentation")
        if mode != self.loss.mode:
            self.loss = SimConsLoss(mode=mode, **self._loss_kwargs)
        return self.loss

    def _step_seed(self, trainer: Any) -> int:
        base = self.seed
        if base is None:
            base = getattr(getattr(trainer, "config", None), "seed", 0)
        step = getattr(trainer, "global_step", 0)
        rank = getattr(trainer, "rank", 0)
        return derive_seed(base, _SEED_SALT, step, rank)

    def _augment(self, image: np.ndarray, refs: dict[str, list[np.ndarray]]) -> np.ndarray:
        if self._is_albumentations:
            out = self.transform(image=image, **refs)["image"]
        else:
            out = self.transform(image)
        out = np.asarray(out)
        if out.shape != image.shape or out.dtype != np.uint8:
            msg = (
                "The style augmentation must return a uint8 image of the input's shape "
                f"{image.shape} (photometric transforms only); got {out.dtype} {out.shape}."
            )
            raise ValueError(msg)
        return out

    def augment_batch(self, images: np.ndarray, seed: int) -> np.ndarray:
        """``SA`` applied to every image of an ``(B, H, W, 3)`` uint8 batch, seeded by ``seed``."""
        b = images.shape[0]
        if self._is_albumentations:
            reseed_transform(self.transform, seed)
        rng = np.random.default_rng(seed)
        ref_index = np.arange(b)
        if self._metadata_keys and self.fda_references == "batch":
            if b > 1:
                ref_index = (ref_index + rng.integers(1, b, size=b)) % b
            elif not self._warned_single:
                logger.warning("SimCons: batch of 1, FDA uses the image itself as its reference.")
                self._warned_single = True
        out = np.empty_like(images)
        for i in range(b):
            refs = {}
            if self.fda_references == "batch":
                refs = {key: [images[ref_index[i]]] for key in self._metadata_keys}
            out[i] = self._augment(images[i], refs)
        return out

    # ------------------------------------------------------------------ hook API
    def on_batch_start(self, trainer: Any, batch: dict[str, Any]) -> dict[str, Any]:
        """Build ``[x, SA(x)]``, duplicate the targets and set ``supervised_mask``."""
        key = self.image_key or getattr(getattr(trainer, "config", None), "image_key", "image")
        if key not in batch:
            msg = f"SimConsHook: the batch has no {key!r} entry; keys: {sorted(batch)}."
            raise KeyError(msg)
        images = batch[key]
        as_numpy = isinstance(images, np.ndarray)
        images_np = images if as_numpy else images.detach().cpu().numpy()
        if images_np.dtype != np.uint8 or images_np.ndim != 4 or images_np.shape[-1] != 3:
            msg = (
                "SimConsHook needs uint8 RGB images (B, H, W, 3) before normalisation in "
                f"batch[{key!r}]; got {images_np.dtype} {images_np.shape}."
            )
            raise TypeError(msg)
        b = images_np.shape[0]
        augmented = self.augment_batch(np.ascontiguousarray(images_np), self._step_seed(trainer))
        new = {k: _repeat_rows(v, b) for k, v in batch.items() if k != key}
        if as_numpy:
            new[key] = np.concatenate([images_np, augmented])
        else:
            new[key] = torch.cat([images, torch.from_numpy(augmented)])
        rows = batch.get("supervised_mask")
        first = (
            torch.ones(b, dtype=torch.bool)
            if rows is None
            else torch.as_tensor(rows, dtype=torch.bool)
        )
        second = first.clone() if self.supervise == "both" else torch.zeros(b, dtype=torch.bool)
        new["supervised_mask"] = torch.cat([first, second])
        new[BATCH_SIZE_KEY] = b
        return new

    def on_loss(
        self,
        trainer: Any,
        batch: dict[str, Any],
        outputs: Any,
        losses: dict[str, torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """Add ``lam * L_cons(F(x), F(SA(x)))`` as the ``"consistency"`` term."""
        b = batch.get(BATCH_SIZE_KEY)
        if b is None:
            msg = "SimConsHook.on_loss: the batch was not built by SimConsHook.on_batch_start."
            raise ValueError(msg)
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs
        if not isinstance(logits, torch.Tensor) or logits.shape[0] != 2 * b:
            shape = tuple(getattr(logits, "shape", ()))
            msg = f"SimConsHook expects outputs with 2 * {b} rows (both views), got {shape}."
            raise ValueError(msg)
        cons = self._criterion(trainer)(logits[:b], logits[b : 2 * b])
        if trainer is not None and hasattr(trainer, "log_scalar"):
            trainer.log_scalar("consistency_unweighted", cons)
        return {**losses, "consistency": self.lam * cons}
