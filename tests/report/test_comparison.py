"""The comparison report of trained variants (:mod:`tia_scanner_robust.report.comparison`)."""

from __future__ import annotations

import base64
import json
import math
import re
from dataclasses import replace

import numpy as np
import pytest

from tia_scanner_robust.report.comparison import (
    METRICS,
    VariantEvaluation,
    aggregate_records,
    plot_lambda_sweep,
    records_markdown,
    write_comparison_report,
)

SCANNERS = ["reference", "warm", "pale"]


def _evaluation(name: str, dice: tuple[float, float, float], task_dice: float | None):
    ab, ac, bc = dice
    matrix = [[None, ab, ac], [ab, None, bc], [ac, bc, None]]
    pairs = {"reference|warm": ab, "reference|pale": ac, "warm|pale": bc}
    worst = min(pairs, key=pairs.get)
    return VariantEvaluation(
        name=name,
        scanners=list(SCANNERS),
        matrix=matrix,
        pairs=pairs,
        n_samples=dict.fromkeys(pairs, 4),
        paired_dice_avg=float(np.mean(dice)),
        paired_dice_min=float(min(dice)),
        min_pair=worst.split("|"),
        task_dice=task_dice,
        task_dice_per_scanner={"reference": task_dice, "warm": 0.5, "pale": float("nan")},
        cov=0.1,
        checkpoint="best.pt",
        checkpoint_sha256="0" * 64,
        eval_seconds=1.5,
    )


def test_variant_evaluation_round_trip_and_pair_consistency():
    ev = _evaluation("A", (0.9, 0.6, 0.7), 0.8)
    data = json.loads(json.dumps(ev.to_dict(), allow_nan=False))
    assert data["task_dice_per_scanner"]["pale"] is None  # NaN written as null
    again = VariantEvaluation.from_dict({**data, "unknown": 1})
    assert again.pairs == ev.pairs
    assert again.min_pair == ["reference", "pale"]
    pc = again.pair_consistency()
    assert pc.scanners == SCANNERS
    assert pc.pairs[("warm", "pale")] == pytest.approx(0.7)
    assert pc.n_samples[("reference", "warm")] == 4
    assert math.isnan(np.asarray(pc.matrix)[0, 0])
    assert pc.average == pytest.approx(ev.paired_dice_avg)
    assert pc.minimum == pytest.approx(ev.paired_dice_min)


def test_comparison_report_is_self_contained_and_complete(tmp_path):
    evaluations = {
        "baseline": _evaluation("baseline", (0.6, 0.3, 0.5), 0.9),
        "simcons": _evaluation("simcons", (0.8, 0.5, 0.7), None),
    }
    training = {"simcons": {"config": "fda_simcons", "global_step": 7, "train_seconds": 2.25}}
    paths = write_comparison_report(
        evaluations, tmp_path, settings={"steps": 7}, training=training, note="a <note>"
    )
    assert {"json", "html", "bars", "pair_matrix_baseline", "pair_matrix_simcons"} <= set(paths)
    report = json.loads(paths["json"].read_text(), parse_constant=lambda c: 1 / 0)
    assert set(report["variants"]) == {"baseline", "simcons"}
    assert report["settings"] == {"steps": 7}
    simcons = report["variants"]["simcons"]
    assert simcons["paired_dice"]["minimum"] == pytest.approx(0.5)
    assert simcons["paired_dice"]["min_pair"] == ["reference", "pale"]
    assert simcons["task_dice"] is None
    assert simcons["training"]["global_step"] == 7
    assert report["variants"]["baseline"]["training"] is None
    page = paths["html"].read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(?:src|href)=["'](?!data:)""", page)
    sources = re.findall(r'src="data:image/png;base64,([^"]*)"', page)
    embedded = {base64.b64decode(s) for s in sources}
    assert len(sources) == 3  # two heatmaps and the bar chart
    assert paths["bars"].read_bytes() in embedded
    assert paths["pair_matrix_simcons"].read_bytes() in embedded
    # the best average paired Dice is highlighted; the note is escaped
    assert '<tr class="best"><td>simcons</td><td>fda_simcons</td><td>0.6667</td>' in page
    assert "a &lt;note&gt;" in page
    # missing numbers read n/a, not nan
    assert "nan" not in re.sub(r"base64,[^\"]*", "", page).lower()
    assert "<td>n/a</td>" in page
    with pytest.raises(ValueError, match="evaluations is empty"):
        write_comparison_report({}, tmp_path)


def test_aggregate_skips_missing_values_and_plots_the_sweep(tmp_path):
    records = [
        {"label": "lam 0", "lam": 0.0, "paired_dice_avg": 0.5, "task_dice": None},
        {"label": "lam 0", "lam": 0.0, "paired_dice_avg": 0.7, "task_dice": 0.9},
        {"label": "lam 1", "lam": 1.0, "paired_dice_avg": 0.8, "task_dice": float("nan")},
    ]
    rows = aggregate_records(records)
    assert [r["label"] for r in rows] == ["lam 0", "lam 1"]
    assert rows[0]["n"] == 2
    assert rows[0]["lam"] == 0.0
    assert rows[0]["paired_dice_avg_mean"] == pytest.approx(0.6)
    assert rows[0]["task_dice_mean"] == pytest.approx(0.9)  # None is skipped
    assert math.isnan(rows[1]["task_dice_mean"])
    assert math.isnan(rows[0]["paired_dice_min_mean"])  # no value at all
    table = records_markdown(rows, percent=False)
    assert table.splitlines()[0] == "| variant | seeds | " + " | ".join(METRICS.values()) + " |"
    assert "| lam 1 | 1 | 0.8000 +- 0.0000 | n/a | n/a |" in table
    path = plot_lambda_sweep([r["lam"] for r in rows], rows, tmp_path / "sweep.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_model_warnings_reach_the_comparison_report(tmp_path):
    quiet = _evaluation("baseline", (0.9, 0.6, 0.7), 0.8)
    blank = replace(
        _evaluation("blank", (1.0, 1.0, 1.0), 0.0),
        warnings=["Scanner 'warm': the model predicts background everywhere."],
    )
    paths = write_comparison_report({"baseline": quiet, "blank": blank}, tmp_path)
    report = json.loads(paths["json"].read_text())
    assert report["warnings"] == [
        "blank: Scanner 'warm': the model predicts background everywhere."
    ]
    page = paths["html"].read_text()
    assert page.count('class="banner"') == 1
    assert "predicts background everywhere" in page
    # no warning, no banner
    paths = write_comparison_report({"baseline": quiet}, tmp_path / "quiet")
    assert json.loads(paths["json"].read_text())["warnings"] == []
    assert 'class="banner"' not in paths["html"].read_text()
