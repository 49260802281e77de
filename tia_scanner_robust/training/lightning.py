"""SimCons and ScanGen for a user's own Lightning ``LightningModule``.

Lightning is an optional dependency (``pip install tia-scanner-robust[lightning]``);
importing :mod:`tia_scanner_robust.training` never imports it, importing this
module does.

Both callbacks add a weighted loss term to the loss that Lightning
optimises. Lightning's callback hooks cannot change that loss (the value
given to ``on_before_backward`` is read-only and ``on_train_batch_end`` runs
after ``backward``), so at ``setup(stage="fit")`` a callback wraps the
module's ``training_step`` (an instance attribute that shadows the method;
``teardown`` removes it):

.. code-block:: text

    output = user's training_step(batch, batch_idx)   # the supervised loss
    term   = callback.loss_term(pl_module, batch, batch_idx, output)   # lam * L_term
    return output + term                               # tensor, or output["loss"] + term

The term is computed inside ``training_step``, so it is part of the graph
Lightning back-propagates, it is scaled by gradient accumulation like the
rest of the loss, and under DDP its forward passes run inside the DDP
wrapper (Lightning routes ``training_step`` through it) and its gradients
are synchronised. A ``training_step`` that returns ``None`` (skip the batch)
is left alone. Manual optimisation (``automatic_optimization = False``) is
refused at ``setup``: call :meth:`SimConsCallback.loss_term` in your
``training_step`` and add it yourself before ``manual_backward``.

Contract of the user's module:

- :class:`SimConsCallback`: the batch is a mapping with the images under
  ``image_key`` (default ``"image"``) or a tuple/list with the images at
  position ``image_key`` (default ``0``): a ``(B, 3, H, W)`` float tensor on
  the device, as ``forward`` takes it (``image_mean``/``image_std`` say how
  it was normalised; default: plain ``[0, 1]``). ``pl_module(images)``
  returns logits ``(B, C, H, W)`` (segmentation) or ``(B, C)``
  (classification), or a dict holding them under ``outputs_key``; pass
  ``forward=`` to call something else. If ``training_step`` returns a dict
  whose ``outputs_key`` entry holds the logits of the ``B`` images, they are
  reused as ``F(x)`` and only ``SA(x)`` is forwarded (``B`` extra images per
  step); otherwise ``[x, SA(x)]`` is forwarded once (``2B`` extra images;
  the two views share the BatchNorm statistics of that forward).
- :class:`ScanGenCallback`: the module exposes the projection ``g`` as
  ``embed(features) -> projected`` (or at the attribute path ``embed=``,
  e.g. ``"model.embed"``). With a ``pool`` (a multi-scanner
  :class:`~tia_scanner_robust.data.features.BagDataset`, feature store or
  its path) every step draws its own ScanGen batch from it (the paper's
  setting, through :class:`~tia_scanner_robust.training.scangen.ScanGenHook`);
  without one, the training batch itself is the ScanGen batch: a mapping
  with ``features`` ``(B, N, D)``, optional ``mask`` ``(B, N)``,
  ``specimen_id`` and ``scanner`` (``B`` ids each), as
  :func:`~tia_scanner_robust.data.features.collate_bags` makes them.

Randomness: the style view of a batch is drawn from
``(seed, trainer.current_epoch, batch_idx, trainer.global_rank)`` and the
ScanGen draws from ``(seed, trainer.global_rank)`` (generator states are
saved in Lightning checkpoints), so seeded runs repeat and DDP ranks draw
different views and batches.

Examples:
    >>> import torch
    >>> cb = SimConsCallback(lambda images: images.flip(1), lam=0.5, mode="classification")
    >>> cb.lam, cb.loss.mode
    (0.5, 'classification')
    >>> x = torch.rand(2, 3, 4, 4)
    >>> bool(torch.equal(cb.augment(x, seed=0), x.flip(1)))
    True

"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

try:
    from lightning.pytorch.callbacks import Callback
except ImportError as err:  # pragma: no cover - exercised with lightning hidden
    msg = (
        "tia_scanner_robust.training.lightning needs Lightning (lightning>=2.2): "
        "pip install tia-scanner-robust[lightning]"
    )
    raise ImportError(msg) from err

from tia_scanner_robust._validation import check_in_choices
from tia_scanner_robust.bags import check_bags, subsample_bags
from tia_scanner_robust.losses.scangen import GRANULARITIES, ScanGenLoss, slide_embeddings
from tia_scanner_robust.losses.simcons import MODES, SimConsLoss
from tia_scanner_robust.training.state import derive_seed

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    import lightning.pytorch as pl

__all__ = ["ScanGenCallback", "SimConsCallback"]

_SIMCONS_SALT = 0x5C0A5C
_SCANGEN_SALT = 0x5CA95C


def _check_lam(lam: object) -> float:
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not lam >= 0:
        msg = f"lam must be a number >= 0, got {lam!r}."
        raise ValueError(msg)
    return float(lam)


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        msg = f"seed must be a non-negative int, got {seed!r}."
        raise ValueError(msg)
    return seed


def _step_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, int | None]:
    """``(batch, batch_idx)`` of a ``training_step(batch, batch_idx)`` call."""
    batch = args[0] if args else kwargs.get("batch")
    batch_idx = args[1] if len(args) > 1 else kwargs.get("batch_idx")
    return batch, batch_idx


_ABSENT = object()  # no instance attribute "training_step" before wrapping


class _TrainingStepWithTerm:
    """``pl_module.training_step`` replaced by the user's step plus ``callback.loss_term``.

    An instance attribute over the method; ``__wrapped__`` (set by
    :func:`functools.update_wrapper`) keeps the user's signature visible to
    Lightning's inspection of ``training_step``. Once its callback is torn
    down (``active = False``) it only calls through.
    """

    def __init__(self, callback: _LossTermCallback, pl_module: Any) -> None:
        self.callback = callback
        self.pl_module = pl_module
        self.previous = pl_module.__dict__.get("training_step", _ABSENT)
        self.original = pl_module.training_step
        self.active = True
        # the user's own method (under any other wrappers): one unwrap gives its code
        functools.update_wrapper(self, inspect.unwrap(self.original))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        output = self.original(*args, **kwargs)
        if not self.active or output is None:  # torn down, or the user skips this batch
            return output
        batch, batch_idx = _step_args(args, kwargs)
        if batch_idx is None:
            batch_idx = self.pl_module.trainer.fit_loop.epoch_loop.batch_idx
        term = self.callback.loss_term(self.pl_module, batch, batch_idx, output)
        if isinstance(output, torch.Tensor):
            return output + term
        if isinstance(output, Mapping) and "loss" in output:
            return {**output, "loss": output["loss"] + term}
        msg = (
            f"{type(self.callback).__name__}: training_step must return the loss tensor or a "
            f"dict with a 'loss' entry, got {type(output).__name__}."
        )
        raise TypeError(msg)


def _wrappers(pl_module: Any) -> list[_TrainingStepWithTerm]:
    """The chain of wrappers installed on ``pl_module.training_step``, top first."""
    chain = []
    node = pl_module.__dict__.get("training_step")
    while isinstance(node, _TrainingStepWithTerm):
        chain.append(node)
        node = node.previous
    return chain


class _LossTermCallback(Callback):
    """Adds ``loss_term(...)`` to the loss returned by the module's ``training_step``."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Wrap ``pl_module.training_step`` for fitting (see the module docstring)."""
        del trainer
        if stage != "fit":
            return
        if not pl_module.automatic_optimization:
            name = type(self).__name__
            msg = (
                f"{name} adds its term to the loss returned by training_step, which Lightning "
                "optimises only with automatic optimisation; with automatic_optimization=False "
                f"call {name}.loss_term(self, batch, batch_idx) in your training_step and add "
                "it to the loss before manual_backward (and do not pass the callback to the "
                "Trainer)."
            )
            raise RuntimeError(msg)
        if any(node.callback is self and node.active for node in _wrappers(pl_module)):
            return
        pl_module.training_step = _TrainingStepWithTerm(self, pl_module)  # type: ignore[method-assign]

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Remove the ``training_step`` wrapper installed by :meth:`setup`."""
        del trainer, stage
        for node in _wrappers(pl_module):
            if node.callback is self:
                node.active = False
        # pop inactive wrappers (this one, and those of callbacks torn down before it)
        top = pl_module.__dict__.get("training_step")
        while isinstance(top, _TrainingStepWithTerm) and not top.active:
            if top.previous is _ABSENT:
                del pl_module.__dict__["training_step"]
            else:
                pl_module.__dict__["training_step"] = top.previous
            top = pl_module.__dict__.get("training_step")

    def loss_term(
        self,
        pl_module: pl.LightningModule,
        batch: Any,
        batch_idx: int,
        outputs: Any = None,
    ) -> torch.Tensor:
        """The weighted term added to the loss (logged through ``pl_module.log``)."""
        raise NotImplementedError

    def _log(self, pl_module: pl.LightningModule, name: str, value: Any, batch_size: int) -> None:
        if isinstance(value, torch.Tensor):
            value = value.detach().float()
        pl_module.log(f"{self.log_prefix}{name}", value, batch_size=batch_size, **self.log_kwargs)


class SimConsCallback(_LossTermCallback):
    """SimCons for a ``LightningModule``: adds ``lam * L_cons(F(x), F(SA(x)))`` to its loss.

    SCORPION's Eq. 1 with the user's own supervised loss: the module's
    ``training_step`` computes ``L_sup`` as usual; the callback builds the
    style view ``SA(x)`` of the batch's images, runs the module on it and
    adds ``lam`` times :class:`~tia_scanner_robust.losses.simcons.SimConsLoss`
    (see the module docstring for the batch layout and how the term reaches
    the optimised loss). Logged with ``pl_module.log``:
    ``{log_prefix}consistency`` (unweighted) and
    ``{log_prefix}consistency_weighted``.

    Args:
        style_augmentation: The style augmentation ``SA``. A callable on
            image batches ``f(images) -> images`` with ``images`` a
            ``(B, 3, H, W)`` float tensor in ``[0, 1]`` on the device, e.g.
            :class:`~tia_scanner_robust.augmentations.batched.BatchStyleAugment`;
            it gets a seeded ``torch.Generator`` as ``generator=`` if it
            accepts that keyword, otherwise runs under a forked, seeded torch
            RNG. Or a preset name for
            :func:`tia_scanner_robust.augmentations.style_augmentation`
            (built with ``p=1.0``) or an albumentations transform, resolved
            as :class:`~tia_scanner_robust.training.simcons.SimConsHook`
            does: its batched torch version on the batch's device when it
            has one (ColorJitter, RandStainNA, FDA, the scanner simulator),
            otherwise per image on uint8 ``(H, W, 3)`` copies on the CPU
            (FDA gets another image of the batch as reference).
        lam: Weight ``lambda`` of the term (paper: 0.3-0.5).
        mode: ``"segmentation"`` or ``"classification"`` (the loss's mode).
        denominator: Soft Dice form (segmentation).
        reduction: Reduction of the consistency loss.
        stop_gradient: Detach ``F(x)`` (default ``False``: both views get
            gradients, as in the paper).
        classification_loss: ``"symmetric_kl"`` or ``"mse"``.
        image_key: Where the images are in the batch: a mapping key
            (default ``"image"``) or a sequence index (default ``0``).
        image_mean: Per-channel mean the batch images were normalised with
            (``None``: images are in ``[0, 1]``); undone before ``SA`` and
            redone after.
        image_std: Per-channel standard deviation, likewise.
        outputs_key: Key of the logits in dict outputs of ``forward`` and of
            ``training_step``.
        forward: ``forward(pl_module, images) -> logits`` instead of
            ``pl_module(images)``.
        style_kwargs: Keyword arguments of a preset name.
        seed: Seed of the style views.
        log_prefix: Prefix of the logged names.
        log_kwargs: Extra keyword arguments of ``pl_module.log`` (e.g.
            ``{"on_epoch": True, "sync_dist": True}``).

    Raises:
        ValueError: On invalid options.
        TypeError: If ``style_augmentation`` is not usable.

    Examples:
        >>> SimConsCallback("colorjitter", lam=0.3).loss.denominator
        'squared'

    """

    def __init__(
        self,
        style_augmentation: Any = "colorjitter",
        lam: float = 0.3,
        *,
        mode: str = "segmentation",
        denominator: str = "squared",
        reduction: str = "mean",
        stop_gradient: bool = False,
        classification_loss: str = "symmetric_kl",
        image_key: str | int | None = None,
        image_mean: Iterable[float] | None = None,
        image_std: Iterable[float] | None = None,
        outputs_key: str = "logits",
        forward: Callable[[Any, torch.Tensor], Any] | None = None,
        style_kwargs: dict[str, Any] | None = None,
        seed: int = 0,
        log_prefix: str = "simcons/",
        log_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.lam = _check_lam(lam)
        check_in_choices(mode, MODES, "mode")
        self.loss = SimConsLoss(
            mode=mode,
            denominator=denominator,
            reduction=reduction,
            stop_gradient=stop_gradient,
            classification_loss=classification_loss,
        )
        if reduction == "none":
            msg = "reduction='none' gives per-sample values; the loss term must be a scalar."
            raise ValueError(msg)
        self.image_key = image_key
        self.image_mean = None if image_mean is None else tuple(float(v) for v in image_mean)
        self.image_std = None if image_std is None else tuple(float(v) for v in image_std)
        for name, value in (("image_mean", self.image_mean), ("image_std", self.image_std)):
            if value is not None and len(value) != 3:
                msg = f"{name} must have 3 values (RGB), got {value}."
                raise ValueError(msg)
        if self.image_std is not None and min(self.image_std) <= 0:
            msg = f"image_std must be positive, got {self.image_std}."
            raise ValueError(msg)
        self.outputs_key = outputs_key
        self.forward = forward
        self.seed = _check_seed(seed)
        self.log_prefix = log_prefix
        self.log_kwargs = dict(log_kwargs or {})
        self._per_image: Any = None  # a SimConsHook for the per-image CPU path
        self._batch_fn: Callable[..., torch.Tensor] | None = None
        self._takes_generator = False
        if isinstance(style_augmentation, str) or _is_albumentations(style_augmentation):
            # Lazy: the hook module loads the augmentation presets on demand.
            from tia_scanner_robust.training.simcons import SimConsHook  # noqa: PLC0415

            hook = SimConsHook(
                style_augmentation, lam=0.0, style_kwargs=style_kwargs, seed=self.seed
            )
            batched = getattr(hook, "batched", None)  # a BatchStyleAugment, when one exists
            if batched is not None:
                self._batch_fn, self._takes_generator = batched, True
            else:
                self._per_image = hook
        elif callable(style_augmentation):
            if style_kwargs:
                msg = "style_kwargs only apply when style_augmentation is a preset name."
                raise ValueError(msg)
            self._batch_fn = style_augmentation
            self._takes_generator = _accepts_keyword(style_augmentation, "generator")
        else:
            msg = (
                "style_augmentation must be a preset name, an albumentations transform or a "
                f"callable on image batches, got {style_augmentation!r}."
            )
            raise TypeError(msg)
        self.style_augmentation = style_augmentation

    def __repr__(self) -> str:
        style = self.style_augmentation
        shown = style if isinstance(style, str) else type(style).__name__
        return f"SimConsCallback(style_augmentation={shown!r}, lam={self.lam}, loss={self.loss!r})"

    # ------------------------------------------------------------------ the view
    def step_seed(self, epoch: int, batch_idx: int, rank: int) -> int:
        """Seed of the style view of batch ``batch_idx`` of ``epoch`` on ``rank``.

        Examples:
            >>> cb = SimConsCallback(lambda x: x)
            >>> cb.step_seed(0, 1, 0) != cb.step_seed(0, 1, 1)
            True

        """
        return derive_seed(self.seed, _SIMCONS_SALT, epoch, batch_idx, rank)

    def augment(self, images: torch.Tensor, seed: int) -> torch.Tensor:
        """``SA(images)`` for a ``(B, 3, H, W)`` batch (normalised as the batch is), no grad.

        Raises:
            TypeError: If ``images`` is not a ``(B, 3, H, W)`` tensor.
            ValueError: If the augmentation changes the shape.

        """
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
            shape = tuple(getattr(images, "shape", ()))
            msg = (
                "SimConsCallback needs the batch images as a (B, 3, H, W) tensor (channels "
                f"first, as the module takes them); got {type(images).__name__} {shape}."
            )
            raise TypeError(msg)
        with torch.no_grad():
            pixels = self._to_unit(images)
            if self._per_image is not None:
                out = self._augment_per_image(pixels, seed)
            else:
                out = self._augment_batch(pixels, seed)
            if tuple(out.shape) != tuple(pixels.shape):
                msg = (
                    "The style augmentation must keep the batch shape "
                    f"{tuple(pixels.shape)} (photometric transforms only), got {tuple(out.shape)}."
                )
                raise ValueError(msg)
            return self._from_unit(out.to(pixels.dtype), images)

    def _stats(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.image_mean is None and self.image_std is None:
            return None
        kw = {"device": images.device, "dtype": torch.float32}
        mean = torch.tensor(self.image_mean or (0.0, 0.0, 0.0), **kw).view(1, 3, 1, 1)
        std = torch.tensor(self.image_std or (1.0, 1.0, 1.0), **kw).view(1, 3, 1, 1)
        return mean, std

    def _to_unit(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype == torch.uint8:
            return images.float() / 255.0
        if not images.is_floating_point():
            msg = f"SimConsCallback: batch images must be float or uint8, got {images.dtype}."
            raise TypeError(msg)
        stats = self._stats(images)
        pixels = images.float() if stats is None else images.float() * stats[1] + stats[0]
        return pixels.clamp(0.0, 1.0)

    def _from_unit(self, pixels: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        if like.dtype == torch.uint8:
            return (pixels * 255.0).round().clamp(0, 255).to(torch.uint8)
        stats = self._stats(like)
        out = pixels if stats is None else (pixels - stats[0]) / stats[1]
        return out.to(like.dtype)

    def _augment_batch(self, pixels: torch.Tensor, seed: int) -> torch.Tensor:
        fn = self._batch_fn
        if self._takes_generator:
            out = fn(pixels, generator=torch.Generator().manual_seed(seed))  # type: ignore[misc]
        else:
            devices = [pixels.device] if pixels.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed)
                out = fn(pixels)  # type: ignore[misc]
        if not isinstance(out, torch.Tensor):
            msg = f"The style augmentation must return a tensor, got {type(out).__name__}."
            raise TypeError(msg)
        return out.to(pixels.device)

    def _augment_per_image(self, pixels: torch.Tensor, seed: int) -> torch.Tensor:
        u8 = (pixels * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        out = self._per_image.augment_batch(u8, seed)  # type: ignore[union-attr]
        back = torch.from_numpy(out).to(pixels.device).permute(0, 3, 1, 2)
        return back.float() / 255.0

    # ------------------------------------------------------------------ the term
    def _images(self, batch: Any) -> torch.Tensor:
        if isinstance(batch, Mapping):
            key = "image" if self.image_key is None else self.image_key
            if key not in batch:
                msg = f"SimConsCallback: the batch has no {key!r} entry; keys: {sorted(batch)}."
                raise KeyError(msg)
            return batch[key]
        if isinstance(batch, (list, tuple)):
            index = 0 if self.image_key is None else self.image_key
            if not isinstance(index, int) or not -len(batch) <= index < len(batch):
                msg = (
                    f"SimConsCallback: image_key must be an index into the batch sequence "
                    f"(length {len(batch)}), got {index!r}."
                )
                raise KeyError(msg)
            return batch[index]
        if isinstance(batch, torch.Tensor) and self.image_key is None:
            return batch
        msg = (
            "SimConsCallback: the batch must be a mapping, a sequence or an image tensor, "
            f"got {type(batch).__name__}."
        )
        raise TypeError(msg)

    def _logits(self, pl_module: Any, images: torch.Tensor) -> torch.Tensor:
        out = pl_module(images) if self.forward is None else self.forward(pl_module, images)
        if isinstance(out, Mapping):
            if self.outputs_key not in out:
                msg = (
                    f"SimConsCallback: the module's output has no {self.outputs_key!r} entry "
                    f"(outputs_key); keys: {sorted(out)}."
                )
                raise KeyError(msg)
            out = out[self.outputs_key]
        if not isinstance(out, torch.Tensor):
            msg = (
                "SimConsCallback: forward must return logits as a tensor or a dict holding "
                f"them under {self.outputs_key!r}, got {type(out).__name__}."
            )
            raise TypeError(msg)
        return out

    def loss_term(
        self,
        pl_module: pl.LightningModule,
        batch: Any,
        batch_idx: int,
        outputs: Any = None,
    ) -> torch.Tensor:
        """``lam * L_cons(F(x), F(SA(x)))`` for one batch; logs both values.

        Called by the ``training_step`` wrapper; call it yourself from a
        ``training_step`` with manual optimisation. ``outputs`` is what the
        user's ``training_step`` returned: a dict with ``outputs_key`` logits
        of the ``B`` images is reused as ``F(x)``.

        Returns:
            The weighted 0-d term, attached to the graph.

        """
        trainer = pl_module.trainer
        images = self._images(batch)
        seed = self.step_seed(trainer.current_epoch, int(batch_idx), trainer.global_rank)
        augmented = self.augment(images, seed)
        b = images.shape[0]
        reused = outputs.get(self.outputs_key) if isinstance(outputs, Mapping) else None
        if isinstance(reused, torch.Tensor) and reused.shape[0] == b:
            first, second = reused, self._logits(pl_module, augmented)
        else:
            both = self._logits(pl_module, torch.cat([images, augmented]))
            if both.shape[0] != 2 * b:
                msg = f"SimConsCallback: forward returned {both.shape[0]} rows for {2 * b} images."
                raise ValueError(msg)
            first, second = both[:b], both[b:]
        cons = self.loss(first, second)
        weighted = self.lam * cons
        self._log(pl_module, "consistency", cons, b)
        self._log(pl_module, "consistency_weighted", weighted, b)
        return weighted


class ScanGenCallback(_LossTermCallback):
    """ScanGen for a ``LightningModule``: adds ``lam * L_ScanGen(g(...))`` to its loss.

    The paper's Eq. 3 with the user's own task loss: the module's
    ``training_step`` computes the task loss (e.g. cross-entropy of a MIL
    head); the callback adds ``lam`` times
    :class:`~tia_scanner_robust.losses.scangen.ScanGenLoss` on embeddings of
    the module's projection ``g`` (see the module docstring for the
    contract). Logged with ``pl_module.log``: ``{log_prefix}unweighted``,
    ``{log_prefix}weighted`` and the
    :class:`~tia_scanner_robust.losses.scangen.ScanGenStats` fields
    (``{log_prefix}n_attract``...; a mean distance is left out on a step
    where its pair set is empty).

    Args:
        pool: Multi-scanner pool (``BagDataset``, ``FeatureStore`` or a path):
            every step draws a ScanGen batch from it. ``None``: the training
            batch is the ScanGen batch.
        lam: Weight ``lambda`` (0: nothing is added, nothing is drawn).
        alpha: Attraction weight (repulsion ``1 - alpha``).
        margin: Repulsion radius ``m`` in ``(0, 2]``.
        squared: Squared distance and hinge (the paper) or plain.
        granularity: ``"slide"`` or ``"patch"`` (``"patch"`` needs a pool).
        n_subsample: Patches averaged per slide embedding (``None`` with no
            pool: all real patches).
        patches_per_sample: Patch locations per specimen (patch granularity).
        batch_size: Slides per ScanGen batch drawn from the pool.
        scanners_per_specimen: Scanners per specimen in a drawn batch.
        split: Split(s) of a store/path pool.
        scanners: Scanners of the pool to use.
        cache: Keep the pool in memory.
        cache_device: Device of that cache (``None``: the training device).
        embed: Attribute path of ``g`` on the module (e.g. ``"model.embed"``);
            ``None``: the module's ``embed`` (or that of its ``model``/``mil``
            attribute).
        features_key: Batch key of the ``(B, N, D)`` features (no pool).
        mask_key: Batch key of the ``(B, N)`` mask (no pool; optional entry).
        specimen_key: Batch key of the specimen ids (no pool).
        scanner_key: Batch key of the scanner ids (no pool).
        seed: Seed of the draws (combined with ``trainer.global_rank``).
        log_prefix: Prefix of the logged names.
        log_kwargs: Extra keyword arguments of ``pl_module.log``.

    Raises:
        ValueError: On invalid options.

    Examples:
        >>> cb = ScanGenCallback(lam=0.5, alpha=0.3)
        >>> cb.lam, cb.loss.alpha
        (0.5, 0.3)

    """

    def __init__(
        self,
        pool: Any = None,
        lam: float = 1.0,
        alpha: float = 0.5,
        margin: float = 0.5,
        *,
        squared: bool = True,
        granularity: str = "slide",
        n_subsample: int | None = 32,
        patches_per_sample: int = 4,
        batch_size: int = 16,
        scanners_per_specimen: int = 2,
        split: str | Iterable[str] | None = None,
        scanners: str | Iterable[str] | None = None,
        cache: bool = True,
        cache_device: torch.device | str | None = None,
        embed: str | None = None,
        features_key: str = "features",
        mask_key: str = "mask",
        specimen_key: str = "specimen_id",
        scanner_key: str = "scanner",
        seed: int = 0,
        log_prefix: str = "scangen/",
        log_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.lam = _check_lam(lam)
        check_in_choices(granularity, GRANULARITIES, "granularity")
        self.loss = ScanGenLoss(alpha, margin, squared=squared, granularity=granularity)
        if pool is None and granularity == "patch":
            msg = "granularity='patch' needs a pool of registered scans (pool=...)."
            raise ValueError(msg)
        if n_subsample is not None and (
            isinstance(n_subsample, bool) or not isinstance(n_subsample, int) or n_subsample < 1
        ):
            msg = f"n_subsample must be a positive int or None, got {n_subsample!r}."
            raise ValueError(msg)
        if pool is not None and n_subsample is None:
            msg = "n_subsample must be a positive int when a pool is given."
            raise ValueError(msg)
        self.pool = pool  # whatever ScanGenHook accepts
        self.n_subsample = n_subsample
        self._hook_kwargs = {
            "alpha": alpha,
            "margin": margin,
            "squared": squared,
            "granularity": granularity,
            "n_subsample": n_subsample,
            "patches_per_sample": patches_per_sample,
            "batch_size": batch_size,
            "scanners_per_specimen": scanners_per_specimen,
            "split": split,
            "scanners": scanners,
            "cache": cache,
            "cache_device": cache_device,
        }
        self.embed = embed
        self.keys = {
            "features": features_key,
            "mask": mask_key,
            "specimen": specimen_key,
            "scanner": scanner_key,
        }
        self.seed = _check_seed(seed)
        self.log_prefix = log_prefix
        self.log_kwargs = dict(log_kwargs or {})
        self.hook: Any = None  # the ScanGenHook drawing from the pool, built at setup
        self._generator: torch.Generator | None = None  # subsets of batch-mode slides
        self._rank: int | None = None
        self._pending_state: dict[str, Any] | None = None

    def __repr__(self) -> str:
        source = "batch" if self.pool is None else type(self.pool).__name__
        return f"ScanGenCallback(lam={self.lam}, {self.loss.extra_repr()}, source={source})"

    # ------------------------------------------------------------------ generators
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Seed the draws from ``(seed, trainer.global_rank)`` and wrap ``training_step``."""
        super().setup(trainer, pl_module, stage)
        if stage != "fit":
            return
        self._init_generators(trainer.global_rank)

    def _init_generators(self, rank: int) -> None:
        if self._rank == rank and (self.hook is not None or self._generator is not None):
            return
        self._rank = rank
        seed = derive_seed(self.seed, _SCANGEN_SALT, rank)
        if self.pool is not None:
            from tia_scanner_robust.training.scangen import ScanGenHook  # noqa: PLC0415

            self.hook = ScanGenHook(self.pool, lam=self.lam, seed=seed, **self._hook_kwargs)
        else:
            self._generator = torch.Generator().manual_seed(seed)
        if self._pending_state is not None:
            state, self._pending_state = self._pending_state, None
            self.load_state_dict(state)

    def state_dict(self) -> dict[str, Any]:
        """Generator states (saved in Lightning checkpoints)."""
        if self.hook is not None:
            return {"rank": self._rank, "hook": self.hook.state_dict()}
        if self._generator is not None:
            return {"rank": self._rank, "generator": self._generator.get_state()}
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (kept until :meth:`setup` if not set up yet)."""
        if not state_dict:
            return
        if self.hook is None and self._generator is None:
            self._pending_state = dict(state_dict)
            return
        if state_dict.get("rank") != self._rank:
            return  # another rank's state (resumed with another world size): keep this rank's seed
        if self.hook is not None and "hook" in state_dict:
            self.hook.load_state_dict(state_dict["hook"])
        elif self._generator is not None and "generator" in state_dict:
            self._generator.set_state(state_dict["generator"])

    # ------------------------------------------------------------------ the term
    def _embed_fn(self, pl_module: Any) -> Callable[[torch.Tensor], torch.Tensor]:
        if self.embed is None:
            from tia_scanner_robust.training.scangen import find_embed  # noqa: PLC0415

            return find_embed(pl_module)
        current = pl_module
        for part in self.embed.split("."):
            if not hasattr(current, part):
                msg = (
                    f"ScanGenCallback: embed={self.embed!r}: {type(current).__name__} has no "
                    f"attribute {part!r}."
                )
                raise AttributeError(msg)
            current = getattr(current, part)
        if not callable(current):
            msg = f"ScanGenCallback: embed={self.embed!r} is not callable."
            raise TypeError(msg)
        return current

    def _batch_term(
        self, pl_module: Any, batch: Any
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
        if not isinstance(batch, Mapping):
            msg = (
                "ScanGenCallback without a pool needs mapping batches with "
                f"{sorted(self.keys.values())}; got {type(batch).__name__}."
            )
            raise TypeError(msg)
        missing = [
            self.keys[k] for k in ("features", "specimen", "scanner") if self.keys[k] not in batch
        ]
        if missing:
            msg = f"ScanGenCallback: the batch has no {missing} entries; keys: {sorted(batch)}."
            raise KeyError(msg)
        features = batch[self.keys["features"]]
        mask = check_bags(features, batch.get(self.keys["mask"]))
        if self._generator is None:
            self._init_generators(pl_module.trainer.global_rank)
        embed = self._embed_fn(pl_module)
        if self.n_subsample is not None:  # project only the kept patches
            features, mask = subsample_bags(features, mask, self.n_subsample, self._generator)
        z = slide_embeddings(embed(features), mask)
        loss, stats = self.loss.loss_and_stat_tensors(
            z, batch[self.keys["specimen"]], batch[self.keys["scanner"]]
        )
        return loss, stats, int(features.shape[0])

    def loss_term(
        self,
        pl_module: pl.LightningModule,
        batch: Any,
        batch_idx: int,
        outputs: Any = None,
    ) -> torch.Tensor:
        """``lam * L_ScanGen`` for one step; logs the value and its stats.

        Returns:
            The weighted 0-d term (a zero tensor when ``lam == 0``).

        """
        del batch_idx, outputs
        if self.lam == 0:
            return torch.zeros((), device=pl_module.device)
        if self.pool is not None:
            if self.hook is None:
                self._init_generators(pl_module.trainer.global_rank)
            embed = self._embed_fn(pl_module)
            term, stats = self.hook.scangen_term_tensors(_Embedder(embed), pl_module.device)
            size = self.hook.sampler.batch_size
        else:
            term, stats, size = self._batch_term(pl_module, batch)
        weighted = self.lam * term
        self._log(pl_module, "unweighted", term, size)
        self._log(pl_module, "weighted", weighted, size)
        means = ("mean_attract_distance", "mean_repel_distance", "active_repel_fraction")
        finite = torch.stack([stats[k] for k in means]).isfinite().tolist()  # one read-back
        for name, value in stats.items():
            if name == "loss" or (name in means and not finite[means.index(name)]):
                continue
            self._log(pl_module, name, value, size)
        return weighted


class _Embedder:
    """Gives :meth:`ScanGenHook.scangen_term_tensors` the projection ``g`` as ``embed``."""

    def __init__(self, embed: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.embed = embed


def _is_albumentations(obj: object) -> bool:
    return type(obj).__module__.split(".")[0] == "albumentations" or hasattr(
        obj, "set_random_state"
    )


def _accepts_keyword(fn: Callable[..., Any], name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params
