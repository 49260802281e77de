"""The end-to-end demo command (``tia-scanner-robust demo --quick``)."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import numpy as np
import pytest
from click.testing import CliRunner

from tia_scanner_robust.cli import main

if TYPE_CHECKING:
    from pathlib import Path


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_demo_quick_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    args = ["demo", "-o", str(out), "--quick", "--steps", "2", "--batch-size", "2", "--no-progress"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "paired Dice avg" in result.output  # the summary table
    html_path = out / "report.html"
    assert html_path.is_file()
    page = html_path.read_text(encoding="utf-8")
    # self-contained: every image inline, no external resource; links only to
    # the per-model reports written beside it
    assert not re.search(r"""src=["'](?!data:)""", page)
    links = re.findall(r"""href=["']([^"']+)["']""", page)
    assert links, "the comparison report links to each model's report"
    for link in links:
        assert not re.match(r"[a-z][a-z0-9+.-]*:|//", link), link
        assert (out / link).is_file(), link
    assert page.count('src="data:image/png;base64,') >= 3  # two heatmaps and the bar chart
    # the note says what the SimCons model adds besides the consistency loss
    assert "plus fda in the training pipeline, plus the SimCons consistency loss" in page
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert set(report["variants"]) == {"baseline", "simcons"}
    assert report["settings"]["steps"] == 2
    for entry in report["variants"].values():
        dice = entry["paired_dice"]
        assert 0.0 <= dice["minimum"] <= dice["average"] <= 1.0
        pairs = [v for v in entry["pairs"].values() if v is not None]
        assert len(entry["pairs"]) == 10  # 5 scanners
        assert dice["minimum"] == pytest.approx(min(pairs))
        assert dice["average"] == pytest.approx(np.mean(pairs))
        assert 0.0 <= entry["task_dice"] <= 1.0
        assert entry["training"]["global_step"] == 2
    # the runs are checkpointed: running again reuses the models and evaluations
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0, again.output
    assert again.output.count("trained (reused)") == 2
