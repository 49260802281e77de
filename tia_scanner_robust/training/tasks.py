"""Task adapters: what the trainer's loop does differently per task.

The :class:`~tia_scanner_robust.training.trainer.Trainer` runs one loop for
every task; a small :class:`TrainingTask` object supplies the rest:

- :meth:`~TrainingTask.prepare_inputs` / :meth:`~TrainingTask.prepare_targets`:
  the model inputs and the targets of a batch, on the device;
- :meth:`~TrainingTask.supervised_loss`: the default supervised loss
  (``loss_fn=`` on the trainer replaces it);
- :meth:`~TrainingTask.validation_metrics`: an accumulator that sees every
  validation batch once (:meth:`ValidationMetrics.update`) and returns the
  task's metrics reduced over the ranks (:meth:`ValidationMetrics.compute`).

:class:`SegmentationTask` (CE + soft Dice, ``val_dice``) and
:class:`ClassificationTask` (CE, ``val_accuracy``) are the built-in tasks
named by ``TrainerConfig.task``; MIL training uses
:class:`~tia_scanner_robust.training.mil.MILTask` (bag inputs, ``val_auc``).
A new task is a new adapter, not a trainer subclass.

Examples:
    >>> import torch
    >>> task = create_task("classification")
    >>> from tia_scanner_robust.training.config import TrainerConfig
    >>> config = TrainerConfig(task="classification")
    >>> metrics = task.validation_metrics(config=config, device=torch.device("cpu"))
    >>> metrics.update(torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]), {})
    >>> from tia_scanner_robust.training.distributed import DistributedContext
    >>> metrics.compute(DistributedContext())
    {'val_accuracy': 0.5}

"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from tia_scanner_robust._validation import check_in_choices
from tia_scanner_robust.losses.functional import segmentation_loss

if TYPE_CHECKING:
    from tia_scanner_robust.training.config import TrainerConfig
    from tia_scanner_robust.training.distributed import DistributedContext

__all__ = [
    "TASK_ADAPTERS",
    "AccuracyMetrics",
    "ClassificationTask",
    "DiceMetrics",
    "SegmentationTask",
    "TrainingTask",
    "ValidationMetrics",
    "batch_entry",
    "create_task",
    "crop_targets_to",
    "logits_of",
]


def logits_of(outputs: Any) -> torch.Tensor:
    """The logits of a model output: the tensor itself or its ``"logits"`` entry.

    Raises:
        TypeError: If ``outputs`` is neither.

    Examples:
        >>> import torch
        >>> logits_of({"logits": torch.zeros(1, 2)}).shape
        torch.Size([1, 2])

    """
    if isinstance(outputs, torch.Tensor):
        return outputs
    if isinstance(outputs, dict) and isinstance(outputs.get("logits"), torch.Tensor):
        return outputs["logits"]
    msg = (
        "The default loss and metrics need the model to return a logits tensor or a dict with "
        f"a 'logits' tensor; got {type(outputs).__name__}. Pass loss_fn= or a task adapter (task=)."
    )
    raise TypeError(msg)


def crop_targets_to(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Centre-crop ``(B, H, W)`` targets to the ``(B, C, H', W')`` logits' size.

    A network with valid convolutions (TIAToolbox's ``UNetModel``) returns a
    map smaller than its input, centred on it; its loss and metrics compare
    it with the centre of the mask. Same-size targets are returned as they are.

    Raises:
        ValueError: If the logits are larger than the targets.

    Examples:
        >>> import torch
        >>> crop_targets_to(torch.zeros(1, 2, 2, 2), torch.arange(16).reshape(1, 4, 4)).tolist()
        [[[5, 6], [9, 10]]]

    """
    if logits.ndim != 4 or targets.ndim != 3 or logits.shape[-2:] == targets.shape[-2:]:
        return targets
    (h, w), (th, tw) = logits.shape[-2:], targets.shape[-2:]
    if h > th or w > tw:
        msg = (
            f"The model's output is {h} x {w} but the targets are {th} x {tw}: a segmentation "
            "model must return logits no larger than its input."
        )
        raise ValueError(msg)
    top, left = (th - h) // 2, (tw - w) // 2
    return targets[:, top : top + h, left : left + w]


def batch_entry(batch: dict[str, Any], key: str, option: str) -> Any:
    """``batch[key]``, or a ``KeyError`` naming the ``TrainerConfig`` option and the batch's keys.

    Examples:
        >>> batch_entry({"x": 1}, "image", "image_key")
        Traceback (most recent call last):
        ...
        KeyError: "Batch has no 'image' entry (TrainerConfig.image_key); keys: ['x']."

    """
    if key not in batch:
        msg = f"Batch has no {key!r} entry (TrainerConfig.{option}); keys: {sorted(batch)}."
        raise KeyError(msg)
    return batch[key]


def _valid_rows(targets: torch.Tensor, ignore_index: int | None) -> torch.Tensor:
    if ignore_index is None:
        return torch.ones_like(targets, dtype=torch.bool)
    return targets != ignore_index


class ValidationMetrics:
    """Accumulate a task's validation metrics over batches, then reduce over ranks.

    Subclasses implement :meth:`update` (called once per validation batch
    with the float outputs of the model in eval mode) and :meth:`compute`
    (called once, on every rank, after the last batch; it must run the same
    collectives on every rank, including ranks that saw no batch).
    """

    def update(self, outputs: Any, targets: torch.Tensor, batch: dict[str, Any]) -> None:
        """Add one batch (``batch`` is the collated batch, for extra keys)."""
        raise NotImplementedError

    def compute(self, context: DistributedContext) -> dict[str, float]:
        """The metrics over the whole validation set (all ranks)."""
        raise NotImplementedError


class DiceMetrics(ValidationMetrics):
    """Per-class TP / predicted / true pixel counts pooled over the validation set."""

    def __init__(self, config: TrainerConfig, device: torch.device) -> None:
        self.ignore_index = config.ignore_index
        self.include_background = config.dice_include_background
        self.device = device
        self.stats: torch.Tensor | None = None

    def update(self, outputs: Any, targets: torch.Tensor, batch: dict[str, Any]) -> None:  # noqa: ARG002 - protocol signature
        """Add the batch's per-class counts (pixels equal to ``ignore_index`` excluded)."""
        logits = logits_of(outputs)
        targets = crop_targets_to(logits, targets)
        pred = logits.argmax(dim=1)
        valid = _valid_rows(targets, self.ignore_index)
        c = logits.shape[1]
        t, p = targets[valid], pred[valid]
        batch_stats = torch.stack(
            [
                torch.bincount(t[p == t], minlength=c)[:c],
                torch.bincount(p, minlength=c)[:c],
                torch.bincount(t, minlength=c)[:c],
            ]
        ).double()
        self.stats = batch_stats if self.stats is None else self.stats + batch_stats

    def compute(self, context: DistributedContext) -> dict[str, float]:
        """``val_dice`` and ``val_dice_<c>`` from the counts summed over the ranks."""
        # A rank may get no validation item: agree on the class count first.
        n_classes = torch.tensor(
            [0 if self.stats is None else self.stats.shape[1]], device=self.device
        )
        context.all_reduce(n_classes, op="max")
        stats = self.stats
        if stats is None:
            stats = torch.zeros(3, int(n_classes.item()), dtype=torch.float64, device=self.device)
        context.all_reduce(stats)
        tp, pc, tc = stats[0], stats[1], stats[2]
        denom = pc + tc
        dice = torch.where(denom > 0, 2 * tp / denom.clamp_min(1), torch.nan)
        classes = dice if self.include_background or dice.numel() == 1 else dice[1:]
        present = classes[~torch.isnan(classes)]
        metrics = {"val_dice": float(present.mean()) if present.numel() else float("nan")}
        metrics.update({f"val_dice_{i}": float(v) for i, v in enumerate(dice.tolist())})
        return metrics


class AccuracyMetrics(ValidationMetrics):
    """Correct and counted predictions (targets equal to ``ignore_index`` excluded)."""

    def __init__(self, config: TrainerConfig, device: torch.device) -> None:
        self.ignore_index = config.ignore_index
        self.stats = torch.zeros(2, dtype=torch.float64, device=device)

    def update(self, outputs: Any, targets: torch.Tensor, batch: dict[str, Any]) -> None:  # noqa: ARG002 - protocol signature
        """Add the batch's correct and counted predictions."""
        pred = logits_of(outputs).argmax(dim=1)
        valid = _valid_rows(targets, self.ignore_index)
        self.stats = self.stats + torch.stack([(pred[valid] == targets[valid]).sum(), valid.sum()])

    def compute(self, context: DistributedContext) -> dict[str, float]:
        """``val_accuracy`` from the counts summed over the ranks."""
        stats = context.all_reduce(self.stats)
        return {"val_accuracy": float(stats[0] / stats[1].clamp_min(1))}


class TrainingTask:
    """Base task adapter: image inputs, long targets; subclasses add loss and metrics.

    Examples:
        >>> import torch
        >>> from tia_scanner_robust.training.config import TrainerConfig
        >>> batch = {"image": torch.zeros(1, 4, 4, 3, dtype=torch.uint8)}
        >>> x = SegmentationTask().prepare_inputs(
        ...     batch, config=TrainerConfig(), device=torch.device("cpu")
        ... )
        >>> tuple(x.shape), x.dtype
        ((1, 3, 4, 4), torch.float32)

    """

    #: The ``TrainerConfig.task`` name of a built-in adapter.
    name: ClassVar[str] = ""

    def prepare_inputs(
        self, batch: dict[str, Any], *, config: TrainerConfig, device: torch.device
    ) -> Any:
        """Move the batch's images to the device as model inputs.

        A uint8 ``(N, H, W, C)`` tensor/array is scaled to ``[0, 1]``,
        normalised with ``config.normalize_mean``/``normalize_std`` and
        permuted to ``(N, C, H, W)``. A floating tensor is taken as
        model-ready and only moved to the device.

        Raises:
            KeyError: If the batch lacks ``config.image_key``.
            ValueError: If a uint8 batch is not ``(N, H, W, C)`` with ``C``
                matching the normalisation statistics.

        """
        key = config.image_key
        x = batch_entry(batch, key, "image_key")
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(x)
        if not isinstance(x, torch.Tensor):
            msg = f"batch[{key!r}] must be a tensor or array, got {type(x).__name__}."
            raise TypeError(msg)
        x = x.to(device, non_blocking=True)
        if x.dtype != torch.uint8:
            return x.float()
        mean = torch.tensor(config.normalize_mean, device=device)
        std = torch.tensor(config.normalize_std, device=device)
        if x.ndim != 4 or x.shape[-1] != mean.numel():
            msg = (
                f"uint8 batch[{key!r}] must be (N, H, W, {mean.numel()}) (channels last), "
                f"got {tuple(x.shape)}."
            )
            raise ValueError(msg)
        x = (x.float() / 255.0 - mean) / std
        return x.permute(0, 3, 1, 2).contiguous()

    def prepare_targets(
        self, batch: dict[str, Any], *, config: TrainerConfig, device: torch.device
    ) -> torch.Tensor:
        """The batch's targets (``config.target_key``) as a long tensor on the device."""
        y = batch_entry(batch, str(config.target_key), "target_key")
        if isinstance(y, np.ndarray):
            y = torch.from_numpy(y)
        y = torch.as_tensor(y)
        return y.to(device, non_blocking=True).long()

    def supervised_loss(
        self, outputs: Any, targets: torch.Tensor, *, config: TrainerConfig
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """The default supervised loss of the task."""
        raise NotImplementedError

    def validation_metrics(
        self, *, config: TrainerConfig, device: torch.device
    ) -> ValidationMetrics:
        """A fresh accumulator of the task's validation metrics."""
        raise NotImplementedError


class SegmentationTask(TrainingTask):
    """Dense labels: CE + soft Dice; ``val_dice`` (pooled counts) and ``val_dice_<c>``.

    ``val_dice`` is, per class, ``2 TP / (P + T)`` with the counts pooled over
    the whole validation set (and the ranks), averaged over the classes with
    ``P + T > 0``, background excluded unless ``dice_include_background``.
    """

    name: ClassVar[str] = "segmentation"

    def supervised_loss(
        self, outputs: Any, targets: torch.Tensor, *, config: TrainerConfig
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """Cross-entropy + soft Dice (``ignore_index`` excluded; targets cropped to the logits)."""
        logits = logits_of(outputs)
        targets = crop_targets_to(logits, targets)
        return segmentation_loss(logits, targets, ignore_index=config.ignore_index)

    def validation_metrics(
        self, *, config: TrainerConfig, device: torch.device
    ) -> ValidationMetrics:
        """Pooled per-class Dice counts."""
        return DiceMetrics(config, device)


class ClassificationTask(TrainingTask):
    """One label per item: cross-entropy; ``val_accuracy``."""

    name: ClassVar[str] = "classification"

    def supervised_loss(
        self, outputs: Any, targets: torch.Tensor, *, config: TrainerConfig
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """Cross-entropy (``ignore_index`` excluded)."""
        ignore = -100 if config.ignore_index is None else config.ignore_index
        return F.cross_entropy(logits_of(outputs), targets, ignore_index=ignore)

    def validation_metrics(
        self, *, config: TrainerConfig, device: torch.device
    ) -> ValidationMetrics:
        """Accuracy counts."""
        return AccuracyMetrics(config, device)


#: The built-in adapters by ``TrainerConfig.task`` name.
TASK_ADAPTERS: dict[str, type[TrainingTask]] = {
    SegmentationTask.name: SegmentationTask,
    ClassificationTask.name: ClassificationTask,
}


def create_task(name: str) -> TrainingTask:
    """The built-in task adapter named by ``TrainerConfig.task``.

    Raises:
        ValueError: On an unknown name (the message lists the valid ones).

    Examples:
        >>> type(create_task("segmentation")).__name__
        'SegmentationTask'

    """
    return TASK_ADAPTERS[check_in_choices(name, TASK_ADAPTERS, "training task")]()
