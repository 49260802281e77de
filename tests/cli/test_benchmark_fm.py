"""``tia-scanner-robust benchmark-fm --synthetic`` end to end (paper Table 1 shape)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tests.cli.test_train_mil import TINY
from tia_scanner_robust.cli.benchmark_fm import benchmark_fm


def test_benchmark_fm_synthetic(tmp_path):
    out = tmp_path / "bench"
    tiny = [a.replace("multi_specimens=10", "multi_specimens=6") for a in TINY]
    args = ["--synthetic", "--models", "synthetic-d64-strong-scanner-shift"]
    args += ["-o", str(out), "--set", "trainer.max_steps=2", *tiny]
    result = CliRunner().invoke(benchmark_fm, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "benchmark.json").read_text())
    assert list(saved["rows"]) == ["synthetic-d64-strong-scanner-shift"]
    for row in saved["rows"].values():
        for variant in ("baseline", "scangen"):
            assert 0.0 <= row["auc"][variant] <= 1.0
            assert row["scanner_cov"][variant] >= 0.0
            assert row["magnification_cov"][variant] >= 0.0
        rel = row["scanner_cov"]["relative_change_percent"]
        expected = 100 * (row["scanner_cov"]["scangen"] / row["scanner_cov"]["baseline"] - 1)
        assert rel == pytest.approx(expected)
    table = (out / "benchmark.md").read_text()
    assert table.count("\n| synthetic-") == 1
