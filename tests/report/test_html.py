"""report.json / report.html from a real evaluation (:mod:`tia_scanner_robust.report.html`)."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest

from tia_scanner_robust._io import atomic_write_image
from tia_scanner_robust.data.paired import PairedCollection, PairedSample
from tia_scanner_robust.engines.consistency import ScannerConsistencyEvaluator
from tia_scanner_robust.report import write_report

REQUIRED_KEYS = {
    "task",
    "mode",
    "model",
    "scanners",
    "sample_ids",
    "primary_score",
    "summary",
    "consistency",
    "cov",
    "per_scanner",
    "per_sample",
    "config",
    "timings",
    "versions",
    "figures",
    "analysis",
    "report_version",
}


def _strict_json(text: str) -> dict:
    def refuse(name: str) -> None:
        msg = f"non-strict JSON constant {name}"
        raise ValueError(msg)

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def report(he_image, tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    samples = []
    for k, (y, x) in enumerate(((0, 0), (500, 300), (200, 700))):
        tile = np.ascontiguousarray(he_image[y : y + 64, x : x + 64])
        dark = np.clip(tile.astype(int) - 60, 0, 255).astype(np.uint8)
        for scanner, image in (("A", tile), ("B", tile), ("dark", dark)):
            path = atomic_write_image(root / f"s{k}" / f"{scanner}.png", image)
            samples.append(PairedSample(f"slide/s{k}", scanner, path=path))
    collection = PairedCollection(samples, scanners=["A", "B", "dark"])
    out = tmp_path_factory.mktemp("report")
    result = ScannerConsistencyEvaluator("builtin", verbose=False).evaluate(collection, out)
    return result, write_report(result)


def test_report_json_has_every_number(report):
    result, paths = report
    data = _strict_json(paths["json"].read_text())
    assert set(data) >= REQUIRED_KEYS
    dice = result.consistency["dice"]
    assert data["summary"]["average"] == pytest.approx(dice.average)
    assert data["summary"]["minimum"] == pytest.approx(dice.minimum)
    assert data["summary"]["min_pair"] == list(dice.min_pair)
    pairs = data["consistency"]["dice"]["pairs"]
    assert pairs["A|B"] == pytest.approx(1.0)
    assert pairs["A|dark"] == pytest.approx(dice.pairs[("A", "dark")])
    per_sample = data["consistency"]["dice"]["per_sample"]["A|dark"]
    np.testing.assert_allclose(per_sample, dice.per_sample[("A", "dark")])
    assert data["cov"]["cov"] == pytest.approx(result.cov.cov)
    assert len(data["per_sample"]["cov_fraction"]["dark"]) == 3
    assert data["rgb_stats"]["values"]["A"][0][0] == pytest.approx(result.rgb_stats["A"][0, 0])
    assert {"tiatoolbox", "torch", "python"} <= set(data["versions"])
    assert data["timings"]["total_seconds"] > 0
    assert data["config"]["engine"] == "SemanticSegmentor"
    for name in data["figures"].values():
        assert (paths["json"].parent / name).is_file()


def test_report_html_is_self_contained(report):
    result, paths = report
    text = paths["html"].read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert "http://" not in text
    assert "https://" not in text
    assert "<link" not in text
    assert "<script" not in text
    sources = re.findall(r'src="([^"]*)"', text)
    assert sources
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    # the embedded heatmap is byte-identical to the PNG written beside the page
    embedded = {base64.b64decode(s.split(",", 1)[1]) for s in sources}
    assert paths["pair_matrix"].read_bytes() in embedded
    assert len(sources) == len([k for k in paths if k not in {"json", "html"}])
    # the worst pair is highlighted in the pair table
    worst = " vs ".join(result.worst_pair)
    assert re.search(rf'<tr class="worst"><td>{re.escape(worst)}</td>', text)
