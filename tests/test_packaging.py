"""Install-level checks: one working cv2, README and CI agree, the CLI lists its commands."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from importlib.metadata import requires
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import tia_scanner_robust
from tia_scanner_robust.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]


def test_cv2_imports_and_works() -> None:
    ok, buffer = cv2.imencode(".png", np.full((3, 3, 3), 7, np.uint8))
    assert ok
    decoded = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    assert decoded.shape == (3, 3, 3)
    assert int(decoded[0, 0, 0]) == 7
    # cvtColor is what our colour-space code relies on.
    lab = cv2.cvtColor(np.full((1, 1, 3), 255, np.uint8), cv2.COLOR_RGB2LAB)
    assert tuple(lab[0, 0]) == (255, 128, 128)


def test_single_opencv_release_on_disk() -> None:
    """Both OpenCV distributions (if present) are one release, matching cv2."""
    versions = {}
    for dist in ("opencv-python", "opencv-python-headless"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    assert versions, "no OpenCV distribution installed"
    assert len(set(versions.values())) == 1, versions
    release = next(iter(versions.values()))
    assert release.startswith(cv2.__version__), (release, cv2.__version__)


def _readme_test_command() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- test-command -->\s*```(?:bash|sh)?\n(.+?)\n```", text, re.S)
    assert match, "README.md lacks the marked test command block"
    return match.group(1).strip()


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    command = _readme_test_command()
    ci_lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert command in [line.strip() for line in ci_lines]


def test_cli_help_lists_every_command() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    for name in COMMANDS:
        assert name in result.output


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_has_help(name: str) -> None:
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_cli_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert tia_scanner_robust.__version__ in result.output


def test_console_script_installed() -> None:
    exe = Path(sys.executable).with_name("tia-scanner-robust")
    assert exe.exists(), "console script missing: reinstall with scripts/install.sh"
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True)
    assert tia_scanner_robust.__version__ in out.stdout


def test_package_metadata_pins_both_opencv_wheels_to_one_release() -> None:
    # a plain `pip install` of the wheel (no scripts/install.sh) must not mix
    # opencv-python and opencv-python-headless releases in one cv2/ folder
    pins = {}
    for requirement in requires("tia-scanner-robust") or []:
        name, _, version = requirement.partition("==")
        if name.strip() in {"opencv-python", "opencv-python-headless"}:
            pins[name.strip()] = version.split(";")[0].strip()
    assert set(pins) == {"opencv-python", "opencv-python-headless"}, pins
    assert len(set(pins.values())) == 1, pins
    constraints = (Path(__file__).resolve().parents[1] / "constraints.txt").read_text()
    for name, version in pins.items():
        assert f"{name}=={version}" in constraints.splitlines()
