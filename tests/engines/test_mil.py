"""Tests of the TIAToolbox-compatible MIL slide predictor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from tiatoolbox.models.engine.io_config import IOPatchPredictorConfig
from tiatoolbox.wsicore.wsireader import WSIReader
from torch import nn

from tests.data.test_registration import write_pyramidal_tiff
from tia_scanner_robust._tiatoolbox import stem_runs as _stem_runs
from tia_scanner_robust.data.features import FeatureStore
from tia_scanner_robust.engines.mil import MILSlidePredictor
from tia_scanner_robust.features.extract import IMAGENET_NORMALIZATION, make_preproc
from tia_scanner_robust.models.mil import MILModel, load_mil_checkpoint
from tia_scanner_robust.training.mil import MILBagModule

PATCH = 64
FEATURE_DIM = 8


def tiny_backbone() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, FEATURE_DIM, kernel_size=8, stride=8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    ).eval()


def tiny_mil(aggregator: str = "gap") -> MILModel:
    torch.manual_seed(1)
    return MILModel(FEATURE_DIM, 2, aggregator, projection_hidden=6).eval()


def ioconfig() -> IOPatchPredictorConfig:
    return IOPatchPredictorConfig(
        input_resolutions=[{"units": "baseline", "resolution": 1.0}],
        patch_input_shape=(PATCH, PATCH),
        stride_shape=(PATCH, PATCH),
    )


@pytest.fixture(scope="module")
def wsis(he_image, tmp_path_factory) -> list:
    root = tmp_path_factory.mktemp("mil_wsis")
    (root / "a").mkdir()
    (root / "b").mkdir()
    first = write_pyramidal_tiff(root / "a" / "slide.tif", he_image[:256, :320].copy(), 0.5)
    # same file stem in another folder: the engine names outputs by stem
    second = write_pyramidal_tiff(root / "b" / "slide.tif", he_image[500:692, 300:556].copy(), 0.5)
    return [first, second]


@pytest.fixture(scope="module")
def wsi_results(wsis, tmp_path_factory):
    backbone = tiny_backbone()
    predictor = MILSlidePredictor(tiny_mil("abmil"), backbone, ioconfig=ioconfig(), batch_size=16)
    records = predictor.predict_wsis(wsis, tmp_path_factory.mktemp("mil_out"))
    return predictor, backbone, records


def test_predict_wsis_matches_direct_backbone_and_mil(wsis, wsi_results):
    predictor, backbone, records = wsi_results
    assert [r["path"] for r in records] == wsis
    assert records[0]["zarr"] != records[1]["zarr"]
    preproc = make_preproc(*IMAGENET_NORMALIZATION)
    for path, record in zip(wsis, records, strict=True):
        coords = record["coordinates"]
        reader = WSIReader.open(path)
        width, height = reader.slide_dimensions(1.0, "baseline")
        assert record["n_instances"] == coords.shape[0] == (width // PATCH) * (height // PATCH)
        patches = np.stack(
            [reader.read_bounds(tuple(int(v) for v in box), 1.0, "baseline") for box in coords]
        )
        images = torch.from_numpy(np.stack([preproc(p) for p in patches])).permute(0, 3, 1, 2)
        with torch.no_grad():
            features = backbone(images.float())
            logits = predictor.mil_model(features[None])["logits"][0]
        np.testing.assert_allclose(record["logits"], logits.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(
            record["probabilities"], torch.softmax(logits, 0).numpy(), rtol=1e-4, atol=1e-6
        )
        assert record["score"] == pytest.approx(float(record["probabilities"][1]))
        assert record["attention"].shape == (coords.shape[0],)
        assert record["attention"].sum() == pytest.approx(1.0, abs=1e-5)


def test_predict_wsis_equals_mil_on_engine_zarr(wsi_results):
    predictor, _, records = wsi_results
    for record in records:
        features = np.asarray(zarr.open_group(str(record["zarr"]), mode="r")["features"][...])
        features = features.reshape(features.shape[0], -1)
        assert features.shape == (record["n_instances"], FEATURE_DIM)
        expected = predictor.mil_model.predict_bags([torch.from_numpy(features)])
        np.testing.assert_allclose(record["probabilities"], expected["probabilities"][0], atol=1e-6)
        assert record["prediction"] == int(expected["predictions"][0])


def test_predict_wsis_mask_restricts_patches(wsis, wsi_results, tmp_path):
    predictor, _, records = wsi_results
    mask = np.zeros((256, 320), np.uint8)
    mask[:, :128] = 1  # left 2 of the 5 patch columns
    (masked,) = predictor.predict_wsis([wsis[0]], tmp_path, masks=[mask])
    coords = masked["coordinates"]
    assert 0 < masked["n_instances"] < records[0]["n_instances"]
    assert coords[:, 0].max() < 128
    keep = np.isin(records[0]["coordinates"][:, 0], coords[:, 0])
    assert masked["n_instances"] == int(keep.sum())


def make_store(path, n_slides: int = 5) -> FeatureStore:
    rng = np.random.default_rng(0)
    store = FeatureStore(path, mode="w")
    for i in range(n_slides):
        store.write_slide(
            f"P{i}",
            "AT2" if i % 2 else "GT450",
            rng.normal(size=(3 + i, FEATURE_DIM)).astype(np.float32),
            label=i % 2,
            split="test" if i < 4 else "train",
        )
    return store


@pytest.mark.parametrize("aggregator", ["gap", "abmil"])
def test_predict_store_equals_predict_bags(tmp_path, aggregator):
    store = make_store(tmp_path / "f.zarr")
    model = tiny_mil(aggregator)
    records = MILSlidePredictor(model, batch_size=3).predict_store(store, split="test")
    slides = store.filter(split="test")
    assert [(r["specimen_id"], r["scanner"]) for r in records] == [
        (s.specimen_id, s.scanner) for s in slides
    ]
    bags = [store.read_key(s.key).features for s in slides]
    expected = model.predict_bags(bags, batch_size=2)
    np.testing.assert_allclose(
        np.stack([r["probabilities"] for r in records]), expected["probabilities"], atol=1e-6
    )
    assert [r["prediction"] for r in records] == expected["predictions"].tolist()
    assert [r["label"] for r in records] == [0, 1, 0, 1]
    assert [r["n_instances"] for r in records] == [3, 4, 5, 6]
    for record in records:
        assert record["attention"].shape == (record["n_instances"],)


def test_gap_prediction_is_permutation_invariant(tmp_path):
    rng = np.random.default_rng(3)
    bag = rng.normal(size=(7, FEATURE_DIM)).astype(np.float32)
    store = FeatureStore(tmp_path / "p.zarr", mode="w")
    store.write_slide("P", "A", bag)
    store.write_slide("P", "B", bag[rng.permutation(7)])
    a, b = MILSlidePredictor(tiny_mil("gap")).predict_store(store)
    np.testing.assert_allclose(a["probabilities"], b["probabilities"], atol=1e-6)
    assert a["label"] is None


def test_from_checkpoint_trainer_format(tmp_path):
    model = tiny_mil("abmil")
    config = {"aggregator": "abmil", "projection_hidden": 6}
    path = tmp_path / "best.pt"
    torch.save({"model": MILBagModule(model).state_dict(), "model_config": None}, path)
    with pytest.raises(ValueError, match="model_config"):
        load_mil_checkpoint(path)
    predictor = MILSlidePredictor.from_checkpoint(path, model_config=config)
    bag = np.random.default_rng(0).normal(size=(4, FEATURE_DIM)).astype(np.float32)
    expected = model.predict_bags([bag])["probabilities"][0]
    np.testing.assert_allclose(predictor.predict_bag(bag)["probabilities"], expected, atol=1e-6)


def test_errors(tmp_path):
    predictor = MILSlidePredictor(tiny_mil())
    with pytest.raises(ValueError, match="feature_model"):
        predictor.predict_wsis([tmp_path / "x.tif"], tmp_path)
    with pytest.raises(ValueError, match="shape"):
        predictor.predict_bag(np.zeros((3, FEATURE_DIM + 1), np.float32))
    with pytest.raises(ValueError, match="positive_class"):
        MILSlidePredictor(tiny_mil(), positive_class=2)
    with pytest.raises(FileNotFoundError, match="missing"):
        MILSlidePredictor(tiny_mil(), tiny_backbone()).predict_wsis(
            [tmp_path / "missing.tif"], tmp_path
        )
    store = FeatureStore(tmp_path / "w.zarr", mode="w")
    store.write_slide("P", "A", np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match="feature size"):
        predictor.predict_store(store)


def test_stem_runs_split_clashing_stems():
    paths = [Path("a/s.tif"), Path("b/s.tif"), Path("a/t.tif"), Path("c/s.svs")]
    assert _stem_runs(paths) == [[0, 2], [1], [3]]
