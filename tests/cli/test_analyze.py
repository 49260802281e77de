"""The ``analyze`` command: paired/unpaired RGB and feature analysis of the demo data."""

from __future__ import annotations

import json

from click.testing import CliRunner

from tia_scanner_robust.cli.analyze import analyze


def _strict_json(text: str) -> dict:
    def refuse(name: str) -> None:
        msg = f"non-strict JSON constant {name}"
        raise ValueError(msg)

    return json.loads(text, parse_constant=refuse)


def test_cli_analyze_rgb_and_features(tmp_path):
    args = ["--data", "demo", "-o", str(tmp_path), "--demo-tiles", "3", "--demo-tile-size", "64"]
    result = CliRunner().invoke(
        analyze,
        [*args, "--features", "resnet18", "--projection", "pca", "--no-progress"],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "rgb_paired_unpaired.png").is_file()
    assert (tmp_path / "features_paired_unpaired.png").is_file()
    data = _strict_json((tmp_path / "analysis.json").read_text())
    # the reference deviates from itself by exactly zero in the paired view
    assert data["rgb"]["scanners"]["reference"]["paired_mean_norm"] == 0.0
    assert data["features"]["paired_mean_norm"]["reference"] == 0.0
    assert data["rgb"]["scanners"]["pale-low-contrast"]["paired_mean_norm"] > 0
