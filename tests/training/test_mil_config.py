"""Typed MIL configs: shipped files, merging, errors naming sections, keys and fields."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tia_scanner_robust.training.config import TrainerConfig
from tia_scanner_robust.training.mil_config import (
    MILConfig,
    MILTrainerConfig,
    ScanGenConfig,
    load_mil_config,
)

if TYPE_CHECKING:
    from pathlib import Path


def test_shipped_configs_are_typed_and_round_trip() -> None:
    baseline = load_mil_config("mil_baseline")
    scangen = load_mil_config("mil_scangen")
    assert isinstance(baseline.trainer, MILTrainerConfig)
    assert isinstance(baseline.trainer, TrainerConfig)
    assert baseline.scangen.lam == 0.0
    assert scangen.scangen.lam == 1.0
    assert scangen.scangen.alpha == 0.7
    assert scangen.trainer.image_key == "features"
    assert scangen.trainer.target_key == "label"
    assert scangen.trainer.monitor == "val_auc"
    assert scangen.model.aggregator_kwargs["abmil"] == {"attention_dim": 64}
    assert MILConfig.from_dict(scangen.to_dict()) == scangen
    assert load_mil_config(scangen) == scangen


def test_defaults_come_from_the_fields() -> None:
    config = MILConfig()
    assert config.name == "mil"
    assert config.data.train_split == "train"
    assert config.data.val_split == "val"
    assert config.trainer.max_steps == 400
    assert config.trainer.task == "classification"
    assert config.scangen == ScanGenConfig()
    assert config.synthetic.magnifications == ["40x"]
    # a mutable default is not shared between instances
    config.model.aggregator_kwargs["gap"]["hidden_dim"] = 3
    assert MILConfig().model.aggregator_kwargs["gap"]["hidden_dim"] == 64


def test_overrides_merge_by_section_and_replace_aggregator_kwargs() -> None:
    config = load_mil_config(
        "mil_scangen",
        {
            "model": {"aggregator": "abmil", "aggregator_kwargs": {"abmil": {"gated": False}}},
            "scangen": {"alpha": 0.5},
            "synthetic": {"world": {"scanners": ["A", "B", "C"]}},
        },
    )
    assert config.model.aggregator == "abmil"
    assert config.model.projection_hidden == 128  # kept from the file
    assert config.model.aggregator_kwargs == {"abmil": {"gated": False}}  # replaced whole
    assert config.scangen.alpha == 0.5
    assert config.scangen.lam == 1.0  # kept from the file
    assert config.synthetic.world == {"scanners": ["A", "B", "C"]}
    updated = config.updated({"trainer": {"seed": 3}, "scangen": {"lam": 0.0}})
    assert (updated.trainer.seed, updated.scangen.lam, config.scangen.lam) == (3, 0.0, 1.0)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"scangn": {}}, r"Unknown MILConfig key\(s\) \['scangn'\].*scangen"),
        (
            {"scangen": {"lamda": 1}},
            r"MILConfig\.scangen: Unknown ScanGenConfig key\(s\) \['lamda'\]",
        ),
        ({"trainer": {"optimiser": "adam"}}, r"Unknown MILTrainerConfig key\(s\) \['optimiser'\]"),
        ({"scangen": {"lam": -1}}, r"ScanGenConfig\.lam must be >= 0"),
        ({"scangen": {"granularity": "tile"}}, r"ScanGenConfig\.granularity"),
        ({"scangen": {"scanners": "A"}}, r"ScanGenConfig\.scanners must be a non-empty list"),
        ({"model": {"num_classes": 1}}, r"MILModelConfig\.num_classes"),
        ({"data": {"train_split": ""}}, r"MILDataConfig\.train_split must be a non-empty string"),
        ({"trainer": {"lr": 0}}, r"MILTrainerConfig\.lr must be > 0"),
        ({"synthetic": {"world": [1]}}, r"SyntheticConfig\.world must be a mapping"),
        ({"data": [1]}, r"MILConfig\.data must be a mapping"),
    ],
)
def test_errors_name_the_section_key_and_field(overrides: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        load_mil_config("mil_baseline", overrides)


def test_yaml_files(tmp_path: Path) -> None:
    good = tmp_path / "mil.yaml"
    good.write_text("name: mine\nscangen:\n  lam: 0.5\n")
    config = load_mil_config(good)
    assert (config.name, config.scangen.lam, config.scangen.alpha) == ("mine", 0.5, 0.7)
    bad = tmp_path / "bad.yaml"
    bad.write_text("scangen:\n  lamda: 0.5\n")
    with pytest.raises(ValueError, match=r"bad\.yaml.*Unknown ScanGenConfig key\(s\) \['lamda'\]"):
        load_mil_config(bad)
    bad.write_text("- 1\n")
    with pytest.raises(ValueError, match="must be a YAML mapping"):
        load_mil_config(bad)
    bad.write_text("!!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ValueError, match="Invalid YAML"):
        load_mil_config(bad)
    with pytest.raises(FileNotFoundError, match="neither a file nor a shipped config name"):
        load_mil_config("no_such_config")
