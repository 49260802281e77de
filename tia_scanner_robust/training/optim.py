"""Optimiser and learning-rate schedule of the trainer, built from a ``TrainerConfig``.

Examples:
    >>> import torch
    >>> from tia_scanner_robust.training.config import TrainerConfig
    >>> config = TrainerConfig(optimizer="sgd", scheduler="cosine", lr=0.1)
    >>> opt = build_optimizer(torch.nn.Linear(2, 1), config)
    >>> type(opt).__name__, opt.param_groups[0]["momentum"]
    ('SGD', 0.9)
    >>> sched = build_scheduler(opt, config, total_steps=10, steps_per_epoch=5)
    >>> type(sched).__name__
    'CosineAnnealingLR'

"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from torch import nn

    from tia_scanner_robust.training.config import TrainerConfig

__all__ = ["build_optimizer", "build_scheduler"]


def build_optimizer(model: nn.Module, config: TrainerConfig) -> torch.optim.Optimizer:
    """Adam, AdamW or SGD (``config.optimizer``) over the model's trainable parameters.

    Raises:
        ValueError: If the model has no trainable parameters.

    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        msg = "The model has no trainable parameters."
        raise ValueError(msg)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    config: TrainerConfig,
    *,
    total_steps: int,
    steps_per_epoch: int,
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The schedule of ``config.scheduler``, stepped once per optimiser step.

    ``"cosine"`` anneals to ``min_lr`` over ``total_steps``; ``"step"``
    multiplies by ``gamma`` every ``step_epochs`` epochs; ``"none"`` gives ``None``.
    """
    if config.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(1, total_steps), eta_min=config.min_lr
        )
    if config.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=config.step_epochs * steps_per_epoch, gamma=config.gamma
        )
    return None
