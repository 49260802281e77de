"""What :meth:`~tia_scanner_robust.training.trainer.Trainer.fit` returns, and output helpers.

Examples:
    >>> r = FitResult("val_dice", 0.5, 1, 10, 2, False, None, None)
    >>> r.global_step, r.history
    (10, [])

"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["FitResult", "select_rows", "to_float_outputs"]


@dataclass
class FitResult:
    """What :meth:`~tia_scanner_robust.training.trainer.Trainer.fit` returns.

    Attributes:
        monitor: The monitored metric name.
        best_metric: Its best value (``None`` if never computed).
        best_epoch: The 0-based epoch of the best value (with
            ``val_every_steps``, the epoch during which it was measured).
        global_step: Optimiser steps done.
        epochs_completed: Epochs finished.
        stopped_early: ``True`` when ``stop_at_step`` ended the run.
        last_checkpoint: Path of ``last.pt`` (resumable state).
        best_checkpoint: Path of ``best.pt`` (weights of the best epoch), if written.
        history: One metrics dict per validation (per epoch, or every
            ``val_every_steps`` steps).

    """

    monitor: str
    best_metric: float | None
    best_epoch: int | None
    global_step: int
    epochs_completed: int
    stopped_early: bool
    last_checkpoint: Path | None
    best_checkpoint: Path | None
    history: list[dict[str, Any]] = field(default_factory=list)


def to_float_outputs(outputs: Any) -> Any:
    """Floating tensors of model outputs (nested dicts/lists too) cast to float32."""
    if isinstance(outputs, torch.Tensor):
        return outputs.float() if outputs.is_floating_point() else outputs
    if isinstance(outputs, dict):
        return {k: to_float_outputs(v) for k, v in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(to_float_outputs(v) for v in outputs)
    return outputs


def select_rows(value: Any, rows: torch.Tensor) -> Any:
    """The rows ``rows`` (a bool mask) of every batch-sized tensor in ``value``."""
    if isinstance(value, torch.Tensor) and value.ndim and value.shape[0] == rows.shape[0]:
        return value[rows.to(value.device)]
    if isinstance(value, dict):
        return {k: select_rows(v, rows) for k, v in value.items()}
    return value
