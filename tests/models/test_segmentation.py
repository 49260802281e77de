"""SmpSegmentationModel as a TIAToolbox ModelABC: infer_batch, checkpoints, SemanticSegmentor."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
import zarr
from tiatoolbox.models.engine.semantic_segmentor import SemanticSegmentor
from tiatoolbox.wsicore.wsireader import WSIReader

from tia_scanner_robust.models.segmentation import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SmpSegmentationModel,
    imagenet_normalise,
)

if TYPE_CHECKING:
    from pathlib import Path

TINY = {"encoder_depth": 3, "decoder_channels": [16, 8, 4]}


@pytest.fixture(scope="module")
def model() -> SmpSegmentationModel:
    torch.manual_seed(0)
    return SmpSegmentationModel(
        arch="Unet",
        encoder_name="resnet18",
        num_classes=3,
        patch_size=64,
        class_dict={0: "background", 1: "tissue", 2: "other"},
        model_kwargs=TINY,
    ).eval()


def test_default_is_the_papers_deeplabv3plus_resnet34() -> None:
    m = SmpSegmentationModel(patch_size=64)
    assert type(m.net).__name__ == "DeepLabV3Plus"
    assert m.config["encoder_name"] == "resnet34"
    assert m.config["encoder_weights"] is None
    out = SmpSegmentationModel.infer_batch(
        m, torch.zeros(1, 64, 64, 3, dtype=torch.uint8), device="cpu"
    )
    assert out.shape == (1, 64, 64, 2)


def test_infer_batch_contract(model: SmpSegmentationModel) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    probs = SmpSegmentationModel.infer_batch(model, torch.from_numpy(images), device="cpu")
    assert probs.shape == (2, 64, 64, 3)
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    # uint8 batches are normalised inside; float batches are taken as preproc_func output.
    pre = np.stack([model.preproc_func(im) for im in images])
    probs_pre = SmpSegmentationModel.infer_batch(model, torch.from_numpy(pre), device="cpu")
    np.testing.assert_allclose(probs, probs_pre, atol=1e-5)
    # The same as softmax(forward(normalised NCHW)).
    x = torch.from_numpy(pre).permute(0, 3, 1, 2)
    with torch.no_grad():
        direct = torch.softmax(model(x), 1).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(probs, direct, atol=1e-5)
    assert model.postproc_func(probs).shape == (2, 64, 64)
    expected = (np.array([255, 0, 128]) / 255 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    got = imagenet_normalise(np.array([[[255, 0, 128]]], np.uint8))[0, 0]
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_checkpoint_roundtrip(model: SmpSegmentationModel, tmp_path: Path) -> None:
    path = model.save_checkpoint(tmp_path / "model.pt")
    loaded = SmpSegmentationModel.from_checkpoint(path)
    assert loaded.config == model.config
    assert loaded.class_dict == {0: "background", 1: "tissue", 2: "other"}
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    torch.save({"state_dict": {}}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="lacks an architecture config"):
        SmpSegmentationModel.from_checkpoint(tmp_path / "bad.pt")
    with pytest.raises(FileNotFoundError):
        SmpSegmentationModel.from_checkpoint(tmp_path / "missing.pt")


def test_invalid_options() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        SmpSegmentationModel(num_classes=1)
    with pytest.raises(ValueError, match="units"):
        SmpSegmentationModel(units="microns")
    with pytest.raises(ValueError, match="stride"):
        SmpSegmentationModel(patch_size=64, stride=128)
    with pytest.raises(ValueError, match="Unknown model config key"):
        SmpSegmentationModel.from_config({"arch": "Unet", "layers": 3})
    with pytest.raises((ValueError, KeyError)):
        SmpSegmentationModel(arch="NoSuchNet")


def test_semantic_segmentor_patch_mode_equals_direct_forward(
    model: SmpSegmentationModel, he_image: np.ndarray
) -> None:
    patches = np.stack([he_image[:64, :64], he_image[300:364, 500:564]])
    segmentor = SemanticSegmentor(model=model, batch_size=2, verbose=False)
    out = segmentor.run(
        patches,
        patch_mode=True,
        ioconfig=model.ioconfig,
        output_type="dict",
        return_probabilities=True,
    )
    probs = np.asarray(out["probabilities"])
    direct = SmpSegmentationModel.infer_batch(model, torch.from_numpy(patches), device="cpu")
    assert probs.shape == (2, 64, 64, 3)
    np.testing.assert_allclose(probs, direct, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(out["predictions"]), direct.argmax(-1))


def test_semantic_segmentor_wsi_mode(
    model: SmpSegmentationModel, he_image: np.ndarray, tmp_path: Path
) -> None:
    tifffile = pytest.importorskip("tifffile")
    slide = np.ascontiguousarray(he_image[:160, :128])
    path = tmp_path / "slide.tif"
    mpp = 0.5
    with tifffile.TiffWriter(path) as tif:  # tiled TIFF with a 2x sub-resolution level
        options = {"tile": (64, 64), "photometric": "rgb", "resolutionunit": "CENTIMETER"}
        tif.write(slide, subifds=1, resolution=(1e4 / mpp, 1e4 / mpp), **options)
        tif.write(slide[::2, ::2], subfiletype=1, **options)
    info = WSIReader.open(path).info
    assert tuple(info.slide_dimensions) == (128, 160)
    np.testing.assert_allclose(info.mpp, [mpp, mpp])
    segmentor = SemanticSegmentor(model=model, batch_size=4, verbose=False)
    result = segmentor.run(
        [path],
        patch_mode=False,
        ioconfig=model.ioconfig,
        save_dir=tmp_path / "out",
        output_type="zarr",
        auto_get_mask=False,
        return_probabilities=True,
    )
    store = zarr.open(str(result[path]), mode="r")
    probs = np.asarray(store["probabilities"])
    assert probs.shape == (160, 128, 3)
    assert np.asarray(store["predictions"]).shape == (160, 128)
    # The first tile is read at baseline, unpadded: equal to a direct forward on it.
    direct = SmpSegmentationModel.infer_batch(
        model, torch.from_numpy(slide[None, :64, :64].copy()), device="cpu"
    )[0]
    np.testing.assert_allclose(probs[:64, :64], direct, atol=1e-4)
