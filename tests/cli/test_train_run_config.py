"""``train --config RUN/config.yaml`` reproduces a run; bad data fails before training."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from tia_scanner_robust._io import atomic_write_image
from tia_scanner_robust.cli import main

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _folder(root: Path, tiles: list[np.ndarray]) -> Path:
    for i, tile in enumerate(tiles):
        crop = np.ascontiguousarray(tile[:32, :32])
        atomic_write_image(root / "images" / f"t{i}.png", crop)
        atomic_write_image(root / "masks" / f"t{i}.png", (crop[..., 0] < 150).astype(np.uint8))
    return root


@pytest.fixture
def config_file(tmp_path: Path, he_tiles: list[np.ndarray]) -> Path:
    _folder(tmp_path / "exp" / "train", he_tiles[:4])
    for i, tile in enumerate(he_tiles[8:10]):
        atomic_write_image(
            tmp_path / "exp" / "bank" / f"r{i}.png", np.ascontiguousarray(tile[:32, :32])
        )
    config = {
        "trainer": {"max_steps": 3, "batch_size": 2, "lr": 0.05, "log_every_n_steps": 1},
        "model": {"arch": "torch.nn:Conv2d", "model_kwargs": {"kernel_size": 3, "padding": 1}},
        "data": {
            "train_dir": "train",
            "crop_size": 16,
            "style_augmentation": "fda",
            "style_p": 1.0,
            "style_kwargs": {"reference_images": "bank"},
        },
        "hooks": [{"name": "simcons", "kwargs": {"style_augmentation": "colorjitter", "lam": 0.5}}],
    }
    path = tmp_path / "exp" / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _losses(run: Path) -> list[float]:
    return [json.loads(x)["loss"] for x in (run / "steps.jsonl").read_text().splitlines()]


def test_train_config_yaml_of_a_run_reproduces_it(
    config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(config_file.parent)  # train_dir is relative to the working folder
    first = tmp_path / "first"
    args = ["train", "--config", str(config_file), "-o", str(first), "--device", "cpu"]
    args += ["--no-progress", "--threads", "1", "--workers", "0", "--seed", "4"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "(1 threads, 0 workers)" in result.output
    recorded = yaml.safe_load((first / "config.yaml").read_text())
    assert recorded["trainer"]["seed"] == 4
    assert recorded["data"]["style_kwargs"]["reference_images"] == str(config_file.parent / "bank")
    assert "torch" in recorded["versions"]

    monkeypatch.chdir(tmp_path)  # from elsewhere: the recorded paths are absolute
    again = tmp_path / "again"
    args = ["train", "--config", str(first / "config.yaml"), "-o", str(again), "--no-progress"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert len(_losses(first)) == 3
    assert _losses(again) == _losses(first)


def test_train_fails_fast_naming_a_bad_file(config_file: Path, tmp_path: Path) -> None:
    train = config_file.parent / "train"
    (train / "masks" / "t2.png").write_bytes(b"not a png")
    args = ["train", "--config", str(config_file), "-o", str(tmp_path / "run")]
    args += ["--train-dir", str(train), "--no-progress", "--threads", "1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert "t2.png" in result.output
    assert not (tmp_path / "run" / "steps.jsonl").exists()  # no step was run
