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

Where the second view is made (``style_device``): by default (``"auto"``)
the style augmentation runs on the whole batch **on the training device**
(``trainer.device``) with the torch implementations of
:mod:`tia_scanner_robust.augmentations.batched` whenever it has a batched
version (ColorJitter, RandStainNA, FDA, the scanner simulator and their
combinations; see
:func:`~tia_scanner_robust.augmentations.batched.batched_version`), and the
concatenated ``2B`` batch stays on that device. ``style_device="cpu"`` keeps
the per-image albumentations path on the CPU; ``"batch"`` requires a batched
version. Other transforms and plain callables always use the CPU path.

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
from tia_scanner_robust.training.hooks import (
    Hook,
    hook_logger,
    register_hook,
    trainer_config_value,
    trainer_rank,
    trainer_step,
)
from tia_scanner_robust.training.state import derive_seed, reseed_transform

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "BATCH_SIZE_KEY",
    "STYLE_DEVICES",
    "SUPERVISE_CHOICES",
    "BatchStyleHook",
    "SimConsHook",
    "metadata_keys",
]

logger = logging.getLogger(__name__)

#: Batch key holding the size ``B`` of the original view.
BATCH_SIZE_KEY = "simcons_batch_size"
#: Values of ``supervise``.
SUPERVISE_CHOICES: tuple[str, ...] = ("first", "both")
_FDA_REFERENCES = ("batch", "none")
#: Values of ``style_device``: where the second view is made.
STYLE_DEVICES: tuple[str, ...] = ("auto", "batch", "cpu")
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
            transform/composition, a
            :class:`~tia_scanner_robust.augmentations.batched.BatchStyleAugment`,
            a preset name for
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
        style_device: ``"auto"`` (default: on the training device when a
            batched version exists, else the CPU path), ``"batch"`` (always
            batched; an error if there is none) or ``"cpu"`` (always the
            per-image albumentations path).
        log_fn: Where the hook logs its informative scalars, ``log_fn(name,
            value)`` (e.g. ``pl_module.log`` in Lightning); default: the
            trainer's ``log_scalar``. A trainer without ``log_scalar`` and no
            ``log_fn`` is an error, not a silent skip.

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
        style_device: str = "auto",
        log_fn: Callable[..., None] | None = None,
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
        self.log_fn = log_fn
        if style_device not in STYLE_DEVICES:
            msg = (
                f"Unknown style_device {style_device!r}; valid values: {', '.join(STYLE_DEVICES)}."
            )
            raise ValueError(msg)
        self.style_device = style_device
        self.transform = self._resolve(style_augmentation, dict(style_kwargs or {}))
        self._is_albumentations = hasattr(self.transform, "set_random_state")
        self._metadata_keys = metadata_keys(self.transform)
        self.batched = self._batched_version()
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

    def _batched_version(self) -> Any:
        """The batched augmentation used on the device, or ``None`` for the CPU path."""
        if self.style_device == "cpu":
            return None
        # Lazy: the batched package imports torch.fft code and every style augmentation.
        from tia_scanner_robust.augmentations.batched import (  # noqa: PLC0415
            BatchStyleAugment,
            batched_version,
        )

        if isinstance(self.transform, BatchStyleAugment):
            return self.transform
        batched = batched_version(self.transform) if self._is_albumentations else None
        needs_bank = self.fda_references == "none" and self._metadata_keys
        if batched is not None and needs_bank:
            batched = None  # FDA without batch references uses its own bank: keep the CPU path
        if batched is None and self.style_device == "batch":
            msg = (
                f"style_device='batch' but {type(self.transform).__name__} has no batched "
                "version (use style_device='auto' or 'cpu')."
            )
            raise ValueError(msg)
        return batched

    def __repr__(self) -> str:
        where = "device (batched)" if self.batched is not None else "cpu"
        return (
            f"SimConsHook(style_augmentation={type(self.transform).__name__}, lam={self.lam}, "
            f"supervise={self.supervise!r}, style on {where}, loss={self.loss!r})"
        )

    # ------------------------------------------------------------------ helpers
    def _criterion(self, trainer: Any) -> SimConsLoss:
        mode = self.mode or trainer_config_value(
            trainer, "task", "SimConsHook", "mode", "segmentation"
        )
        if mode != self.loss.mode:
            self.loss = SimConsLoss(mode=mode, **self._loss_kwargs)
        return self.loss

    def _step_seed(self, trainer: Any) -> int:
        base = self.seed
        if base is None:
            base = trainer_config_value(trainer, "seed", "SimConsHook", "seed", 0)
        step = trainer_step(trainer, "SimConsHook")
        rank = trainer_rank(trainer)  # rank (this Trainer), global_rank (Lightning)
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

    def augment_tensor(self, images: torch.Tensor, seed: int) -> torch.Tensor:
        """Batched ``SA`` of a ``(B, H, W, 3)`` uint8 tensor on its device, seeded by ``seed``.

        Raises:
            ValueError: If the hook has no batched augmentation (``self.batched``).

        """
        if self.batched is None:
            msg = "SimConsHook.augment_tensor needs a batched style augmentation."
            raise ValueError(msg)
        generator = torch.Generator().manual_seed(int(seed))
        return self.batched(images, generator=generator, channels_last=True)

    def augment_batch(self, images: np.ndarray, seed: int) -> np.ndarray:
        """``SA`` applied to every image of an ``(B, H, W, 3)`` uint8 batch, seeded by ``seed``.

        Uses the batched augmentation (on the CPU) when the hook has one, so
        the result equals the second view :meth:`on_batch_start` builds on a
        CPU trainer.
        """
        if self.batched is not None:
            return self.augment_tensor(torch.from_numpy(np.ascontiguousarray(images)), seed).numpy()
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
        dtype_ok = images.dtype == (np.uint8 if as_numpy else torch.uint8)
        if not dtype_ok or images.ndim != 4 or images.shape[-1] != 3:
            dtype = images.dtype if as_numpy else str(images.dtype).replace("torch.", "")
            msg = (
                "SimConsHook needs uint8 RGB images (B, H, W, 3) before normalisation in "
                f"batch[{key!r}]; got {dtype} {tuple(images.shape)}."
            )
            raise TypeError(msg)
        b = images.shape[0]
        new = {k: _repeat_rows(v, b) for k, v in batch.items() if k != key}
        seed = self._step_seed(trainer)
        if self.batched is not None and not as_numpy:
            device = getattr(trainer, "device", None) or images.device
            on_device = images.to(device, non_blocking=True)
            new[key] = torch.cat([on_device, self.augment_tensor(on_device, seed)])
        elif as_numpy:
            new[key] = np.concatenate(
                [images, self.augment_batch(np.ascontiguousarray(images), seed)]
            )
        else:
            augmented = self.augment_batch(images.detach().cpu().numpy(), seed)
            new[key] = torch.cat([images, torch.from_numpy(augmented).to(images.device)])
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
        log = hook_logger(trainer, self.log_fn, "SimConsHook")
        if log is not None:
            log("consistency_unweighted", cons)
        return {**losses, "consistency": self.lam * cons}


_BATCH_STYLE_SALT = 0xBA7C5  # decorrelates the batch style stream from SimCons'


@register_hook("batch_style")
class BatchStyleHook(Hook):
    """Style-augment the training batch on the training device (``DataConfig.style_device: batch``).

    The data pipeline's style augmentation, moved out of the DataLoader
    workers: ``on_batch_start`` moves ``batch[image_key]`` (uint8
    ``(B, H, W, 3)``) to ``trainer.device`` and applies the batched version of
    the style augmentation
    (:class:`~tia_scanner_robust.augmentations.batched.BatchStyleAugment`,
    each sample with probability ``p``), seeded from ``(seed, global_step,
    rank)``. Put it before a SimCons hook, so that SimCons' second view is a
    second draw on the already styled batch, as with the CPU pipeline. On the
    device the style runs after the workers' blur and noise (the CPU pipeline
    applies it before them).

    Args:
        style_augmentation: A preset name for
            :func:`~tia_scanner_robust.augmentations.style_augmentation`, an
            albumentations transform with a batched version, or a
            :class:`~tia_scanner_robust.augmentations.batched.BatchStyleAugment`.
        p: Per-sample probability (for a preset name).
        style_kwargs: Keyword arguments of a preset name.
        seed: Seed of the stream (default: the trainer's seed).
        image_key: Batch key of the images (default: the trainer's ``image_key``).

    Raises:
        ValueError: If the style augmentation has no batched version.

    Examples:
        >>> import torch
        >>> hook = BatchStyleHook("colorjitter", p=1.0)
        >>> batch = {"image": torch.full((2, 8, 8, 3), 120, dtype=torch.uint8)}
        >>> out = hook.on_batch_start(None, batch)
        >>> out["image"].shape, bool((out["image"] != batch["image"]).any())
        (torch.Size([2, 8, 8, 3]), True)

    """

    def __init__(
        self,
        style_augmentation: Any = "colorjitter",
        p: float = 0.5,
        *,
        style_kwargs: dict[str, Any] | None = None,
        seed: int | None = None,
        image_key: str | None = None,
    ) -> None:
        # Lazy: the batched package imports every style augmentation.
        from tia_scanner_robust.augmentations import style_augmentation as make  # noqa: PLC0415
        from tia_scanner_robust.augmentations.batched import (  # noqa: PLC0415
            BatchStyleAugment,
            batched_version,
        )

        if isinstance(style_augmentation, BatchStyleAugment):
            batched = style_augmentation
        else:
            transform = (
                make(style_augmentation, **{"p": p, **(style_kwargs or {})})
                if isinstance(style_augmentation, str)
                else style_augmentation
            )
            batched = batched_version(transform)
        if batched is None:
            msg = (
                f"style_device='batch' needs a style augmentation with a batched version; "
                f"{style_augmentation!r} has none (use style_device='cpu')."
            )
            raise ValueError(msg)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            msg = f"seed must be a non-negative int or None, got {seed!r}."
            raise ValueError(msg)
        self.augment = batched
        self.seed = seed
        self.image_key = image_key

    def __repr__(self) -> str:
        return f"BatchStyleHook({self.augment!r})"

    def on_batch_start(self, trainer: Any, batch: dict[str, Any]) -> dict[str, Any]:
        """Style ``batch[image_key]`` on the trainer's device (uint8 ``(B, H, W, 3)``)."""
        config = getattr(trainer, "config", None)
        key = self.image_key or getattr(config, "image_key", "image")
        images = batch.get(key)
        if images is None:
            msg = f"BatchStyleHook: the batch has no {key!r} entry; keys: {sorted(batch)}."
            raise KeyError(msg)
        if isinstance(images, np.ndarray):
            images = torch.from_numpy(images)
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            msg = (
                "BatchStyleHook needs uint8 RGB images (B, H, W, 3) before normalisation in "
                f"batch[{key!r}]; got {images.dtype} {tuple(images.shape)}."
            )
            raise TypeError(msg)
        base = self.seed if self.seed is not None else getattr(config, "seed", 0)
        seed = derive_seed(
            base,
            _BATCH_STYLE_SALT,
            getattr(trainer, "global_step", 0),
            getattr(trainer, "rank", 0),
        )
        device = getattr(trainer, "device", None) or images.device
        generator = torch.Generator().manual_seed(int(seed))
        styled = self.augment(
            images.to(device, non_blocking=True), generator=generator, channels_last=True
        )
        return {**batch, key: styled}
