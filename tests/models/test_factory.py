"""The user's own model: TIAToolbox/importable classes, smaller outputs, local encoder weights."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
import yaml

from tia_scanner_robust._io import atomic_write_image
from tia_scanner_robust.models.factory import build_model, resolve_model_class
from tia_scanner_robust.training.builder import build_trainer
from tia_scanner_robust.training.config import ModelConfig
from tia_scanner_robust.training.configs import load_experiment_config
from tia_scanner_robust.training.trainer import Trainer

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMP = {
    "arch": "Unet",
    "encoder_name": "resnet18",
    "model_kwargs": {"encoder_depth": 3, "decoder_channels": [16, 8, 4]},
}


def _folder(root: Path, tiles: list[np.ndarray]) -> Path:
    for i, tile in enumerate(tiles):
        crop = np.ascontiguousarray(tile[:48, :48])
        atomic_write_image(root / "images" / f"t{i}.png", crop)
        atomic_write_image(root / "masks" / f"t{i}.png", (crop[..., 0] < 150).astype(np.uint8))
    return root


def _config(tmp_path: Path, tiles: list[np.ndarray], model: dict) -> Path:
    config = {
        "trainer": {
            "max_steps": 2,
            "batch_size": 2,
            "progress": False,
            "device": "cpu",
            "output_dir": str(tmp_path / "run"),
        },
        "model": model,
        "data": {
            "train_dir": str(_folder(tmp_path / "train", tiles[:4])),
            "val_dir": str(_folder(tmp_path / "val", tiles[4:6])),
            "crop_size": 32,
        },
        "hooks": [{"name": "simcons", "kwargs": {"lam": 0.3}}],
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_tiatoolbox_unet_trains_with_hooks(tmp_path: Path, he_tiles: list[np.ndarray]) -> None:
    model = {
        "arch": "tiatoolbox:UNetModel",
        "model_kwargs": {"encoder": "unet", "encoder_levels": [8, 16]},
    }
    trainer = build_trainer(load_experiment_config(_config(tmp_path, he_tiles, model)))
    assert type(trainer.model).__name__ == "UNetModel"
    assert trainer.model.conv1x1 is not None  # a real TIAToolbox UNetModel (3 in, 2 out)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    result = trainer.fit()
    assert result.global_step == 2
    assert "val_dice" in result.history[-1]
    assert any(not torch.equal(v, trainer.model.state_dict()[k]) for k, v in before.items())
    assert hasattr(trainer.model, "infer_batch")  # usable by TIAToolbox's engines


def test_smaller_output_crops_the_targets(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = []
    for _ in range(4):
        image = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
        data.append({"image": image, "mask": (image[..., 0] > 127).astype(np.int64)})
    model = torch.nn.Conv2d(3, 2, 5)  # valid convolution: 12 x 12 in, 8 x 8 out
    config = {"max_steps": 2, "batch_size": 2, "progress": False, "output_dir": str(tmp_path)}
    result = Trainer(model, data, data, config=config).fit()
    assert result.global_step == 2
    assert 0.0 <= result.history[-1]["val_dice"] <= 1.0


def test_model_class_resolution_errors() -> None:
    assert resolve_model_class("torch.nn:Conv2d") is torch.nn.Conv2d
    with pytest.raises(ValueError, match=r"not a torch\.nn\.Module class"):
        resolve_model_class("os:path")
    with pytest.raises(ValueError, match=r"cannot import module 'no_such_pkg\.mod'"):
        resolve_model_class("no_such_pkg.mod:Net")
    with pytest.raises(ValueError, match="TIAToolbox has no model class 'Nope'"):
        resolve_model_class("tiatoolbox:Nope")
    with pytest.raises(ValueError, match=r"ModelConfig\.arch with ':'"):
        load_experiment_config("baseline", overrides={"model": {"arch": "a b:C"}})
    with pytest.raises(ValueError, match="hub name, which only smp models"):
        build_model("torch.nn:Conv2d", encoder_weights="imagenet", model_kwargs={"kernel_size": 1})


def test_encoder_weights_from_local_file(tmp_path: Path, he_tiles: list[np.ndarray]) -> None:
    torch.manual_seed(1)
    donor = build_model(**SMP)
    (tmp_path / "weights").mkdir()
    torch.save(donor.net.encoder.state_dict(), tmp_path / "weights" / "enc.pt")
    # relative to the config file's folder
    path = _config(tmp_path, he_tiles, {**SMP, "encoder_weights": "weights/enc.pt"})
    trainer = build_trainer(load_experiment_config(path))
    for key, value in donor.net.encoder.state_dict().items():
        assert torch.equal(value, trainer.model.net.encoder.state_dict()[key]), key
    assert trainer.model.config["encoder_weights"] == str(tmp_path / "weights" / "enc.pt")

    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "weights" / "other.pt")
    with pytest.raises(ValueError, match=r"other\.pt do not fit"):
        build_model(**SMP, encoder_weights=str(tmp_path / "weights" / "other.pt"))
    with pytest.raises(FileNotFoundError, match=r"weight file not found: .*gone\.pt"):
        build_model(**SMP, encoder_weights=str(tmp_path / "gone.pt"))


def test_class_names_travel_from_the_config_to_the_model() -> None:
    # YAML/JSON give string keys; the config keeps int keys and a checked count
    config = ModelConfig.from_dict({**SMP, "class_dict": {"0": "background", "1": "tumour"}})
    assert config.class_dict == {0: "background", 1: "tumour"}
    again = ModelConfig.from_dict(yaml.safe_load(yaml.safe_dump(config.to_dict())))
    assert again.class_dict == config.class_dict
    model = build_model(
        "Unet",
        encoder_name="resnet18",
        num_classes=2,
        model_kwargs=SMP["model_kwargs"],
        class_dict=config.class_dict,
    )
    assert model.class_dict == {0: "background", 1: "tumour"}
    assert model.config["class_dict"] == {0: "background", 1: "tumour"}
    unet = build_model("tiatoolbox:UNetModel", num_classes=2, class_dict={0: "bg", 1: "fg"})
    assert unet.class_dict == {0: "bg", 1: "fg"}
    with pytest.raises(ValueError, match="names 3 classes but num_classes is 2"):
        ModelConfig.from_dict({**SMP, "class_dict": {0: "a", 1: "b", 2: "c"}})
    with pytest.raises(ValueError, match=r"keys must be 0\.\.1"):
        ModelConfig.from_dict({**SMP, "class_dict": {0: "a", 2: "b"}})
