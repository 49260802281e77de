"""``tia-scanner-robust train-mil`` end to end on a tiny synthetic store."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tia_scanner_robust.cli.train_mil import train_mil

TINY = [
    "--set", "synthetic.task_specimens=16",
    "--set", "synthetic.multi_specimens=10",
    "--set", "synthetic.patches=6",
    "--set", "synthetic.feature_dim=8",
    "--set", "synthetic.world={scanners: [A, B, C]}",
    "--set", "model.projection_hidden=8",
    "--set", "trainer.batch_size=8",
    "--set", "scangen.batch_size=4",
    "--set", "scangen.n_subsample=4",
]  # fmt: skip


def test_train_mil_cli_writes_results(tmp_path):
    out = tmp_path / "run"
    args = ["--config", "mil_scangen", "--synthetic", "-o", str(out), "--max-steps", "4"]
    args += [*TINY, "--set", "trainer.log_every_n_steps=1"]
    result = CliRunner().invoke(train_mil, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "results.json").read_text())
    test = saved["test"]
    assert 0.0 <= test["auc"] <= 1.0
    assert test["scanner_cov"] >= 0.0
    assert test["scanners"] == ["A", "B", "C"]
    assert saved["fit"]["global_step"] == 4
    assert saved["config"]["scangen"]["lam"] > 0
    steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert "val_auc" in metrics[-1]
    assert all(k in metrics[-1] for k in ("train_supervised", "train_scangen"))
    assert len(steps) == 4
    assert steps[-1]["scangen/n_attract"] > 0
    assert steps[-1]["loss"] == pytest.approx(steps[-1]["supervised"] + steps[-1]["scangen"])
