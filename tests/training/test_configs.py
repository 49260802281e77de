"""Shipped experiment configs, overrides, and clear CLI errors for bad configs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from tia_scanner_robust._io import atomic_write_image
from tia_scanner_robust.cli.train import train
from tia_scanner_robust.training.builder import build_trainer
from tia_scanner_robust.training.config import load_config
from tia_scanner_robust.training.configs import (
    config_path,
    list_configs,
    load_experiment_config,
    merge_overrides,
    parse_overrides,
    resolve_config,
)
from tia_scanner_robust.training.simcons import SimConsHook

if TYPE_CHECKING:
    from pathlib import Path

SHIPPED = {
    "baseline",
    "colorjitter",
    "randstainna",
    "fda",
    "colorjitter_simcons",
    "randstainna_simcons",
    "fda_simcons",
}
TINY_MODEL = {
    "arch": "Unet",
    "encoder_name": "resnet18",
    "patch_size": 32,
    "model_kwargs": {"encoder_depth": 3, "decoder_channels": [16, 8, 4]},
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def tiny_data(tmp_path: Path, he_tiles: list[np.ndarray]) -> Path:
    root = tmp_path / "data"
    for i, tile in enumerate(he_tiles[:4]):
        crop = np.ascontiguousarray(tile[:48, :48])
        atomic_write_image(root / "images" / f"t{i}.png", crop)
        atomic_write_image(root / "masks" / f"t{i}.png", (crop[..., 0] < 150).astype(np.uint8))
    return root


def test_shipped_configs_are_listed_and_validate() -> None:
    configs = list_configs()
    assert set(configs) == SHIPPED
    assert all(configs.values()), "every shipped config has a one-line description"
    for name in SHIPPED:
        cfg = load_config(config_path(name))  # the trainer's own loader
        # defaults for real use: the paper's network and crops, GPU when present
        assert (cfg.model.arch, cfg.model.encoder_name) == ("DeepLabV3Plus", "resnet34")
        assert cfg.data.crop_size == 256
        assert cfg.trainer.device == "auto"
        assert cfg.trainer.monitor == "val_dice"
        assert cfg.trainer.output_dir == f"runs/{name}"
        sa = name.removesuffix("_simcons")
        if name == "baseline":
            assert cfg.data.style_augmentation is None
            assert cfg.hooks == []
        else:
            assert cfg.data.style_augmentation == sa
        if name.endswith("_simcons"):
            (hook,) = cfg.hooks
            assert hook.name == "simcons"
            assert hook.kwargs == {"style_augmentation": sa, "lam": 0.3, "supervise": "first"}
        elif name != "baseline":
            assert cfg.hooks == []


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_configs_build_and_load_items(name: str, tiny_data: Path) -> None:
    """Every shipped config (tiny model, local data) builds a trainer whose pipeline runs."""
    cfg = load_experiment_config(
        name,
        overrides={
            "model": TINY_MODEL,
            "data": {"train_dir": str(tiny_data), "val_dir": None, "crop_size": 32, "style_p": 1.0},
            "trainer": {"batch_size": 2, "device": "cpu", "progress": False},
        },
    )
    trainer = build_trainer(cfg)
    item = trainer.train_dataset[0]  # style augmentation (FDA needs a reference) runs here
    assert item["image"].shape == (32, 32, 3)
    assert item["mask"].shape == (32, 32)
    simcons = [h for h in trainer.hooks if isinstance(h, SimConsHook)]
    assert len(simcons) == (1 if name.endswith("_simcons") else 0)
    if simcons:
        assert simcons[0].lam == pytest.approx(0.3)
        assert simcons[0].supervise == "first"


def test_fda_in_the_pipeline_uses_another_training_image(tiny_data: Path) -> None:
    """FDA in the ordinary pipeline takes another image of the dataset as reference."""
    cfg = load_experiment_config(
        "fda",
        overrides={
            "model": TINY_MODEL,
            "data": {
                "train_dir": str(tiny_data),
                "val_dir": None,
                "crop_size": None,
                "style_p": 1.0,
                "flip_p": 0.0,
                "blur_p": 0.0,
                "noise_p": 0.0,
            },
            "trainer": {"batch_size": 2, "device": "cpu"},
        },
    )
    dataset = build_trainer(cfg).train_dataset
    raw, _ = dataset.load(0)
    out = dataset[0]["image"]
    assert dataset.metadata_keys == ["fda_reference"]
    assert not np.array_equal(out, raw)  # the style changed
    again = dataset[0]["image"]
    assert np.array_equal(out, again)  # deterministic per (seed, epoch, index)


def test_resolve_and_overrides() -> None:
    assert resolve_config("baseline") == config_path("baseline")
    assert resolve_config("baseline.yaml") == config_path("baseline")
    with pytest.raises(FileNotFoundError, match=r"shipped configs: .*fda_simcons"):
        resolve_config("no_such_config")
    with pytest.raises(ValueError, match="valid names"):
        config_path("nope")
    assert parse_overrides(["trainer.epochs=3", "hooks=[]", "data.style_augmentation=null"]) == {
        "trainer": {"epochs": 3},
        "hooks": [],
        "data": {"style_augmentation": None},
    }
    with pytest.raises(ValueError, match=r"section\.key=value"):
        parse_overrides(["trainer.epochs"])
    with pytest.raises(ValueError, match="must name a section"):
        parse_overrides(["optimizer.lr=1"])
    merged = merge_overrides({"a": {"b": 1, "c": [1]}}, {"a": {"c": [2]}, "d": 3})
    assert merged == {"a": {"b": 1, "c": [2]}, "d": 3}
    cfg = load_experiment_config("fda_simcons", overrides=parse_overrides(["trainer.seed=7"]))
    assert cfg.trainer.seed == 7
    assert cfg.hooks[0].kwargs["lam"] == 0.3


def _write(tmp_path: Path, content: dict | str) -> str:
    path = tmp_path / "cfg.yaml"
    text = content if isinstance(content, str) else yaml.safe_dump(content)
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ({"trainer": {"optimiser": "adam"}}, "Unknown TrainerConfig key(s) ['optimiser']"),
        ({"trainer": {"lr": 0}}, "TrainerConfig.lr must be > 0"),
        ({"model": {"num_classes": 1}}, "ModelConfig.num_classes must be an int >= 2"),
        ({"data": {"flip_p": 2}}, "DataConfig.flip_p must be in [0, 1]"),
        ({"hooks": [{"name": "simcons", "kwarg": {}}]}, "hooks[0]: Unknown HookConfig key"),
        ("trainer: [1, 2\n", "Invalid YAML"),
    ],
)
def test_cli_bad_config_fields_exit_2_with_the_field(
    tmp_path: Path, content: dict | str, expected: str
) -> None:
    result = CliRunner().invoke(train, ["--config", _write(tmp_path, content)])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # a usage error, not a traceback
    assert expected in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_cli_bad_build_time_config_exit_2(tmp_path: Path, tiny_data: Path) -> None:
    runner = CliRunner()
    base = {"model": TINY_MODEL, "data": {"train_dir": str(tiny_data), "crop_size": 32}}
    cases = [
        ({**base, "hooks": [{"name": "simcon"}]}, "Unknown hook 'simcon'"),
        ({**base, "hooks": [{"name": "simcons", "kwargs": {"lam": -1}}]}, "lam must be"),
        (
            {**base, "hooks": [{"name": "simcons", "kwargs": {"style_augmentation": "jitter"}}]},
            "Unknown style augmentation 'jitter'",
        ),
        ({**base, "data": {"train_dir": str(tmp_path / "missing")}}, "does not exist"),
        ({"model": TINY_MODEL, "data": {"train_dir": None}}, "DataConfig.train_dir is required"),
        ({**base, "model": {**TINY_MODEL, "arch": "NoNet"}}, "NoNet"),
    ]
    for content, expected in cases:
        result = runner.invoke(train, ["--config", _write(tmp_path, content), "--device", "cpu"])
        assert result.exit_code == 2, (content, result.output)
        assert expected in " ".join(result.output.split()), result.output


def test_cli_unknown_name_missing_config_and_bad_set(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(train, ["--config", "basline"])
    assert result.exit_code == 2
    assert "shipped configs: baseline" in " ".join(result.output.split())
    result = runner.invoke(train, [])
    assert result.exit_code == 2
    assert "--config" in result.output
    result = runner.invoke(train, ["--config", "baseline", "--set", "epochs=3"])
    assert result.exit_code == 2
    assert "must name a section" in " ".join(result.output.split())
    result = runner.invoke(train, ["--config", "baseline", "--resume", str(tmp_path / "x.pt")])
    assert result.exit_code == 2
    assert "--resume" in result.output


def test_cli_list_configs() -> None:
    result = CliRunner().invoke(train, ["--list-configs"])
    assert result.exit_code == 0
    names = [line.split()[0] for line in result.output.strip().splitlines()]
    assert set(names) == SHIPPED
