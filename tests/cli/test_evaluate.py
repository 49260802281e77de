"""The ``evaluate`` command: a report from the demo data, and bad data."""

from __future__ import annotations

import json

from click.testing import CliRunner

from tia_scanner_robust.cli.evaluate import evaluate


def _strict_json(text: str) -> dict:
    def refuse(name: str) -> None:
        msg = f"non-strict JSON constant {name}"
        raise ValueError(msg)

    return json.loads(text, parse_constant=refuse)


def test_cli_evaluate_on_demo(tmp_path):
    args = ["--data", "demo", "-o", str(tmp_path), "--demo-tiles", "2", "--demo-tile-size", "64"]
    result = CliRunner().invoke(evaluate, [*args, "--no-progress", "--no-save-predictions"])
    assert result.exit_code == 0, result.output
    assert "dice: average" in result.output
    assert "worst pair" in result.output
    assert str(tmp_path / "report.html") in result.output
    data = _strict_json((tmp_path / "report.json").read_text())
    assert data["scanners"][0] == "reference"
    assert len(data["scanners"]) == 5
    assert (tmp_path / "demo_data" / "manifest.csv").is_file()


def test_cli_evaluate_reports_bad_data(tmp_path):
    result = CliRunner().invoke(
        evaluate, ["--data", str(tmp_path / "missing"), "-o", str(tmp_path)]
    )
    assert result.exit_code != 0
    assert "no such file or folder" in result.output
