"""The trainer's checkpoint files: format tag, atomic writes, checked reads.

Two kinds of files, both plain dicts of tensors, numbers and strings that
load with ``torch.load(weights_only=True)`` and carry ``"format":``
:data:`TRAINER_CHECKPOINT_FORMAT`:

- ``last.pt`` (and ``step_XXXXXXXX.pt``): the full resumable state
  (:meth:`~tia_scanner_robust.training.trainer.Trainer.state_dict`: model,
  optimiser, scheduler, AMP scaler, counters, hook states, every RNG state);
- ``best.pt``: the weights of the best epoch (:func:`best_weights`), with
  the model's ``config`` when it has one so the model can be rebuilt.

Examples:
    >>> import tempfile, torch
    >>> path = tempfile.mkdtemp() + "/best.pt"
    >>> model = torch.nn.Linear(2, 1)
    >>> payload = best_weights(model, epoch=0, global_step=3, monitor="val_loss", best_metric=0.5)
    >>> _ = write_checkpoint(payload, path)
    >>> torch.load(path, weights_only=True)["format"] == TRAINER_CHECKPOINT_FORMAT
    True
    >>> read_resumable_checkpoint(path)
    Traceback (most recent call last):
    ...
    ValueError: ... is not a resumable tia_scanner_robust trainer checkpoint (last.pt).

"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from tia_scanner_robust._io import atomic_open
from tia_scanner_robust._validation import safe_torch_load, state_dict_mismatch

if TYPE_CHECKING:
    from collections.abc import Sequence

    from torch import nn

    from tia_scanner_robust.training.hooks import Hook

__all__ = [
    "TRAINER_CHECKPOINT_FORMAT",
    "TRAJECTORY_FIELDS",
    "best_weights",
    "changed_trajectory_fields",
    "model_config_of",
    "read_resumable_checkpoint",
    "restore_hook_states",
    "write_checkpoint",
]

logger = logging.getLogger(__name__)

#: Format tag of the trainer's checkpoints (``last.pt``, step checkpoints, ``best.pt``).
TRAINER_CHECKPOINT_FORMAT = "tia_scanner_robust.trainer/1"

#: Config fields whose change between a checkpoint and a resumed run alters the trajectory.
TRAJECTORY_FIELDS: tuple[str, ...] = (
    "epochs",
    "max_steps",
    "batch_size",
    "drop_last",
    "optimizer",
    "lr",
    "weight_decay",
    "momentum",
    "scheduler",
    "min_lr",
    "step_epochs",
    "gamma",
    "grad_clip_norm",
    "task",
    "seed",
)


def model_config_of(model: nn.Module) -> dict[str, Any] | None:
    """The model's ``config`` attribute when it is a dict (stored to rebuild the model).

    Examples:
        >>> import torch
        >>> model_config_of(torch.nn.Linear(2, 1)) is None
        True

    """
    config = getattr(model, "config", None)
    return config if isinstance(config, dict) else None


def best_weights(
    model: nn.Module,
    *,
    epoch: int,
    global_step: int,
    monitor: str,
    best_metric: float | None,
) -> dict[str, Any]:
    """The ``best.pt`` payload: weights, model config, epoch, step and monitored value."""
    return {
        "format": TRAINER_CHECKPOINT_FORMAT,
        "model": model.state_dict(),
        "model_config": model_config_of(model),
        "epoch": epoch,
        "global_step": global_step,
        "monitor": monitor,
        "best_metric": best_metric,
    }


def write_checkpoint(payload: dict[str, Any], path: str | Path) -> Path:
    """``torch.save`` ``payload`` to ``path`` atomically (a crash leaves the old file)."""
    path = Path(path)
    with atomic_open(path, "wb") as handle:
        torch.save(payload, handle)
    return path


def read_resumable_checkpoint(path: str | Path, model: nn.Module | None = None) -> dict[str, Any]:
    """Load a resumable trainer checkpoint (``weights_only=True``) and check its format.

    Args:
        path: The checkpoint (``last.pt``).
        model: When given, the checkpoint's weights must fit it (same
            parameter names and shapes).

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If it is not a resumable trainer checkpoint (a pickled or
            foreign file included), or its weights do not fit ``model``; one
            line naming the file.

    """
    path = Path(path)
    if not path.is_file():
        msg = f"Checkpoint file not found: {path}"
        raise FileNotFoundError(msg)
    state = safe_torch_load(
        path, what="checkpoint", expected="a resumable tia_scanner_robust trainer checkpoint"
    )
    if (
        not isinstance(state, dict)
        or state.get("format") != TRAINER_CHECKPOINT_FORMAT
        or "optimizer" not in state
    ):
        msg = f"{path} is not a resumable tia_scanner_robust trainer checkpoint (last.pt)."
        raise ValueError(msg)
    if model is not None:
        summary = state_dict_mismatch(model.state_dict(), state.get("model") or {})
        if summary:
            msg = (
                f"Checkpoint {path} does not fit this run's {type(model).__name__}: {summary}. "
                "It was written by a run with another architecture or model configuration."
            )
            raise ValueError(msg)
    return state


def changed_trajectory_fields(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The :data:`TRAJECTORY_FIELDS` whose value differs between two config dicts.

    Examples:
        >>> changed_trajectory_fields({"lr": 0.1, "seed": 0}, {"lr": 0.2, "seed": 0})
        ['lr']

    """
    return [k for k in TRAJECTORY_FIELDS if k in saved and saved[k] != current.get(k)]


def restore_hook_states(
    hooks: Sequence[Hook], keys: Sequence[str], states: dict[str, Any], path: str | Path
) -> None:
    """Load each hook's saved state; warn about hooks without state and states without hook.

    Args:
        hooks: The trainer's hooks.
        keys: Their state keys (:func:`~tia_scanner_robust.training.hooks.hook_state_keys`).
        states: The checkpoint's ``"hooks"`` entry.
        path: The checkpoint (named in the warnings).

    """
    remaining = dict(states)
    for key, hook in zip(keys, hooks, strict=True):
        if key in remaining:
            hook.load_state_dict(remaining.pop(key))
        elif hook.state_dict():
            logger.warning("No state for hook %r in %s; it starts fresh.", key, path)
    remaining = {k: v for k, v in remaining.items() if v}
    if remaining:
        logger.warning(
            "Checkpoint %s holds state of hooks not in use: %s.", path, sorted(remaining)
        )
