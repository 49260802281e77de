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


# --------------------------------------------------------------- whole slides
WSI_PATCH = 64


def tiny_backbone() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, kernel_size=8, stride=8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    ).eval()


@pytest.fixture(scope="module")
def whole_slide(he_image, tmp_path_factory):
    """512x640 pyramidal TIFF at 0.5 mpp: tissue in x < 384, white background to the right."""
    from tests.data.test_registration import write_pyramidal_tiff  # noqa: PLC0415

    image = np.full((512, 640, 3), 255, np.uint8)
    image[:, :384] = he_image[:512, :384]
    return write_pyramidal_tiff(tmp_path_factory.mktemp("wsi") / "slide.tif", image, 0.5)


def wsi_sample(path, mpp=1.0, specimen="S1") -> PairedSample:
    return PairedSample(specimen, "A", path=path, mpp=mpp, label=1, split="test", is_wsi=True)


def grid(xs, ys) -> set:
    return {(x, y, x + WSI_PATCH, y + WSI_PATCH) for x in xs for y in ys}


@pytest.fixture
def engine_calls(monkeypatch):
    """Record ``patch_mode`` of every DeepFeatureExtractor.run; forbid in-memory reads."""
    from tiatoolbox.models.engine.deep_feature_extractor import (  # noqa: PLC0415
        DeepFeatureExtractor,
    )

    calls = []
    original = DeepFeatureExtractor.run

    def spy(self, images, **kwargs):
        calls.append(kwargs.get("patch_mode", True))
        return original(self, images, **kwargs)

    def no_read(sample):
        msg = f"whole slide {sample.path} read into memory"
        raise AssertionError(msg)

    monkeypatch.setattr(DeepFeatureExtractor, "run", spy)
    monkeypatch.setattr("tia_scanner_robust.data.paired.load_sample_image", no_read)
    return calls


def test_whole_slide_streams_through_wsi_mode(whole_slide, engine_calls, tmp_path):
    from tiatoolbox.wsicore.wsireader import WSIReader  # noqa: PLC0415

    backbone = tiny_backbone()
    store = FeatureStore(tmp_path / "f.zarr", mode="w")
    summary = extract_features(
        [wsi_sample(whole_slide)], store, backbone, patch_size=WSI_PATCH, progress=False
    )
    assert engine_calls == [False]  # one WSI-mode run, no image read into memory
    assert (summary["written"], summary["wsi"], summary["empty"]) == (1, 1, 0)
    slide = store.read_slide("S1", "A")
    assert slide.info.get("mode") == "wsi"
    assert slide.info.get("mpp") == 1.0
    assert (slide.info.label, slide.info.split) == (1, "test")
    # read at 1.0 mpp the slide is 320x256; the tissue (x < 192 there) covers 3 of the
    # 5 patch columns in all 4 rows: the tissue mask keeps exactly those patches
    boxes = [tuple(map(int, b)) for b in slide.coordinates]
    assert len(boxes) == slide.features.shape[0] == 12
    assert set(boxes) == grid((0, 64, 128), (0, 64, 128, 192))
    # reference: the same patches read directly and run through the backbone
    reader = WSIReader.open(whole_slide)
    patches = np.stack([reader.read_bounds(b, 1.0, "mpp", coord_space="resolution") for b in boxes])
    preproc = make_preproc((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    images = torch.from_numpy(np.stack([preproc(p) for p in patches])).permute(0, 3, 1, 2)
    with torch.no_grad():
        reference = backbone(images.float()).numpy()
    np.testing.assert_allclose(slide.features, reference, rtol=1e-4, atol=1e-5)
    assert not list(tmp_path.glob(".extract-wsi-*"))  # engine outputs removed


def test_whole_slide_masking_options(whole_slide, engine_calls, tmp_path):
    backbone = tiny_backbone()
    store = FeatureStore(tmp_path / "f.zarr", mode="w")
    samples = [wsi_sample(whole_slide, None, "full"), wsi_sample(whole_slide, 1.0, "all")]
    summary = extract_features(
        samples, store, backbone, patch_size=WSI_PATCH, tissue_mask=False, progress=False
    )
    assert summary["wsi"] == 2
    # no mask: every patch of the grid, the baseline (None mpp) grid is 10x8
    full = {tuple(map(int, b)) for b in store.read_slide("full", "A").coordinates}
    assert full == grid(range(0, 640, 64), range(0, 512, 64))
    everything = store.read_slide("all", "A")
    assert {tuple(map(int, b)) for b in everything.coordinates} == grid(
        range(0, 320, 64), range(0, 256, 64)
    )
    # a given mask (any size) wins: the left fifth keeps one column of patches
    mask = np.zeros((64, 80), np.uint8)
    mask[:, :16] = 1
    masked_store = FeatureStore(tmp_path / "m.zarr", mode="w")
    extract_features(
        [wsi_sample(whole_slide)],
        masked_store,
        backbone,
        patch_size=WSI_PATCH,
        tissue_masks={whole_slide: mask},
        progress=False,
    )
    masked = masked_store.read_slide("S1", "A")
    assert {tuple(map(int, b)) for b in masked.coordinates} == grid((0,), range(0, 256, 64))
    pairs = zip(everything.coordinates, everything.features, strict=True)
    rows = {tuple(map(int, b)): f for b, f in pairs}
    for box, feats in zip(masked.coordinates, masked.features, strict=True):
        np.testing.assert_allclose(feats, rows[tuple(map(int, box))], rtol=1e-5, atol=1e-6)
    # a mask without tissue: nothing to store, counted as empty
    empty_store = FeatureStore(tmp_path / "e.zarr", mode="w")
    summary = extract_features(
        [wsi_sample(whole_slide)],
        empty_store,
        backbone,
        patch_size=WSI_PATCH,
        tissue_masks={whole_slide: np.zeros((8, 10), np.uint8)},
        progress=False,
    )
    assert (summary["written"], summary["empty"]) == (0, 1)
    assert len(empty_store) == 0


def test_whole_slide_resume_skips_finished_slides(whole_slide, engine_calls, tmp_path):
    path = tmp_path / "f.zarr"
    samples = [wsi_sample(whole_slide, 1.0, "S1"), wsi_sample(whole_slide, 1.0, "S2")]
    crashing = CountingNet(fail_on_call=2)  # 12 patches, one batch: call 2 = second slide
    with pytest.raises(RuntimeError, match="simulated crash"):
        extract_features(samples, path, crashing, patch_size=WSI_PATCH, progress=False)
    store = FeatureStore(path, mode="r")
    assert [s.specimen_id for s in store.slides()] == ["S1"]
    assert not list(tmp_path.glob(".extract-wsi-*"))  # cleaned up after the crash too
    before = store.read_slide("S1", "A").features.copy()
    engine_calls.clear()
    fresh = CountingNet()
    summary = extract_features(samples, path, fresh, patch_size=WSI_PATCH, progress=False)
    assert (summary["skipped"], summary["written"]) == (1, 1)
    assert engine_calls == [False]  # only S2 went through the engine
    assert fresh.calls == 1
    store = FeatureStore(path, mode="r")
    np.testing.assert_array_equal(store.read_slide("S1", "A").features, before)
    np.testing.assert_allclose(store.read_slide("S2", "A").features, before, rtol=1e-5)


def test_extract_features_cli_whole_slide_tissue_flag(whole_slide, tmp_path):
    from click.testing import CliRunner  # noqa: PLC0415

    from tia_scanner_robust.cli.extract_features import extract_features as cli  # noqa: PLC0415

    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"specimen_id,scanner,path,mpp\nS1,A,{whole_slide},1.0\n")
    counts = {}
    for flag in ("--tissue-mask", "--no-tissue-mask"):
        out = tmp_path / f"{flag}.zarr"
        args = ["--manifest", str(manifest), "--model", "resnet18", "--no-pretrained"]
        args += ["-o", str(out), "--patch-size", "64", flag]
        result = CliRunner().invoke(cli, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        slide = FeatureStore(out, mode="r").read_slide("S1", "A")
        assert slide.info.get("mode") == "wsi"
        counts[flag] = slide.features.shape[0]
    assert counts == {"--tissue-mask": 12, "--no-tissue-mask": 20}
