"""The offline colour-deconvolution segmenter, alone and inside SemanticSegmentor."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
import zarr
from skimage.color import rgb2hed
from tiatoolbox.models.engine.semantic_segmentor import SemanticSegmentor

from tia_scanner_robust.models.classical import (
    CLASSICAL_CLASS_DICT,
    ColourDeconvolutionSegmenter,
    classical_ioconfig,
    clean_label_maps,
)


def _direct(model: ColourDeconvolutionSegmenter, images: np.ndarray) -> np.ndarray:
    return ColourDeconvolutionSegmenter.infer_batch(model, torch.from_numpy(images), device="cpu")


def write_pyramid_tiff(path, image: np.ndarray, mpp: float = 0.5, tile: int = 128):
    """A small pyramidal tiled TIFF with pixel-size metadata (read by TIAToolbox)."""
    res = 1e4 / mpp
    opts = {
        "tile": (tile, tile),
        "photometric": "rgb",
        "compression": "deflate",
        "resolution": (res, res),
        "resolutionunit": "CENTIMETER",
    }
    with tifffile.TiffWriter(path) as tif:
        tif.write(image, subifds=1, **opts)
        tif.write(image[::2, ::2], subfiletype=1, **opts)
    return path


def test_hematoxylin_matches_skimage(he_tile):
    model = ColourDeconvolutionSegmenter()
    x = torch.from_numpy(he_tile).permute(2, 0, 1)[None].float()
    ours = model.hematoxylin(x)[0].numpy()
    np.testing.assert_allclose(ours, rgb2hed(he_tile)[..., 0], atol=1e-5)


def test_soft_probabilities_and_cleaned_argmax(he_tile):
    model = ColourDeconvolutionSegmenter()
    x = torch.from_numpy(he_tile).permute(2, 0, 1)[None].float()
    soft = model(x)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(soft.sum(-1), 1.0, atol=1e-5)
    # reference for the nuclei score: sigmoid of the distance of smoothed H to the threshold
    out = _direct(model, he_tile[None].copy())[0]
    np.testing.assert_allclose(out.sum(-1), 1.0, atol=1e-5)
    cleaned = clean_label_maps(soft.argmax(-1))
    assert np.array_equal(out.argmax(-1), cleaned)  # softness < 0.5: argmax = cleaned labels
    # "soft" output skips the morphology
    soft_model = ColourDeconvolutionSegmenter(output="soft")
    np.testing.assert_allclose(_direct(soft_model, he_tile[None].copy())[0], soft, atol=1e-6)


def test_calibration_on_bundled_image(he_image):
    """h_threshold=0.05 sits at the bundled image's Otsu threshold: ~26% nuclei pixels."""
    labels = _direct(ColourDeconvolutionSegmenter(), he_image[None, :512, :512].copy())[0]
    fractions = np.bincount(labels.argmax(-1).ravel(), minlength=3) / labels[..., 0].size
    assert 0.15 < fractions[2] < 0.40
    assert fractions[0] < 0.2  # mostly tissue, little glass


def test_scanner_sensitive_by_construction(he_tile):
    """A paler, lower-contrast rendering of the same tissue loses most nuclei."""
    pale = (he_tile.astype(np.float64) * 0.45 + 255 * 0.55).astype(np.uint8)
    model = ColourDeconvolutionSegmenter()
    out = _direct(model, np.stack([he_tile, pale])).argmax(-1)
    assert (out[1] == 2).mean() < 0.5 * (out[0] == 2).mean()


def test_clean_label_maps_hand_case_and_batch_independence():
    lab = np.ones((2, 24, 24), np.uint8)
    lab[0, 5:14, 5:14] = 2
    lab[0, 9, 9] = 1  # hole inside the nucleus
    lab[0, 0, 0] = 2  # one-pixel speck
    lab[1, 20:24, 20:24] = 2  # 16 px object touching the border
    lab[1, :3, :3] = 0  # small glass area: tissue stays tissue around it
    out = clean_label_maps(lab, radius=1, min_nucleus_area=10, min_tissue_area=4)
    assert out[0, 9, 9] == 2
    assert out[0, 0, 0] == 1
    assert out[1, 22, 22] == 2
    # batched result equals one image at a time (no connectivity across the batch)
    for i in range(2):
        assert np.array_equal(
            out[i], clean_label_maps(lab[i], radius=1, min_nucleus_area=10, min_tissue_area=4)
        )
    # small-object removal matches scikit-image
    nuclei = np.zeros((30, 30), np.uint8)
    nuclei[2:4, 2:4] = 2
    nuclei[10:20, 10:20] = 2
    cleaned = clean_label_maps(np.maximum(nuclei, 1), radius=0, min_nucleus_area=5) == 2
    expected = nuclei == 2
    expected[2:4, 2:4] = False  # the 4-pixel object is below min_nucleus_area
    assert np.array_equal(cleaned, expected)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="softness"):
        ColourDeconvolutionSegmenter(softness=0.5)
    with pytest.raises(ValueError, match="output"):
        ColourDeconvolutionSegmenter(output="hard")
    with pytest.raises(ValueError, match="units"):
        classical_ioconfig(units="level")
    with pytest.raises(ValueError, match="labels"):
        clean_label_maps(np.zeros((1, 2, 3, 4)))


def test_semantic_segmentor_patch_mode(he_tiles):
    model = ColourDeconvolutionSegmenter()
    patches = np.stack([t[:128, :128] for t in he_tiles[:3]])
    engine = SemanticSegmentor(model=model, batch_size=2, verbose=False)
    out = engine.run(
        patches,
        patch_mode=True,
        ioconfig=classical_ioconfig(patch_shape=128),
        return_probabilities=True,
    )
    direct = _direct(model, patches)
    np.testing.assert_allclose(out["probabilities"], direct, atol=1e-6)
    assert np.array_equal(out["predictions"], direct.argmax(-1))
    assert model.class_dict == CLASSICAL_CLASS_DICT


def test_semantic_segmentor_wsi_mode(he_image, tmp_path):
    image = np.ascontiguousarray(he_image[:384, :512])
    wsi = write_pyramid_tiff(tmp_path / "slide.tif", image, mpp=0.5)
    model = ColourDeconvolutionSegmenter()
    engine = SemanticSegmentor(model=model, batch_size=4, verbose=False)
    out = engine.run(
        [wsi],
        patch_mode=False,
        ioconfig=classical_ioconfig(resolution=0.5, units="mpp", patch_shape=128),
        save_dir=tmp_path / "out",
        output_type="zarr",
        auto_get_mask=False,
    )
    group = zarr.open_group(str(out[wsi]), mode="r")
    predictions = np.asarray(group["predictions"][:])
    assert predictions.shape == (384, 512)  # read at the slide's own 0.5 um/px
    # stride = patch: every 128-px tile of the canvas is the model's output on that tile
    tiles = np.stack([image[y : y + 128, x : x + 128] for y in (0, 128, 256) for x in (0, 256)])
    direct = _direct(model, tiles).argmax(-1)
    for k, (y, x) in enumerate((y, x) for y in (0, 128, 256) for x in (0, 256)):
        assert np.array_equal(predictions[y : y + 128, x : x + 128], direct[k])
