"""``fit-scanner-profile`` on a paired folder; the YAML feeds ``build-paired simulate``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import pytest
from click.testing import CliRunner

from tia_scanner_robust._io import atomic_write_image
from tia_scanner_robust._validation import read_rgb_image
from tia_scanner_robust.augmentations.scanner import (
    ScannerProfile,
    load_scanner_profile,
    simulate_scanner,
)
from tia_scanner_robust.cli import main
from tia_scanner_robust.cli.build_paired import build_paired
from tia_scanner_robust.cli.fit_scanner_profile import fit_scanner_profile

if TYPE_CHECKING:
    from pathlib import Path

TRUTH = ScannerProfile(
    "truth",
    white_balance=(0.97, 1.0, 1.1),
    gamma=(0.8, 0.82, 0.9),
    levels=(0.1, 1.0),
    saturation=0.8,
    blur_sigma=0.7,
)
SIZE = 192


@pytest.fixture(scope="module")
def paired_folder(he_image, tmp_path_factory) -> Path:
    """SCORPION folder: scanner A = the tissue, B = TRUTH's rendering 2 px out of register."""
    root = tmp_path_factory.mktemp("pairs")
    scan = simulate_scanner(he_image, TRUTH)
    corners = [(y, x) for y in (0, 260, 520, 780) for x in (0, 400)]
    for k, (top, x) in enumerate(corners[:6], start=1):
        y = min(top, 1000 - SIZE - 2)
        folder = root / "slide_1" / f"sample_{k}"
        atomic_write_image(folder / "A.png", he_image[y : y + SIZE, x : x + SIZE])
        atomic_write_image(folder / "B.png", scan[y + 2 : y + 2 + SIZE, x : x + SIZE])
    return root


def test_fit_writes_profile_and_realism_report(paired_folder, he_tile, tmp_path) -> None:
    out = tmp_path / "B.yaml"
    args = ["--data", str(paired_folder), "--reference", "A", "--target", "B", "-o", str(out)]
    result = CliRunner().invoke(fit_scanner_profile, [*args, "--holdout", "0.34"])
    assert result.exit_code == 0, result.output
    assert "Realism on 2 held-back pair(s)" in result.output
    profile = load_scanner_profile(out)
    assert profile.name == "B"
    assert profile.blur_sigma == pytest.approx(TRUTH.blur_sigma, abs=0.2)
    np.testing.assert_allclose(profile.gamma, TRUTH.gamma, atol=0.08)
    report = json.loads((tmp_path / "B_realism.json").read_text())
    summary = report["summary"]
    assert summary["n_pairs"] == 2
    assert summary["mad_simulated_vs_real"] < 0.3 * summary["mad_reference_vs_real"]
    assert (tmp_path / "B_realism.png").read_bytes()[:4] == b"\x89PNG"
    # provenance: which specimens fitted, which were held back (disjoint)
    import yaml  # noqa: PLC0415

    fit = yaml.safe_load(out.read_text())["fit"]
    assert len(fit["fit_specimens"]) == 4
    assert not set(fit["fit_specimens"]) & set(fit["held_back_specimens"])
    # the YAML feeds build-paired simulate beside a built-in name
    image = tmp_path / "tile.png"
    atomic_write_image(image, he_tile)
    sim_args = ["simulate", str(image), "-o", str(tmp_path / "sim")]
    sim_args += ["--profile", "reference", "--profile", str(out)]
    result = CliRunner().invoke(build_paired, sim_args)
    assert result.exit_code == 0, result.output
    assert "['reference', 'B']" in result.output
    written = read_rgb_image(tmp_path / "sim" / "tile" / "sample_1" / "B.png")
    np.testing.assert_array_equal(written, simulate_scanner(he_tile, profile))


def test_cli_is_registered() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert "fit-scanner-profile" in result.output


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--target", "C"], "--target 'C' is not a scanner of the data"),
        (["--target", "A"], "must be different scanners"),
    ],
)
def test_fit_errors(paired_folder, tmp_path, extra, match) -> None:
    args = ["--data", str(paired_folder), "--reference", "A", "-o", str(tmp_path / "x.yaml")]
    result = CliRunner().invoke(fit_scanner_profile, [*args, *extra])
    assert result.exit_code != 0
    assert match in result.output


def test_fit_refuses_unpaired_data(he_image, tmp_path) -> None:
    root = tmp_path / "unpaired"
    for k in range(1, 4):
        folder = root / "slide_1" / f"sample_{k}"
        atomic_write_image(folder / "A.png", he_image[:SIZE, k * 200 : k * 200 + SIZE])
        atomic_write_image(folder / "B.png", he_image[700 : 700 + SIZE, k * 200 : k * 200 + SIZE])
    args = [
        "--data",
        str(root),
        "--reference",
        "A",
        "--target",
        "B",
        "-o",
        str(tmp_path / "x.yaml"),
    ]
    result = CliRunner().invoke(fit_scanner_profile, args)
    assert result.exit_code != 0
    assert "do not show the same tissue" in result.output
    assert not (tmp_path / "x.yaml").exists()
