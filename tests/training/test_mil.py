"""MIL training through the trainer: evaluation against references, the MIL task adapter."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from tia_scanner_robust.data.bag_datasets import BagDataset
from tia_scanner_robust.models.mil import MILModel
from tia_scanner_robust.training.mil import MILBagModule, MILTrainer, evaluate_mil
from tia_scanner_robust.training.synthetic import make_synthetic_store


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
    torch.manual_seed(0)  # batch sizes 32 (evaluate_mil) and 8 differ in float rounding
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


def test_validation_is_one_pass_and_auc_matches_reference(tmp_path, monkeypatch):
    store = make_synthetic_store(
        tmp_path / "s.zarr", task_specimens=8, multi_specimens=10, patches=4, feature_dim=8
    )
    torch.manual_seed(0)
    model = MILBagModule(MILModel(8, projection_hidden=4))
    val = BagDataset(store, "test")
    config = {
        "epochs": 1,
        "batch_size": 4,
        "val_batch_size": 3,
        "task": "classification",
        "image_key": "features",
        "target_key": "label",
        "monitor": "val_auc",
        "progress": False,
        "device": "cpu",
        "output_dir": str(tmp_path / "run"),
    }
    trainer = MILTrainer(model, BagDataset(store, "train"), val, config=config)
    calls = []
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda inputs: calls.append(1) or forward(inputs))
    metrics = trainer.validate()
    assert len(calls) == -(-len(val) // 3)  # one forward per validation batch
    probs = MILModel.predict_bags(model.mil, val)["probabilities"][:, 1]
    labels = np.asarray(val.labels)
    assert metrics["val_auc"] == pytest.approx(roc_auc_score(labels, probs), abs=1e-6)
    assert metrics["val_accuracy"] == pytest.approx(np.mean((probs > 0.5) == labels), abs=1e-6)
    assert set(metrics) == {"val_loss", "val_accuracy", "val_auc"}
