"""Model specifications: checkpoints written by the plugin."""

from __future__ import annotations

import pytest
import torch

from tia_scanner_robust.engines.loading import load_model_checkpoint as load_checkpoint
from tia_scanner_robust.engines.loading import resolve_model


def test_checkpoint_loading(tmp_path):
    path = tmp_path / "cd.pt"
    torch.save({"arch": "builtin", "config": {"h_threshold": 0.07}}, path)
    model, ioconfig, desc = load_checkpoint(path)
    assert model.h_threshold == 0.07
    assert ioconfig.patch_input_shape == (256, 256)
    assert desc == "checkpoint:cd.pt"
    bare = tmp_path / "bare.pt"
    torch.save({"w": torch.zeros(2)}, bare)
    with pytest.raises(ValueError, match="bare state dict"):
        resolve_model(bare)
    pickled = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(2, 2), pickled)  # a pickled module: refused by weights_only
    with pytest.raises(ValueError, match="weights_only"):
        resolve_model(pickled)
    torch.save({"arch": "nope", "state_dict": {}}, path)
    with pytest.raises(ValueError, match="unknown arch"):
        load_checkpoint(path)


def test_tiatoolbox_weights_of_another_architecture(tmp_path):
    weights = tmp_path / "other.pth"
    torch.save(torch.nn.Linear(3, 2).state_dict(), weights)
    with pytest.raises(ValueError, match=r"do not fit the TIAToolbox model 'resnet18-kather100k'"):
        resolve_model("resnet18-kather100k", weights=weights)
    pickled = tmp_path / "pickled.pth"
    torch.save(torch.nn.Linear(3, 2), pickled)
    with pytest.raises(ValueError, match=r"Cannot load weights file .*pickled\.pth"):
        resolve_model("resnet18-kather100k", weights=pickled)
