"""``evaluate --protocol``: unpaired data, and paired data with masks (both protocols)."""

from __future__ import annotations

import json
import re

import numpy as np
from click.testing import CliRunner

from tia_scanner_robust._io import atomic_write_image
from tia_scanner_robust.cli.evaluate import evaluate


def _write(tmp_path, he_image, rows):
    lines = ["specimen_id,scanner,path,mask_path"]
    for specimen, scanner, (y, x, h, w) in rows:
        image = np.ascontiguousarray(he_image[y : y + h, x : x + w])
        name = f"{specimen}_{scanner}"
        atomic_write_image(tmp_path / f"{name}.png", image)
        atomic_write_image(tmp_path / f"{name}_m.png", (image[..., 0] < 160).astype(np.uint8))
        lines.append(f"{specimen},{scanner},{name}.png,{name}_m.png")
    path = tmp_path / "manifest.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def _run(manifest, out, *extra):
    args = ["--data", str(manifest), "-o", str(out), "--no-progress", "--n-resamples", "100"]
    return CliRunner().invoke(evaluate, [*args, *extra])


def test_unpaired_manifest_gets_the_unpaired_report(he_image, tmp_path):
    rows = [
        (f"t{k}", scanner, (90 * k, 300 * j, 60 + 7 * k, 50 + 5 * j))
        for j, scanner in enumerate(("X", "Y"))
        for k in range(3)
    ]
    rows = [(f"{scanner}_{spec}", scanner, box) for spec, scanner, box in rows]  # no sharing
    manifest = _write(tmp_path, he_image, rows)
    result = _run(manifest, tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "unpaired protocol" in result.output
    assert "worst scanner" in result.output
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert data["protocol"] == "unpaired"
    assert set(data["per_scanner"]) == {"X", "Y"}
    assert data["summary"]["worst_scanner"] in {"X", "Y"}
    assert len(data["summary"]["mean_ci95"]) == 2
    assert any("only 3 scored sample" in w for w in data["warnings"])
    page = (tmp_path / "out" / "report.html").read_text()
    assert page.count('class="banner"') == len(data["warnings"])
    assert "prediction vs truth" not in page  # drawn inside the PNG, not as text
    assert len(re.findall(r'src="data:image/png;base64,', page)) == len(data["figures"]) == 2
    # the same manifest forced through the paired protocol: the pairing error, clearly
    forced = _run(manifest, tmp_path / "paired", "--protocol", "paired")
    assert forced.exit_code != 0
    assert "lack scanners" in forced.output


def test_paired_data_with_masks_gets_both_protocols(he_image, tmp_path):
    rows = [(f"s{k}", scanner, (100 * k, 200, 64, 64)) for k in range(3) for scanner in ("X", "Y")]
    manifest = _write(tmp_path, he_image, rows)
    result = _run(manifest, tmp_path / "out", "--no-save-predictions")
    assert result.exit_code == 0, result.output
    assert "dice: average" in result.output  # the paired protocol
    assert "unpaired protocol" in result.output  # and the per-scanner one
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert data["consistency"]["dice"]["pairs"]["X|Y"] == 1.0
    dg = data["domain_generalisation"]
    assert dg["metric"] == "dice"
    np.testing.assert_allclose(
        dg["per_sample"]["X"]["dice"], data["per_sample"]["gt_dice"]["X"], atol=1e-12
    )
    page = (tmp_path / "out" / "report.html").read_text()
    assert "Per-scanner performance against ground truth (unpaired protocol)" in page
    assert "Scanner-pair matrix" in page
