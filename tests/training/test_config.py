"""Training configs: field errors, unknown keys, YAML loading."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tia_scanner_robust.training.config import (
    DataConfig,
    ExperimentConfig,
    ModelConfig,
    TrainerConfig,
    load_config,
)

if TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"optimizer": "adagrad"}, r"TrainerConfig\.optimizer"),
        ({"lr": 0}, r"TrainerConfig\.lr must be > 0"),
        ({"epochs": 0}, r"TrainerConfig\.epochs"),
        ({"batch_size": 1.5}, r"TrainerConfig\.batch_size"),
        ({"scheduler": "linear"}, r"TrainerConfig\.scheduler"),
        ({"mode": "maximum"}, r"TrainerConfig\.mode"),
        ({"amp": "yes"}, r"TrainerConfig\.amp"),
        ({"task": "detection"}, r"TrainerConfig\.task"),
        ({"normalize_std": [1, 0, 1]}, r"TrainerConfig\.normalize_std"),
        ({"progress": "no"}, r"TrainerConfig\.progress"),
    ],
)
def test_trainer_config_errors_name_the_field(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TrainerConfig(**kwargs)


def test_config_unknown_keys_and_yaml(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match=r"Unknown TrainerConfig key\(s\) \['optimiser'\].*optimizer"
    ):
        TrainerConfig.from_dict({"optimiser": "adam"})
    with pytest.raises(ValueError, match=r"DataConfig\.flip_p must be in \[0, 1\]"):
        DataConfig(flip_p=2)
    with pytest.raises(ValueError, match=r"ModelConfig\.num_classes"):
        ModelConfig(num_classes=1)
    assert TrainerConfig(task="classification").target_key == "label"
    good = tmp_path / "good.yaml"
    good.write_text(
        "trainer:\n  epochs: 3\n  lr: 0.01\nmodel:\n  arch: Unet\n"
        "data:\n  train_dir: data/train\nhooks:\n  - name: simcons\n    kwargs: {lam: 0.5}\n"
    )
    config = load_config(good)
    assert config.trainer.epochs == 3
    assert config.model.arch == "Unet"
    assert config.hooks[0].kwargs == {"lam": 0.5}
    assert ExperimentConfig.from_dict(config.to_dict()) == config
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer:\n  lr: -1\n")
    with pytest.raises(ValueError, match=r"bad\.yaml.*TrainerConfig\.lr"):
        load_config(bad)
    bad.write_text("trainr:\n  lr: 1\n")
    with pytest.raises(ValueError, match=r"Unknown ExperimentConfig key\(s\) \['trainr'\]"):
        load_config(bad)
    bad.write_text("hooks:\n  - {nme: simcons}\n")
    with pytest.raises(ValueError, match=r"hooks\[0\].*Unknown HookConfig key"):
        load_config(bad)
    bad.write_text("trainer: [1, 2\n")
    with pytest.raises(ValueError, match="Invalid YAML"):
        load_config(bad)
    bad.write_text("!!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ValueError, match="Invalid YAML"):
        load_config(bad)
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "none.yaml")
