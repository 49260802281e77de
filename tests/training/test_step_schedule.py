"""Step schedules (``max_steps``, ``val_every_steps``, ``checkpoint_every_steps``); threads."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from tia_scanner_robust.cli import main
from tia_scanner_robust.training.config import TrainerConfig
from tia_scanner_robust.training.configs import load_experiment_config
from tia_scanner_robust.training.hooks import Hook
from tia_scanner_robust.training.resources import default_threads, set_threads
from tia_scanner_robust.training.trainer import Trainer

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _data(n: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    items = []
    for _ in range(n):
        image = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        items.append({"image": image, "mask": (image[..., 0] > 127).astype(np.int64)})
    return items


class Crash(Hook):
    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_batch_start(self, trainer: Any, batch: dict[str, Any]) -> dict[str, Any]:
        if trainer.global_step == self.at_step:
            msg = "simulated crash"
            raise RuntimeError(msg)
        return batch


def _trainer(out: Path, hooks: tuple[Hook, ...] = (), model_seed: int = 0, **cfg: Any) -> Trainer:
    torch.manual_seed(model_seed)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 1)
    )
    config = {
        "batch_size": 2,
        "lr": 0.05,
        "scheduler": "cosine",
        "progress": False,
        "device": "cpu",
        "output_dir": str(out),
        "log_every_n_steps": 1,
        "seed": 3,
        **cfg,
    }
    return Trainer(model, _data(6), _data(4), config=config, hooks=list(hooks))


def test_max_steps_runs_past_the_epochs(tmp_path: Path) -> None:
    assert TrainerConfig().epochs == 10
    assert TrainerConfig(max_steps=8).epochs is None  # train by steps only
    capped = _trainer(tmp_path / "capped", epochs=2, max_steps=8)  # whichever ends first
    assert capped.total_steps == 6
    trainer = _trainer(tmp_path, max_steps=8)  # 3 steps per epoch
    result = trainer.fit()
    assert trainer.total_steps == 8
    assert result.global_step == 8
    assert result.epochs_completed == 3  # the last epoch ends early at step 8


def test_val_every_steps_is_independent_of_epochs(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, max_steps=7, val_every_steps=3)
    result = trainer.fit()
    assert [row["step"] for row in result.history] == [3, 6, 7]  # the grid, then the last step
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [3, 6, 7]
    assert all("val_dice" in row and "train_loss" in row for row in rows)
    assert result.best_checkpoint is not None
    assert result.best_metric == max(row["val_dice"] for row in rows)


def test_checkpoint_every_steps_new_and_old_spelling(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, epochs=2, checkpoint_every_steps=2, keep_step_checkpoints=True)
    trainer.fit()
    assert sorted(p.name for p in tmp_path.glob("step_*.pt")) == [
        "step_00000002.pt",
        "step_00000004.pt",
        "step_00000006.pt",
    ]
    old = TrainerConfig.from_dict({"checkpoint_every_n_steps": 4})
    assert old.checkpoint_every_steps == old.checkpoint_every_n_steps == 4
    assert "checkpoint_every_n_steps" not in old.to_dict()
    with pytest.raises(ValueError, match=r"checkpoint_every_steps \(3\) .* differ"):
        TrainerConfig.from_dict({"checkpoint_every_steps": 3, "checkpoint_every_n_steps": 4})
    over = load_experiment_config(
        "baseline", overrides={"trainer": {"checkpoint_every_n_steps": 7}}
    )
    assert (
        over.trainer.checkpoint_every_steps == 7
    )  # the shipped 500, in the old spelling, replaced


def test_step_schedule_resume_is_bit_exact(tmp_path: Path) -> None:
    opts = {"max_steps": 10, "val_every_steps": 4, "checkpoint_every_steps": 3}
    reference = _trainer(tmp_path / "ref", **opts)
    reference.fit()
    crashing = _trainer(tmp_path / "run", hooks=(Crash(7),), **opts)
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashing.fit()
    saved = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert saved["global_step"] == 6  # the step grid, mid-epoch
    resumed = _trainer(tmp_path / "run", model_seed=99, **opts)
    resumed.fit(resume_from="auto")
    for key, value in reference.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key

    def strip(history: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if k != "time_s"} for r in history]

    assert strip(resumed.history) == strip(reference.history)
    assert [r["step"] for r in reference.history] == [4, 8, 10]


def test_default_threads_do_not_oversubscribe() -> None:
    assert default_threads(0, cores=8, load=0.0) == 8
    assert default_threads(1, cores=8, load=0.0) == 4
    assert default_threads(0, cores=2, load=1.9) == 1  # a busy 2-core machine
    assert default_threads(7, cores=4, load=0.0) == 1
    previous = torch.get_num_threads()
    try:
        assert set_threads(1) == 1
        assert torch.get_num_threads() == 1
        assert 1 <= set_threads(None, workers=0) <= default_threads(0, load=0.0)
    finally:
        torch.set_num_threads(previous)
    with pytest.raises(ValueError, match="threads must be a positive int"):
        set_threads(0)


def test_train_and_train_mil_take_threads_and_workers(tmp_path: Path) -> None:
    for command in ("train", "train-mil"):
        text = CliRunner().invoke(main, [command, "--help"]).output
        assert "--threads" in text, command
        assert "--workers" in text, command
    bad = CliRunner().invoke(main, ["train", "--config", "baseline", "--threads", "0"])
    assert bad.exit_code == 2
    assert "--threads" in bad.output
