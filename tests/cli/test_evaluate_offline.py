"""``evaluate`` refuses what cannot work, in one line, before inference (issue 10, item 4)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from tia_scanner_robust.cli import main


def test_cli_refuses_builtin_classification_quickly(tmp_path):
    out = CliRunner().invoke(
        main,
        [
            "evaluate",
            "--data",
            "demo",
            "--demo-tiles",
            "2",
            "--task",
            "classification",
            "-o",
            str(tmp_path / "out"),
        ],
    )
    assert out.exit_code == 1
    assert "fits task 'segmentation', not 'classification'" in out.output
    assert "Traceback" not in out.output


def test_cli_offline_pretrained_name_is_one_line(monkeypatch, tmp_path):
    import tiatoolbox.models.architecture as arch  # noqa: PLC0415

    def offline(*args, **kwargs):
        msg = "Cannot send a request, as the client has been closed."
        raise RuntimeError(msg)

    monkeypatch.setattr(arch, "fetch_pretrained_weights", offline)
    out = CliRunner().invoke(
        main,
        [
            "evaluate",
            "--data",
            "demo",
            "--demo-tiles",
            "2",
            "--task",
            "classification",
            "--model",
            "resnet18-kather100k",
            "-o",
            str(tmp_path / "out"),
        ],
    )
    assert out.exit_code == 1
    error_lines = [line for line in out.output.splitlines() if line.startswith("Error")]
    assert len(error_lines) == 1
    assert "resnet18-kather100k" in error_lines[0]
    assert "--weights PATH" in error_lines[0]
    assert "Traceback" not in out.output


@pytest.mark.parametrize("option", ["--mpp", "--patch-size", "--size-policy"])
def test_evaluate_and_analyze_take_resolution_options(option):
    for command in ("evaluate", "analyze"):
        out = CliRunner().invoke(main, [command, "--help"])
        assert option in out.output, (command, option)
