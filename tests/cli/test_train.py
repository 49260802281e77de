"""``tia-scanner-robust train`` end to end on a tiny config: checkpoints, logs, TIAToolbox."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from tiatoolbox.models.engine.semantic_segmentor import SemanticSegmentor

from tia_scanner_robust._io import atomic_write_image
from tia_scanner_robust.cli import main
from tia_scanner_robust.models.segmentation import SmpSegmentationModel

if TYPE_CHECKING:
    from pathlib import Path


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _folder(root: Path, tiles: list[np.ndarray]) -> Path:
    for i, tile in enumerate(tiles):
        crop = np.ascontiguousarray(tile[:64, :64])
        atomic_write_image(root / "images" / f"t{i}.png", crop)
        atomic_write_image(root / "masks" / f"t{i}.png", (crop[..., 0] < 150).astype(np.uint8))
    return root


@pytest.fixture
def tiny_config(tmp_path: Path, he_tiles: list[np.ndarray]) -> Path:
    train_dir = _folder(tmp_path / "train", he_tiles[:4])
    val_dir = _folder(tmp_path / "val", he_tiles[4:6])
    config = {
        "trainer": {
            "epochs": 2,
            "batch_size": 2,
            "lr": 0.01,
            "progress": False,
            "output_dir": str(tmp_path / "from_yaml"),
        },
        "model": {
            "arch": "Unet",
            "encoder_name": "resnet18",
            "num_classes": 2,
            "patch_size": 32,
            "model_kwargs": {"encoder_depth": 3, "decoder_channels": [16, 8, 4]},
        },
        "data": {
            "train_dir": str(train_dir),
            "val_dir": str(val_dir),
            "crop_size": 32,
            "style_augmentation": "colorjitter",
        },
        "hooks": [{"name": "simcons", "kwargs": {"style_augmentation": "colorjitter", "lam": 0.3}}],
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_train_cli_tiny_config_end_to_end(
    tiny_config: Path, tmp_path: Path, he_image: np.ndarray
) -> None:
    out = tmp_path / "run"
    args = ["train", "--config", str(tiny_config), "--output-dir", str(out)]
    args += ["--seed", "3", "--device", "cpu", "--set", "trainer.log_every_n_steps=1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert f"Best checkpoint: {out / 'best.pt'}" in result.output
    assert "step 4" in result.output  # 2 epochs x (4 images // batch 2)
    for name in (
        "best.pt",
        "last.pt",
        "metrics.jsonl",
        "metrics.csv",
        "steps.jsonl",
        "config.json",
    ):
        assert (out / name).is_file(), name
    assert not (tmp_path / "from_yaml").exists()  # --output-dir won over the YAML
    config = json.loads((out / "config.json").read_text())
    assert config["seed"] == 3
    assert config["log_every_n_steps"] == 1
    epochs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs] == [0, 1]
    assert all(0.0 <= e["val_dice"] <= 1.0 for e in epochs)
    # SimCons ran: its consistency term was logged every step
    steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]
    assert len(steps) == 4
    assert all("consistency" in s and s["consistency"] >= 0 for s in steps)

    # the best checkpoint loads into the TIAToolbox model and runs in SemanticSegmentor
    model = SmpSegmentationModel.from_checkpoint(out / "best.pt")
    assert model.config["patch_size"] == 32
    state = torch.load(out / "best.pt", weights_only=True)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state["model"][key])
    patches = np.stack([he_image[:32, :32], he_image[500:532, 400:432]])
    segmentor = SemanticSegmentor(model=model, batch_size=2, verbose=False)
    pred = segmentor.run(patches, patch_mode=True, ioconfig=model.ioconfig, output_type="dict")
    direct = SmpSegmentationModel.infer_batch(model, torch.from_numpy(patches), device="cpu")
    np.testing.assert_array_equal(np.asarray(pred["predictions"]), direct.argmax(-1))

    # --resume auto on a finished run trains nothing more
    before = (out / "best.pt").read_bytes()
    again = CliRunner().invoke(main, [*args, "--resume", "auto"])
    assert again.exit_code == 0, again.output
    assert "step 4" in again.output
    assert (out / "best.pt").read_bytes() == before


def test_train_cli_stop_and_resume_matches_uninterrupted(tiny_config: Path, tmp_path: Path) -> None:
    """A run stopped at step 1 and resumed with --resume auto ends with the same weights."""
    runner = CliRunner()
    base = ["train", "--config", str(tiny_config), "--device", "cpu", "--set", "hooks=[]"]
    full = runner.invoke(main, [*base, "--output-dir", str(tmp_path / "full")])
    assert full.exit_code == 0, full.output
    split = tmp_path / "split"
    first = runner.invoke(main, [*base, "--output-dir", str(split), "--stop-at-step", "1"])
    assert first.exit_code == 0, first.output
    assert "Stopped at step 1" in first.output
    rest = runner.invoke(main, [*base, "--output-dir", str(split), "--resume", "auto"])
    assert rest.exit_code == 0, rest.output
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)["model"]
    b = torch.load(split / "last.pt", weights_only=True)["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key])
