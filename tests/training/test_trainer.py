"""Trainer loops, losses, logs, best checkpoint, configs and the folder dataset."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from tia_scanner_robust.training.hooks import Hook
from tia_scanner_robust.training.trainer import Trainer

if TYPE_CHECKING:
    from pathlib import Path


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class TinySeg(nn.Module):
    def __init__(self, classes: int = 2) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def tissue_items(tiles: list[np.ndarray], size: int = 16) -> list[dict]:
    """Real H&E crops with a learnable mask (dark = tissue)."""
    items = []
    for tile in tiles:
        crop = np.ascontiguousarray(tile[:size, :size])
        items.append({"image": crop, "mask": (crop.mean(-1) < 180).astype(np.int64)})
    return items


def cfg(tmp_path: Path, **kw: object) -> dict:
    base = {
        "batch_size": 4,
        "progress": False,
        "output_dir": str(tmp_path / "run"),
        "epochs": 2,
        "device": "cpu",
    }
    base.update(kw)
    return base


def test_fit_learns_logs_and_selects_best(tmp_path: Path, he_tiles: list[np.ndarray]) -> None:
    torch.manual_seed(0)
    items = tissue_items(he_tiles)
    trainer = Trainer(
        TinySeg(),
        items[:12],
        items[12:],
        config=cfg(tmp_path, epochs=4, lr=0.05, log_every_n_steps=1),
    )
    before = trainer.validate()
    result = trainer.fit()
    history = result.history
    assert result.global_step == 4 * 3
    assert [r["epoch"] for r in history] == [0, 1, 2, 3]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_dice"] > before["val_dice"]
    # Best epoch = argmax of the monitored metric; best.pt holds that epoch's weights.
    dices = [r["val_dice"] for r in history]
    assert result.best_epoch == int(np.argmax(dices))
    assert result.best_metric == pytest.approx(max(dices))
    best = torch.load(result.best_checkpoint, weights_only=True)
    assert best["epoch"] == result.best_epoch
    # Logs: one JSONL line and one CSV row per epoch, a step line per step.
    run = tmp_path / "run"
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["val_dice"] for line in lines] == pytest.approx(dices)
    csv_lines = (run / "metrics.csv").read_text().splitlines()
    header = csv_lines[0].split(",")
    assert {"epoch", "train_loss", "train_supervised", "val_loss", "val_dice", "lr"} <= set(header)
    assert len(csv_lines) == 5
    steps = [json.loads(line) for line in (run / "steps.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == list(range(1, 13))
    assert json.loads((run / "config.json").read_text())["lr"] == 0.05


def test_val_dice_matches_reference(tmp_path: Path, he_tiles: list[np.ndarray]) -> None:
    items = tissue_items(he_tiles[:6])
    model = TinySeg()
    trainer = Trainer(model, items, items, config=cfg(tmp_path, batch_size=4))
    metrics = trainer.validate()
    x = trainer.prepare_inputs({"image": np.stack([i["image"] for i in items])})
    pred = model(x).argmax(1).numpy()
    target = np.stack([i["mask"] for i in items])
    inter = np.logical_and(pred == 1, target == 1).sum()
    expected = 2 * inter / ((pred == 1).sum() + (target == 1).sum())
    assert metrics["val_dice"] == pytest.approx(expected)
    assert metrics["val_dice_1"] == pytest.approx(expected)


def test_prepare_inputs_normalises_nhwc_uint8(tmp_path: Path) -> None:
    data = [{"image": np.zeros((4, 4, 3), np.uint8), "mask": np.zeros((4, 4), np.int64)}] * 2
    trainer = Trainer(TinySeg(), data, config=cfg(tmp_path, batch_size=2))
    image = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    x = trainer.prepare_inputs({"image": torch.from_numpy(image)})
    mean = np.array([0.485, 0.456, 0.406])
    std = np.array([0.229, 0.224, 0.225])
    expected = ((image / 255.0 - mean) / std).transpose(0, 3, 1, 2)
    assert x.shape == (2, 3, 4, 4)
    np.testing.assert_allclose(x.numpy(), expected, atol=1e-6)
    ready = torch.randn(2, 3, 4, 4)
    assert torch.equal(trainer.prepare_inputs({"image": ready}), ready)
    with pytest.raises(KeyError, match="image_key"):
        trainer.prepare_inputs({"img": ready})
    with pytest.raises(ValueError, match="channels last"):
        trainer.prepare_inputs({"image": torch.zeros(2, 3, 4, 4, dtype=torch.uint8)})


def test_supervised_mask_and_custom_loss_terms(tmp_path: Path) -> None:
    data = [{"image": np.zeros((4, 4, 3), np.uint8), "mask": np.zeros((4, 4), np.int64)}] * 2

    def loss_fn(outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"rows": outputs.new_tensor(float(outputs.shape[0])), "ce": outputs.mean() * 0}

    trainer = Trainer(TinySeg(), data, config=cfg(tmp_path, batch_size=2), loss_fn=loss_fn)
    outputs = torch.zeros(3, 2, 4, 4)
    batch = {"mask": torch.zeros(3, 4, 4, dtype=torch.long)}
    assert trainer.compute_loss(outputs, batch)["rows"].item() == 3
    batch["supervised_mask"] = torch.tensor([True, False, True])
    assert trainer.compute_loss(outputs, batch)["rows"].item() == 2
    total, losses = trainer.compute_losses(
        {"image": torch.zeros(2, 4, 4, 3, dtype=torch.uint8), "mask": torch.zeros(2, 4, 4)}
    )
    assert set(losses) == {"rows", "ce"}
    assert total.item() == 2.0


def test_hooks_called_in_order_and_metrics_added(tmp_path: Path) -> None:
    calls: list[str] = []

    class Recorder(Hook):
        def on_fit_start(self, trainer):
            calls.append("fit_start")

        def on_epoch_start(self, trainer, epoch):
            calls.append(f"epoch_start{epoch}")

        def on_batch_start(self, trainer, batch):
            calls.append("batch")
            return batch

        def on_forward(self, trainer, batch, outputs):
            calls.append("forward")
            return outputs

        def on_loss(self, trainer, batch, outputs, losses):
            calls.append("loss")
            return {**losses, "extra": outputs.new_tensor(0.5)}

        def on_after_backward(self, trainer):
            grads = [p.grad for p in trainer.model.parameters()]
            calls.append("backward" if all(g is not None for g in grads) else "nograd")

        def on_validation_end(self, trainer, metrics):
            calls.append("val_end")
            return {**metrics, "val_custom": 7.0}

        def on_epoch_end(self, trainer, epoch, metrics):
            calls.append(f"epoch_end{epoch}")

        def on_fit_end(self, trainer):
            calls.append("fit_end")

    data = [{"image": np.zeros((4, 4, 3), np.uint8), "mask": np.zeros((4, 4), np.int64)}] * 2
    trainer = Trainer(
        TinySeg(), data, data, config=cfg(tmp_path, batch_size=2, epochs=1), hooks=[Recorder()]
    )
    result = trainer.fit()
    assert calls == [
        "fit_start",
        "epoch_start0",
        "batch",
        "forward",
        "loss",
        "backward",
        "val_end",
        "epoch_end0",
        "fit_end",
    ]
    record = result.history[0]
    assert record["train_extra"] == 0.5
    assert record["train_loss"] == pytest.approx(record["train_supervised"] + 0.5)
    assert record["val_custom"] == 7.0


def test_logged_tensors_are_read_back_once_per_step(tmp_path: Path) -> None:
    """log_scalar keeps tensors; train_step reads the step's values back in one transfer."""

    class Logger(Hook):
        def on_loss(self, trainer, batch, outputs, losses):
            trainer.log_scalar("mean_logit", outputs.mean())
            trainer.log_scalar("count", torch.tensor(7))
            trainer.log_scalar("nan_kept", torch.tensor(float("nan")))
            trainer.log_scalar("nan_dropped", torch.tensor(float("nan")), finite_only=True)
            trainer.log_scalar("finite", torch.tensor(2.5), finite_only=True)
            trainer.log_scalar("number", 3)
            assert isinstance(trainer._step_scalars["count"], torch.Tensor)  # not read yet
            return losses

        def on_after_backward(self, trainer):
            trainer.log_scalar("late", torch.tensor(1.5))

    class ReadBacks(TorchDispatchMode):
        count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten._local_scalar_dense.default:
                type(self).count += 1
            return func(*args, **(kwargs or {}))

    data = [{"image": np.zeros((4, 4, 3), np.uint8), "mask": np.zeros((4, 4), np.int64)}] * 2
    batch = {"image": torch.zeros(2, 4, 4, 3, dtype=torch.uint8), "mask": torch.zeros(2, 4, 4)}
    tolist = torch.Tensor.tolist
    counts = []
    for hooks in ([], [Logger()]):
        trainer = Trainer(
            TinySeg(), data, config=cfg(tmp_path, batch_size=2, optimizer="sgd"), hooks=hooks
        )
        calls = {"n": 0}

        def counting_tolist(tensor: torch.Tensor, calls: dict = calls) -> list:
            calls["n"] += 1
            return tolist(tensor)

        ReadBacks.count = 0
        with pytest.MonkeyPatch.context() as mp, ReadBacks():
            mp.setattr(torch.Tensor, "tolist", counting_tolist)
            logged = trainer.train_step(dict(batch))
        counts.append((calls["n"], ReadBacks.count))
    # no hook: one tolist for loss + terms; with the hook: the same plus one for the
    # scalar logged after backward, and no per-value item()/float() for the others
    assert counts[0][0] == 1
    assert counts[1] == (2, counts[0][1])
    assert list(logged)[:2] == ["loss", "supervised"]
    assert logged["loss"] == logged["supervised"]
    assert logged["count"] == 7.0
    assert logged["number"] == 3.0
    assert logged["finite"] == 2.5
    assert logged["late"] == 1.5
    assert math.isnan(logged["nan_kept"])
    assert "nan_dropped" not in logged
    assert all(type(v) is float for v in logged.values())


def test_schedules_and_gradient_clipping(tmp_path: Path) -> None:
    data = [{"image": np.full((4, 4, 3), 200, np.uint8), "mask": np.ones((4, 4), np.int64)}] * 4
    cosine = Trainer(
        TinySeg(), data, config=cfg(tmp_path, batch_size=2, scheduler="cosine", min_lr=1e-4)
    )
    cosine.fit()
    assert cosine.optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)
    step = Trainer(
        TinySeg(),
        data,
        config=cfg(tmp_path, batch_size=2, scheduler="step", step_epochs=1, gamma=0.5, lr=0.1),
    )
    step.fit()
    assert step.optimizer.param_groups[0]["lr"] == pytest.approx(0.025)
    # SGD without momentum: the update equals lr * clipped gradient (norm <= clip).
    model = TinySeg()
    before = torch.cat([p.detach().flatten() for p in model.parameters()])
    clip = Trainer(
        model,
        data,
        config=cfg(
            tmp_path,
            batch_size=4,
            epochs=1,
            optimizer="sgd",
            momentum=0.0,
            lr=1.0,
            grad_clip_norm=1e-3,
        ),
    )
    clip.fit()
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert torch.linalg.vector_norm(after - before).item() == pytest.approx(1e-3, rel=1e-3)


def test_max_steps_and_stop_at_step(tmp_path: Path) -> None:
    data = [{"image": np.zeros((4, 4, 3), np.uint8), "mask": np.zeros((4, 4), np.int64)}] * 8
    trainer = Trainer(TinySeg(), data, config=cfg(tmp_path, batch_size=2, epochs=5, max_steps=6))
    result = trainer.fit()
    assert result.global_step == 6
    assert result.epochs_completed == 2  # epoch 1 ends early at step 6
    other = Trainer(TinySeg(), data, config=cfg(tmp_path / "b", batch_size=2, epochs=5))
    stopped = other.fit(stop_at_step=3)
    assert stopped.stopped_early
    assert stopped.global_step == 3
    assert torch.load(stopped.last_checkpoint, weights_only=True)["global_step"] == 3


def test_trainer_errors(tmp_path: Path) -> None:
    data = [{"image": np.zeros((4, 4, 3), np.uint8), "mask": np.zeros((4, 4), np.int64)}] * 2
    with pytest.raises(ValueError, match="fewer than one batch"):
        Trainer(TinySeg(), data, config=cfg(tmp_path, batch_size=4))
    with pytest.raises(TypeError, match="Hook"):
        Trainer(TinySeg(), data, config=cfg(tmp_path, batch_size=2), hooks=[object()])
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        Trainer(lambda x: x, data, config=cfg(tmp_path, batch_size=2))

    def nan_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return outputs.mean() * float("nan")

    trainer = Trainer(TinySeg(), data, config=cfg(tmp_path, batch_size=2), loss_fn=nan_loss)
    with pytest.raises(FloatingPointError, match="Non-finite loss"):
        trainer.fit()
    with pytest.raises(FileNotFoundError):
        trainer.load_checkpoint(tmp_path / "missing.pt")
