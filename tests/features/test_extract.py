"""Tests of feature extraction into the FeatureStore (TIAToolbox DeepFeatureExtractor)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from tia_scanner_robust.data.features import FeatureStore
from tia_scanner_robust.data.paired import PairedCollection, PairedSample
from tia_scanner_robust.features.extract import (
    extract_features,
    make_preproc,
    resolve_feature_model,
    tile_image,
)


class CountingNet(nn.Module):
    """Mean RGB of the (normalised) patch, counting calls; may fail on a given slide."""

    def __init__(self, fail_on_call: int | None = None) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.calls = 0
        self.fail_on_call = fail_on_call

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.fail_on_call is not None and self.calls == self.fail_on_call:
            msg = "simulated crash"
            raise RuntimeError(msg)
        return self.scale * x.mean(dim=(2, 3))


@pytest.fixture
def collection(tmp_path, he_image):
    samples = []
    for p in range(3):
        for s, shift in (("A", 0), ("B", 20)):
            crop = np.clip(he_image[p * 64 : p * 64 + 64, :128].astype(int) + shift, 0, 255).astype(
                np.uint8
            )
            path = tmp_path / f"P{p}_{s}.png"
            cv2.imwrite(str(path), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
            samples.append(
                PairedSample(
                    specimen_id=f"P{p}",
                    scanner=s,
                    path=path,
                    magnification="40x",
                    label=p % 2,
                    split="train",
                )
            )
    return PairedCollection(samples)


def test_tile_image_covers_the_image():
    image = np.arange(64 * 96 * 3, dtype=np.int64).reshape(64, 96, 3)
    tiles, coords = tile_image(image, 32)
    assert tiles.shape == (6, 32, 32, 3)
    for tile, (x0, y0, x1, y1) in zip(tiles, coords, strict=True):
        np.testing.assert_array_equal(tile, image[y0:y1, x0:x1])


def test_features_are_normalised_tile_means(collection, tmp_path):
    store = FeatureStore(tmp_path / "f.zarr", mode="w")
    summary = extract_features(
        collection, store, CountingNet(), patch_size=64, batch_size=4, progress=False
    )
    assert summary["written"] == 6
    slide = store.read_slide("P1", "B", "40x")
    assert slide.features.shape == (2, 3)
    assert slide.info.label == 1
    assert slide.info.split == "train"
    # reference: ImageNet normalisation of each tile, then the mean per channel
    image = cv2.cvtColor(cv2.imread(str(collection.samples[3].path)), cv2.COLOR_BGR2RGB)
    tiles, coords = tile_image(image, 64)
    ref = np.stack([make_preproc((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))(t) for t in tiles])
    np.testing.assert_allclose(slide.features, ref.mean(axis=(1, 2)), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(slide.coordinates, coords)


def test_interrupted_extraction_resumes_without_recomputing(collection, tmp_path):
    path = tmp_path / "f.zarr"
    # one engine batch per slide (2 tiles, batch_size 4): call 3 = third slide
    crashing = CountingNet(fail_on_call=3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        extract_features(collection, path, crashing, patch_size=64, batch_size=4, progress=False)
    store = FeatureStore(path, mode="r")
    assert len(store.slides()) == 2
    before = {s.key: store.read_key(s.key).features.copy() for s in store.slides()}
    fresh = CountingNet()
    summary = extract_features(collection, path, fresh, patch_size=64, batch_size=4, progress=False)
    assert summary["skipped"] == 2
    assert summary["written"] == 4
    assert fresh.calls == 4  # only the 4 missing slides ran through the model
    store = FeatureStore(path, mode="r")
    assert len(store.slides()) == 6
    for key, feats in before.items():
        np.testing.assert_array_equal(store.read_key(key).features, feats)


def test_resolve_names_and_errors():
    net, name, (mean, _) = resolve_feature_model("resnet18", pretrained=False)
    assert name == "resnet18"
    assert hasattr(net, "infer_batch")
    assert mean[0] == 0.485
    with pytest.raises(ValueError, match="no_such_model"):
        resolve_feature_model("no_such_model_xyz", pretrained=False)


def test_extract_features_cli_resumes(collection, tmp_path):
    import json  # noqa: PLC0415

    def summary_of(output: str) -> dict:
        return json.loads(output[output.rindex('{"written"') :].splitlines()[0])

    from click.testing import CliRunner  # noqa: PLC0415

    from tia_scanner_robust.cli.extract_features import extract_features as cli  # noqa: PLC0415

    manifest = tmp_path / "manifest.csv"
    collection.to_manifest(manifest)
    out = tmp_path / "cli.zarr"
    args = ["--manifest", str(manifest), "--model", "resnet18", "--no-pretrained"]
    args += ["-o", str(out), "--patch-size", "64", "--batch-size", "4"]
    first = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert first.exit_code == 0, first.output
    assert summary_of(first.output)["written"] == 6
    store = FeatureStore(out, mode="r")
    info = store.slides()[0]
    assert info.model == "resnet18"
    assert store.read_key(info.key).features.shape == (2, 512)
    second = CliRunner().invoke(cli, args, catch_exceptions=False)
    summary = summary_of(second.output)
    assert summary["skipped"] == 6
    assert summary["written"] == 0
