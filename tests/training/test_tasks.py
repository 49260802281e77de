"""Task adapters: the built-in ones by name, a custom adapter through the same trainer loop."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import torch
from torch import nn

from tia_scanner_robust.training.tasks import (
    ClassificationTask,
    SegmentationTask,
    TrainingTask,
    ValidationMetrics,
    create_task,
)
from tia_scanner_robust.training.trainer import Trainer

if TYPE_CHECKING:
    from pathlib import Path

    from tia_scanner_robust.training.config import TrainerConfig
    from tia_scanner_robust.training.distributed import DistributedContext


class MeanAbsoluteError(ValidationMetrics):
    def __init__(self, device: torch.device) -> None:
        self.total = torch.zeros((), dtype=torch.float64, device=device)
        self.count = torch.zeros((), dtype=torch.float64, device=device)
        self.batches = 0

    def update(self, outputs: Any, targets: torch.Tensor, batch: dict[str, Any]) -> None:
        self.total += (outputs.squeeze(1) - targets).abs().sum().double()
        self.count += targets.numel()
        self.batches += 1

    def compute(self, context: DistributedContext) -> dict[str, float]:
        context.all_reduce(self.total)
        context.all_reduce(self.count)
        return {"val_mae": float(self.total / self.count), "val_batches": float(self.batches)}


class RegressionTask(TrainingTask):
    """Float targets, MSE, mean absolute error: a task the config does not know."""

    def prepare_targets(
        self, batch: dict[str, Any], *, config: TrainerConfig, device: torch.device
    ) -> torch.Tensor:
        return torch.as_tensor(batch[config.target_key]).float().to(device)

    def supervised_loss(
        self, outputs: Any, targets: torch.Tensor, *, config: TrainerConfig
    ) -> torch.Tensor:
        return nn.functional.mse_loss(outputs.squeeze(1), targets)

    def validation_metrics(
        self, *, config: TrainerConfig, device: torch.device
    ) -> ValidationMetrics:
        return MeanAbsoluteError(device)


def items(n: int) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g)
    return [{"image": x[i], "label": 2.0 * x[i, 0] - x[i, 1]} for i in range(n)]


def test_builtin_tasks_by_name() -> None:
    assert isinstance(create_task("segmentation"), SegmentationTask)
    assert isinstance(create_task("classification"), ClassificationTask)
    with pytest.raises(ValueError, match="Unknown training task 'regression'; valid values"):
        create_task("regression")


def test_custom_task_adapter_trains_and_validates_in_one_pass(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    config = {
        "epochs": 3,
        "batch_size": 4,
        "val_batch_size": 5,
        "lr": 0.05,
        "task": "classification",
        "monitor": "val_mae",
        "mode": "min",
        "progress": False,
        "device": "cpu",
        "output_dir": str(tmp_path / "run"),
    }
    trainer = Trainer(model, items(16), items(10), config=config, task=RegressionTask())
    result = trainer.fit()
    losses = [record["val_loss"] for record in result.history]
    assert losses[-1] < losses[0]  # the custom loss is the one being minimised
    val = items(10)
    with torch.no_grad():
        pred = model(torch.stack([item["image"] for item in val])).squeeze(1)
    target = torch.stack([item["label"] for item in val])
    assert result.history[-1]["val_mae"] == pytest.approx(float((pred - target).abs().mean()))
    assert result.history[-1]["val_loss"] == pytest.approx(float(((pred - target) ** 2).mean()))
    assert all(record["val_batches"] == 2 for record in result.history)  # 10 items / 5
    assert result.best_checkpoint is not None
    assert set(result.history[0]) >= {"val_loss", "val_mae", "train_loss", "train_supervised"}


def test_task_must_be_an_adapter(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="TrainingTask adapter"):
        Trainer(
            nn.Linear(3, 1),
            items(4),
            config={"batch_size": 2, "progress": False, "output_dir": str(tmp_path)},
            task="regression",  # type: ignore[arg-type]
        )
