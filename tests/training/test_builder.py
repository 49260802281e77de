"""``build_trainer``: a config-built segmentation run end to end."""

from __future__ import annotations

import importlib.util
import math
from typing import TYPE_CHECKING

import pytest
import torch

from tests.training.test_data import write_folder
from tia_scanner_robust.models.segmentation import SmpSegmentationModel
from tia_scanner_robust.training.builder import build_trainer
from tia_scanner_robust.training.config import ExperimentConfig

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_build_trainer_from_config(tmp_path: Path, he_tiles: list[np.ndarray]) -> None:
    write_folder(tmp_path / "train", he_tiles[:4], size=32)
    config = ExperimentConfig.from_dict(
        {
            "trainer": {
                "epochs": 1,
                "batch_size": 2,
                "progress": False,
                "output_dir": str(tmp_path / "run"),
                "device": "cpu",
            },
            "model": {
                "arch": "Unet",
                "encoder_name": "resnet18",
                "patch_size": 32,
                "model_kwargs": {"encoder_depth": 3, "decoder_channels": [16, 8, 4]},
            },
            "data": {
                "train_dir": str(tmp_path / "train"),
                "val_dir": str(tmp_path / "train"),
                "crop_size": 32,
            },
            "hooks": [{"name": "simcons", "kwargs": {"style_augmentation": "colorjitter"}}],
        }
    )
    if importlib.util.find_spec("tia_scanner_robust.augmentations.presets") is None:
        config.hooks = []  # the presets module is not there yet
    trainer = build_trainer(config)
    result = trainer.fit()
    assert result.global_step == 2
    model = SmpSegmentationModel.from_checkpoint(result.best_checkpoint)
    state = trainer.model.state_dict()
    best = torch.load(result.best_checkpoint, weights_only=True)["model"]
    assert all(torch.equal(best[k], state[k]) for k in state)
    assert model.config["arch"] == "Unet"
    assert not math.isnan(result.history[0]["val_dice"])
