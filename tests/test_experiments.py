"""The repository's experiment scripts (``experiments/``): importable, runnable, correct."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from tia_scanner_robust.training.mil_config import load_mil_config
from tia_scanner_robust.training.synthetic import make_synthetic_store

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def load_script(name: str):
    path = EXPERIMENTS / f"{name}.py"
    if not path.is_file():
        pytest.skip(f"experiments/{name}.py not present")
    spec = importlib.util.spec_from_file_location(f"experiments_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("script", sorted(p.name for p in EXPERIMENTS.glob("*.py")))
def test_script_help(script):
    result = subprocess.run(
        [sys.executable, str(EXPERIMENTS / script), "--help"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout


def test_limited_scanner_ablation(tmp_path):
    limited_scanner_ablation = load_script("scangen_ablation").limited_scanner_ablation
    store = make_synthetic_store(
        tmp_path / "s.zarr",
        task_specimens=12,
        multi_specimens=10,
        patches=4,
        feature_dim=8,
        world={"scanners": ("A", "B", "C")},
    )
    config = load_mil_config(
        "mil_scangen",
        {
            "model": {"projection_hidden": 8},
            "trainer": {"max_steps": 1, "batch_size": 6},
            "scangen": {"batch_size": 4, "n_subsample": 4},
        },
    )
    res = limited_scanner_ablation(config, tmp_path / "ablation", store=store)
    combos = [tuple(c["scanners"]) for c in res["combinations"]]
    assert combos == [("A", "B"), ("A", "C"), ("B", "C"), ("A", "B", "C")]
    assert set(res["by_size"]) == {"2", "3"}
    assert res["by_size"]["2"]["n"] == 3
    assert sum(res["scanner_in_best"].values()) == 2 * len(res["best"])
    assert (tmp_path / "ablation" / "ablation.json").is_file()
