"""Everything a run needs is in its config: style-augmentation files, data checks, config.yaml."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import pytest
import yaml

from tia_scanner_robust._io import atomic_write_image
from tia_scanner_robust.augmentations.randstainna import fit_randstainna_template
from tia_scanner_robust.augmentations.randstainna_template import save_randstainna_template
from tia_scanner_robust.augmentations.scanner import ScannerProfile, save_scanner_profile
from tia_scanner_robust.training.builder import build_trainer
from tia_scanner_robust.training.configs import load_experiment_config, parse_overrides

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _folder(root: Path, tiles: list[np.ndarray], mask_value: int = 1) -> Path:
    for i, tile in enumerate(tiles):
        crop = np.ascontiguousarray(tile[:32, :32])
        atomic_write_image(root / "images" / f"t{i}.png", crop)
        mask = (crop[..., 0] < 150).astype(np.uint8) * mask_value
        atomic_write_image(root / "masks" / f"t{i}.png", mask)
    return root


def _tiny_model() -> dict:
    # A one-layer network keeps the tests fast; any nn.Module class works (issue part 3).
    return {"arch": "torch.nn:Conv2d", "model_kwargs": {"kernel_size": 3, "padding": 1}}


@pytest.fixture
def experiment(tmp_path: Path, he_tiles: list[np.ndarray]) -> Path:
    """A config folder with data, a fitted template, an FDA bank and a fitted scanner profile."""
    folder = tmp_path / "exp"
    _folder(folder / "train", he_tiles[:4])
    _folder(folder / "val", he_tiles[4:6])
    template = fit_randstainna_template(he_tiles[8:12], "HSV", verbose=False)
    save_randstainna_template(template, folder / "templates" / "hsv.yaml")
    for i, tile in enumerate(he_tiles[12:15]):
        atomic_write_image(folder / "bank" / f"r{i}.png", np.ascontiguousarray(tile[:40, :40]))
    save_scanner_profile(ScannerProfile(name="fitted", blur_sigma=0.6), folder / "fitted.yaml")
    return folder


def _write(folder: Path, config: dict) -> Path:
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _base(folder: Path) -> dict:
    return {
        "trainer": {
            "epochs": 1,
            "batch_size": 2,
            "progress": False,
            "device": "cpu",
            "output_dir": str(folder / "run"),
        },
        "model": _tiny_model(),
        "data": {
            "train_dir": str(folder / "train"),
            "val_dir": str(folder / "val"),
            "crop_size": 16,
        },
    }


def test_style_files_from_yaml_reach_pipeline_and_simcons(experiment: Path) -> None:
    config = _base(experiment)
    config["data"].update(
        style_augmentation="randstainna",
        style_kwargs={"templates": "templates/hsv.yaml", "std_hyper": 0.1},  # relative paths
    )
    config["hooks"] = [
        {
            "name": "simcons",
            "kwargs": {
                "style_augmentation": "fda+scanner",
                "style_kwargs": {
                    "fda": {"reference_images": "bank", "beta_range": [0.01, 0.02]},
                    "scanner": {"profiles": ["fitted.yaml", "warm-soft"]},
                },
                "style_device": "cpu",
            },
        }
    ]
    cfg = load_experiment_config(_write(experiment, config))
    assert cfg.data.style_kwargs["templates"] == str(experiment / "templates" / "hsv.yaml")
    trainer = build_trainer(cfg)
    style = next(
        t for t in trainer.train_dataset.transform.transforms if type(t).__name__ == "RandStainNA"
    )
    assert list(style.active_templates) == ["HSV"]
    assert style.std_hyper == pytest.approx(0.1)
    hook = trainer.hooks[0]
    fda, scanner = hook.transform.transforms
    assert len(fda.reference_images) == 3  # the bank folder's images
    assert fda.beta_range == (0.01, 0.02)
    assert hook.fda_references == "none"  # the bank, not other batch images
    assert scanner.profile_names == ["fitted", "warm-soft"]
    trainer.fit(stop_at_step=1)


def test_fda_bank_in_data_pipeline_replaces_dataset_references(experiment: Path) -> None:
    config = _base(experiment)
    config["data"].update(
        style_augmentation="fda",
        style_p=1.0,
        style_kwargs={"reference_images": ["bank/r0.png", "bank/r1.png"]},
    )
    trainer = build_trainer(load_experiment_config(_write(experiment, config)))
    assert trainer.train_dataset.metadata_keys == []  # FDA draws from its bank
    fda = next(
        t
        for t in trainer.train_dataset.transform.transforms
        if type(t).__name__ == "FourierDomainAdaptation"
    )
    assert len(fda.reference_images) == 2
    assert trainer.train_dataset[0]["image"].shape == (16, 16, 3)


def test_missing_style_files_name_field_and_path(experiment: Path) -> None:
    config = _base(experiment)
    config["data"].update(style_augmentation="randstainna", style_kwargs={"templates": "no.yaml"})
    cfg = load_experiment_config(_write(experiment, config))
    with pytest.raises(FileNotFoundError, match=r"data\.style_kwargs\.templates\[0\].*no\.yaml"):
        build_trainer(cfg)
    config["data"] = _base(experiment)["data"]
    config["hooks"] = [
        {
            "name": "simcons",
            "kwargs": {"style_augmentation": "fda", "style_kwargs": {"reference_images": "empty"}},
        }
    ]
    (experiment / "empty").mkdir()
    cfg = load_experiment_config(_write(experiment, config))
    with pytest.raises(FileNotFoundError, match=r"hooks\[0\]\.kwargs\.style_kwargs.*no images"):
        build_trainer(cfg)


def test_set_overrides_take_style_kwargs_relative_to_cwd(
    experiment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(experiment, _base(experiment))
    monkeypatch.chdir(experiment / "templates")
    overrides = parse_overrides(
        ["data.style_augmentation=randstainna", "data.style_kwargs={templates: hsv.yaml}"]
    )
    cfg = load_experiment_config(path, overrides=overrides)
    assert cfg.data.style_kwargs == {"templates": str(experiment / "templates" / "hsv.yaml")}


def test_run_folder_records_full_config_and_it_reproduces_the_run(experiment: Path) -> None:
    config = _base(experiment)
    config["trainer"].update(epochs=None, max_steps=3, log_every_n_steps=1, seed=5, lr=0.05)
    config["data"].update(style_augmentation="colorjitter")
    config["hooks"] = [{"name": "simcons", "kwargs": {"lam": 0.5}}]
    first = build_trainer(load_experiment_config(_write(experiment, config)))
    first.fit()
    recorded = yaml.safe_load((experiment / "run" / "config.yaml").read_text())
    assert set(recorded) == {"trainer", "model", "data", "hooks", "versions"}
    assert recorded["trainer"]["seed"] == 5
    assert recorded["model"]["arch"] == "torch.nn:Conv2d"
    assert recorded["hooks"][0]["kwargs"]["lam"] == 0.5
    assert {"torch", "python", "albumentations"} <= set(recorded["versions"])

    again = load_experiment_config(
        experiment / "run" / "config.yaml",
        overrides={"trainer": {"output_dir": str(experiment / "again")}},
    )
    build_trainer(again).fit()

    def losses(run: str) -> list[float]:
        lines = (experiment / run / "steps.jsonl").read_text().splitlines()
        return [json.loads(line)["loss"] for line in lines]

    assert len(losses("run")) == 3
    assert losses("again") == losses("run")


def test_data_is_checked_before_training(experiment: Path, he_tiles: list[np.ndarray]) -> None:
    config = _base(experiment)
    config["model"]["num_classes"] = 2
    _folder(experiment / "bad", he_tiles[:3], mask_value=255)  # a 0/255 mask
    config["data"]["train_dir"] = str(experiment / "bad")
    with pytest.raises(ValueError, match=r"bad/masks/t0\.png holds label\(s\) \[255\]"):
        build_trainer(load_experiment_config(_write(experiment, config)))
    atomic_write_image(experiment / "val" / "masks" / "t1.png", np.zeros((8, 8), np.uint8))
    config["data"]["train_dir"] = str(experiment / "train")
    with pytest.raises(ValueError, match=r"val/images/t1\.png is 32 x 32 .* mask .* is 8 x 8"):
        build_trainer(load_experiment_config(_write(experiment, config)))
    config["data"]["check_data"] = False  # the check can be skipped (a huge, trusted set)
    build_trainer(load_experiment_config(_write(experiment, config)))
