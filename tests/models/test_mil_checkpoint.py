"""Self-describing MIL checkpoints: ``MILModel.config``/``from_config`` and reloading.

Checkpoints written by ``train-mil`` (the trainer, through ``MILBagModule``)
store the model's config, so :func:`load_mil_checkpoint` and
``MILSlidePredictor.from_checkpoint`` rebuild the model without being told
its configuration.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from tia_scanner_robust.cli.train_mil import train_mil
from tia_scanner_robust.models.mil import (
    AGGREGATORS,
    MIL_CONFIG_KEYS,
    MILModel,
    ProjectionMLP,
    build_mil_model,
    create_aggregator,
    load_mil_checkpoint,
)
from tia_scanner_robust.models.mil_predictor import MILSlidePredictor
from tia_scanner_robust.training.mil import MILBagModule, evaluate_mil, train_mil_model
from tia_scanner_robust.training.mil_config import load_mil_config
from tia_scanner_robust.training.synthetic import make_synthetic_store

if TYPE_CHECKING:
    from tia_scanner_robust.data.features import FeatureStore

FEATURE_DIM = 8
#: Non-default constructor arguments, so that a config falling back to defaults shows.
KWARGS = {
    "gap": {"hidden_dim": 5, "dropout": 0.1},
    "abmil": {"attention_dim": 6, "gated": False, "dropout": 0.2},
    "dsmil": {"query_dim": 7, "nonlinear_query": False, "passing_v": True, "dropout_v": 0.1},
    "slotmil": {"num_slots": 3, "num_heads": 2, "hidden_dim": 6, "subsample": 4, "eps": 1e-6},
}


def json_round_trip(obj):
    return json.loads(json.dumps(obj))


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> FeatureStore:
    return make_synthetic_store(
        tmp_path_factory.mktemp("mil_ckpt") / "f.zarr",
        task_specimens=12,
        multi_specimens=10,
        patches=5,
        feature_dim=FEATURE_DIM,
        world={"scanners": ("A", "B", "C")},
    )


def tiny_config(aggregator: str) -> dict:
    return load_mil_config(
        "mil_baseline",
        {
            "model": {
                "aggregator": aggregator,
                "projection_hidden": 6,
                "aggregator_kwargs": {aggregator: KWARGS[aggregator]},
            },
            "trainer": {"max_steps": 3, "epochs": 2, "batch_size": 4, "device": "cpu"},
        },
    )


@pytest.mark.parametrize("aggregator", sorted(AGGREGATORS))
def test_train_mil_checkpoint_reloads_without_model_config(aggregator, store, tmp_path):
    model, fit = train_mil_model(tiny_config(aggregator), tmp_path, store=store)
    assert fit.best_checkpoint is not None
    for path in (fit.best_checkpoint, fit.last_checkpoint):
        payload = torch.load(path, map_location="cpu", weights_only=True)
        assert payload["model_config"] == model.config
        assert payload["model_config"]["aggregator_kwargs"].items() >= KWARGS[aggregator].items()
    loaded = load_mil_checkpoint(fit.best_checkpoint)
    assert loaded.config == model.config
    assert not loaded.training
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)
    records = MILSlidePredictor.from_checkpoint(fit.best_checkpoint).predict_store(store)
    expected = MILSlidePredictor(model).predict_store(store)
    assert len(records) == len(expected) == len(store.slides())
    for got, want in zip(records, expected, strict=True):
        assert got["key"] == want["key"]
        np.testing.assert_array_equal(got["probabilities"], want["probabilities"])
        assert got["prediction"] == want["prediction"]
    # the comparison is sensitive: an untrained model of the same config differs
    torch.manual_seed(123)
    fresh = MILSlidePredictor(MILModel.from_config(model.config)).predict_store(store)
    assert not np.allclose(
        [r["probabilities"] for r in fresh], [r["probabilities"] for r in expected]
    )


def test_train_mil_cli_checkpoint_is_self_describing(store, tmp_path):
    out = tmp_path / "run"
    args = ["--config", "mil_baseline", "--store", store.path, "-o", str(out)]
    args += ["--aggregator", "abmil", "--max-steps", "3", "--device", "cpu"]
    args += ["--set", "model.projection_hidden=6", "--set", "trainer.batch_size=4"]
    result = CliRunner().invoke(train_mil, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "results.json").read_text())
    model = load_mil_checkpoint(out / "best.pt")
    assert model.aggregator_name == "abmil"
    assert model.config["projection_hidden"] == 6
    assert model.config["aggregator_kwargs"]["attention_dim"] == 64  # mil_baseline's
    # results.json was computed with the in-memory model: the reloaded one agrees
    assert evaluate_mil(model, store, "test")["auc"] == pytest.approx(saved["test"]["auc"])


def test_old_checkpoint_without_config_needs_model_config(tmp_path):
    torch.manual_seed(0)
    model = MILModel(FEATURE_DIM, aggregator="abmil", projection_hidden=6).eval()
    section = {"aggregator": "abmil", "projection_hidden": 6}
    bag = np.random.default_rng(0).normal(size=(5, FEATURE_DIM)).astype(np.float32)
    expected = model.predict_bags([bag])["probabilities"][0]
    payloads = {
        "none.pt": {"model": MILBagModule(model).state_dict(), "model_config": None},
        "missing.pt": {"model": MILBagModule(model).state_dict()},
        "bare.pt": model.state_dict(),
    }
    for name, payload in payloads.items():
        torch.save(payload, tmp_path / name)
        with pytest.raises(ValueError, match=r"stores no MIL model config.*pass model_config="):
            load_mil_checkpoint(tmp_path / name)
        with pytest.raises(ValueError, match="pass model_config="):
            MILSlidePredictor.from_checkpoint(tmp_path / name)
        predictor = MILSlidePredictor.from_checkpoint(tmp_path / name, model_config=section)
        np.testing.assert_allclose(predictor.predict_bag(bag)["probabilities"], expected, atol=1e-6)
    # a stored config that is a 'model' section (no feature_dim) still loads
    torch.save({"model": model.state_dict(), "model_config": section}, tmp_path / "section.pt")
    assert load_mil_checkpoint(tmp_path / "section.pt").config == model.config


def test_explicit_model_config_wins_over_stored(tmp_path):
    model = MILModel(FEATURE_DIM, aggregator="abmil", projection_hidden=6)
    path = tmp_path / "best.pt"
    torch.save({"model": MILBagModule(model).state_dict(), "model_config": model.config}, path)
    override = json_round_trip(model.config)
    override["aggregator_kwargs"]["dropout"] = 0.25  # same weights, other dropout
    loaded = load_mil_checkpoint(path, model_config=override)
    assert loaded.config["aggregator_kwargs"]["dropout"] == 0.25
    assert load_mil_checkpoint(path).config["aggregator_kwargs"]["dropout"] == 0.0
    # an explicit config for another architecture is used (and does not fit)
    with pytest.raises(ValueError, match="do not fit"):
        load_mil_checkpoint(path, model_config={"aggregator": "gap", "projection_hidden": 6})


def test_stored_config_that_is_not_a_mil_config(tmp_path):
    model = MILModel(FEATURE_DIM, projection_hidden=6)
    path = tmp_path / "seg.pt"
    smp_like = {"feature_dim": 8, "arch": "unet", "encoder_name": "resnet18"}
    torch.save({"model": model.state_dict(), "model_config": smp_like}, path)
    with pytest.raises(ValueError, match=r"does not describe a MIL model.*encoder_name"):
        load_mil_checkpoint(path)


@pytest.mark.parametrize("aggregator", sorted(AGGREGATORS))
def test_config_json_round_trip_rebuilds_identical_model(aggregator):
    torch.manual_seed(0)
    model = MILModel(
        FEATURE_DIM,
        3,
        aggregator,
        projection_hidden=6,
        projection_out=4,
        projection_dropout=0.3,
        aggregator_kwargs=KWARGS[aggregator],
    )
    config = model.config
    assert set(config) == set(MIL_CONFIG_KEYS)
    assert json_round_trip(config) == config  # JSON-serialisable, types kept
    assert config["aggregator_kwargs"].items() >= KWARGS[aggregator].items()
    torch.manual_seed(0)
    clone = MILModel.from_config(json_round_trip(config))
    assert clone.config == config
    # same seed, same architecture: identical initial weights and outputs
    for key, value in model.state_dict().items():
        torch.testing.assert_close(clone.state_dict()[key], value, rtol=0, atol=0)
    bags = torch.randn(2, 5, FEATURE_DIM)
    torch.testing.assert_close(clone.eval()(bags)["logits"], model.eval()(bags)["logits"])
    assert build_mil_model(FEATURE_DIM, config).config == config
    # the config is a copy: mutating it does not change the model
    config["aggregator_kwargs"]["dropout"] = 0.9
    assert model.config["aggregator_kwargs"] != config["aggregator_kwargs"]


def test_config_variants_and_parts():
    model = MILModel(FEATURE_DIM, aggregator="GAP", projection=False)
    config = json_round_trip(model.config)
    assert config["aggregator"] == "gap"
    assert config["projection"] is False
    clone = MILModel.from_config(config)
    assert isinstance(clone.projection, torch.nn.Identity)
    assert clone.embedding_dim == FEATURE_DIM
    fraction = MILModel(FEATURE_DIM, aggregator="slotmil", aggregator_kwargs={"subsample": 0.5})
    assert json_round_trip(fraction.config)["aggregator_kwargs"]["subsample"] == 0.5
    assert isinstance(fraction.config["aggregator_kwargs"]["subsample"], float)
    assert MILModel.from_config({"feature_dim": 4}).config == MILModel(4).config
    g = ProjectionMLP(FEATURE_DIM, 6, out_dim=3, dropout=0.1, num_layers=2)
    assert ProjectionMLP.from_config(json_round_trip(g.config)).config == g.config
    for name in AGGREGATORS:
        agg = create_aggregator(name, in_dim=6, num_classes=3, **KWARGS[name])
        rebuilt = type(agg).from_config(json_round_trip(agg.config))
        assert rebuilt.config == agg.config
        assert [p.shape for p in rebuilt.parameters()] == [p.shape for p in agg.parameters()]


def test_from_config_errors():
    with pytest.raises(ValueError, match=r"Unknown MILModel config keys.*'bogus'"):
        MILModel.from_config({"feature_dim": 4, "bogus": 1})
    with pytest.raises(ValueError, match="feature_dim"):
        MILModel.from_config({"aggregator": "gap"})
    with pytest.raises(TypeError, match="mapping"):
        MILModel.from_config(["feature_dim", 4])
