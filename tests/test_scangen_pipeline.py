"""End-to-end tests of the ScanGen pipeline: train-mil, evaluation, ablation, benchmark-fm."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.metrics import roc_auc_score

from tia_scanner_robust.cli.benchmark_fm import benchmark_fm
from tia_scanner_robust.cli.train_mil import train_mil
from tia_scanner_robust.data.features import BagDataset
from tia_scanner_robust.experiments.scangen import (
    evaluate_mil,
    limited_scanner_ablation,
    load_mil_config,
    make_synthetic_store,
)
from tia_scanner_robust.models.mil import MILModel

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


def test_evaluation_matches_reference(tmp_path):
    store = make_synthetic_store(
        tmp_path / "s.zarr",
        task_specimens=4,
        multi_specimens=10,
        patches=5,
        feature_dim=8,
        magnifications=("40x", "20x"),
        world={"scanners": ("A", "B", "C")},
    )
    model = MILModel(8, projection_hidden=4).eval()
    res = evaluate_mil(model, store, "test")
    bags = BagDataset(store, "test")
    probs = model.predict_bags(bags)["probabilities"][:, 1]
    labels = np.asarray(bags.labels)
    assert res["auc"] == pytest.approx(roc_auc_score(labels, probs))
    # scanner CoV by hand: per (specimen, magnification), std/|mean| over scanners
    keys = [
        f"{p}|{m}"
        for p, m in zip(bags.specimen_ids, [s.magnification for s in bags.slides], strict=True)
    ]
    ratios = []
    for key in dict.fromkeys(keys):
        p = probs[[k == key for k in keys]]
        ratios.append(p.std() / abs(p.mean()))
    assert res["scanner_cov"] == pytest.approx(np.mean(ratios), rel=1e-6)
    units = [f"{p}|{s}" for p, s in zip(bags.specimen_ids, bags.scanner_ids, strict=True)]
    mag_ratios = []
    for unit in dict.fromkeys(units):
        p = probs[[u == unit for u in units]]
        mag_ratios.append(p.std() / abs(p.mean()))
    assert res["magnification_cov"] == pytest.approx(np.mean(mag_ratios), rel=1e-6)


def test_limited_scanner_ablation(tmp_path):
    store = make_synthetic_store(
        tmp_path / "s.zarr",
        task_specimens=12,
        multi_specimens=10,
        patches=4,
        feature_dim=8,
        world={"scanners": ("A", "B", "C")},
    )
    config = load_mil_config(
        "mil_scangen",
        {
            "model": {"projection_hidden": 8},
            "trainer": {"max_steps": 1, "batch_size": 6},
            "scangen": {"batch_size": 4, "n_subsample": 4},
        },
    )
    res = limited_scanner_ablation(config, tmp_path / "ablation", store=store)
    combos = [tuple(c["scanners"]) for c in res["combinations"]]
    assert combos == [("A", "B"), ("A", "C"), ("B", "C"), ("A", "B", "C")]
    assert set(res["by_size"]) == {"2", "3"}
    assert res["by_size"]["2"]["n"] == 3
    assert sum(res["scanner_in_best"].values()) == 2 * len(res["best"])
    assert (tmp_path / "ablation" / "ablation.json").is_file()


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
