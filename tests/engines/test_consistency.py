"""The scanner-consistency evaluator through TIAToolbox's real engines (CPU, tiny data).

Both modes (patch and WSI) and the three tasks, end to end.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
import zarr
from tiatoolbox.models.engine.io_config import IOPatchPredictorConfig
from tiatoolbox.models.models_abc import ModelABC

from tia_scanner_robust._io import atomic_write_image
from tia_scanner_robust.data.paired import PairedCollection, PairedSample
from tia_scanner_robust.engines.consistency import ScannerConsistencyEvaluator
from tia_scanner_robust.metrics.functional import (
    coefficient_of_variation,
    magnification_cov,
    paired_cosine_similarity,
    paired_dice,
)
from tia_scanner_robust.models.classical import ColourDeconvolutionSegmenter, classical_ioconfig

SCANNERS = ("ref", "ref_copy", "shifted")


def shift_colour(image: np.ndarray) -> np.ndarray:
    """A strong scanner-like colour change: pale, low contrast, bluish."""
    out = image.astype(np.float64) * 0.5 + np.array([120.0, 130.0, 150.0])
    return np.clip(out, 0, 255).astype(np.uint8)


def direct_labels(images: np.ndarray) -> np.ndarray:
    model = ColourDeconvolutionSegmenter()
    probs = ColourDeconvolutionSegmenter.infer_batch(model, torch.from_numpy(images), device="cpu")
    return probs.argmax(-1)


@pytest.fixture(scope="module")
def tiles(he_image) -> list[np.ndarray]:
    return [np.ascontiguousarray(he_image[y : y + 96, x : x + 96]) for y, x in ((0, 0), (400, 500))]


@pytest.fixture(scope="module")
def patch_collection(tiles, tmp_path_factory) -> PairedCollection:
    root = tmp_path_factory.mktemp("patches")
    samples = []
    for k, tile in enumerate(tiles):
        for scanner, image in zip(SCANNERS, (tile, tile, shift_colour(tile)), strict=True):
            path = atomic_write_image(root / f"s{k}" / f"{scanner}.png", image)
            samples.append(PairedSample(f"slide/s{k}", scanner, path=path))
    return PairedCollection(samples, scanners=list(SCANNERS))


@pytest.fixture(scope="module")
def patch_result(patch_collection, tmp_path_factory):
    evaluator = ScannerConsistencyEvaluator("builtin", chunk_size=None, verbose=False)
    return evaluator.evaluate(patch_collection, tmp_path_factory.mktemp("eval_patch"))


def write_pyramid_tiff(path, image: np.ndarray, mpp: float = 0.5):
    res = 1e4 / mpp
    opts = {
        "tile": (64, 64),
        "photometric": "rgb",
        "compression": "deflate",
        "resolution": (res, res),
        "resolutionunit": "CENTIMETER",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with tifffile.TiffWriter(path) as tif:
        tif.write(image, subifds=1, **opts)
        tif.write(image[::2, ::2], subfiletype=1, **opts)
    return path


REGIONS = {"slide/r0": (0, 0, 128, 128), "slide/r1": (128, 64, 128, 128)}


@pytest.fixture(scope="module")
def wsi_image(he_image) -> np.ndarray:
    return np.ascontiguousarray(he_image[300:556, 200:456])


@pytest.fixture(scope="module")
def wsi_result(wsi_image, tmp_path_factory):
    root = tmp_path_factory.mktemp("wsis")
    samples = []
    for scanner, image in zip(
        SCANNERS, (wsi_image, wsi_image, shift_colour(wsi_image)), strict=True
    ):
        path = write_pyramid_tiff(root / scanner / "slide.tif", image)  # same stem: one run each
        for specimen, region in REGIONS.items():
            samples.append(
                PairedSample(specimen, scanner, path=path, mpp=0.5, region=region, is_wsi=True)
            )
    collection = PairedCollection(samples, scanners=list(SCANNERS))
    evaluator = ScannerConsistencyEvaluator(
        "builtin",
        ioconfig=classical_ioconfig(resolution=0.5, units="mpp", patch_shape=64),
        verbose=False,
    )
    return evaluator.evaluate(collection, tmp_path_factory.mktemp("eval_wsi"))


# ------------------------------------------------------------------ patch mode
def test_patch_identical_scanners_score_one_and_matrix_symmetric(patch_result):
    dice = patch_result.consistency["dice"]
    assert dice.pairs[("ref", "ref_copy")] == pytest.approx(1.0)
    np.testing.assert_allclose(dice.matrix, dice.matrix.T, equal_nan=True)
    assert np.isnan(np.diag(dice.matrix)).all()
    assert "shifted" in patch_result.min_pair
    assert patch_result.minimum < 0.9


def test_patch_scores_equal_direct_computation(patch_result, tiles):
    """Engine outputs aligned by specimen: per-sample Dice equals the direct reference."""
    ref = direct_labels(np.stack(tiles))
    shifted = direct_labels(np.stack([shift_colour(t) for t in tiles]))
    expected = paired_dice(ref, shifted)
    got = patch_result.consistency["dice"].per_sample[("ref", "shifted")]
    np.testing.assert_allclose(got, expected, atol=1e-12)
    assert patch_result.consistency["dice"].specimen_ids == ["slide/s0", "slide/s1"]
    # CoV of the per-specimen nuclei fraction across scanners
    fractions = np.stack([(ref == 2).mean(axis=(1, 2))] * 2 + [(shifted == 2).mean(axis=(1, 2))])
    cov = coefficient_of_variation(fractions.T, specimen_ids=["slide/s0", "slide/s1"])
    assert patch_result.cov.cov == pytest.approx(cov.cov)


def test_patch_chunking_streams_to_the_same_result(patch_collection, patch_result, tmp_path):
    evaluator = ScannerConsistencyEvaluator(
        "builtin", chunk_size=1, save_predictions=False, n_examples=0, verbose=False
    )
    chunked = evaluator.evaluate(patch_collection, tmp_path)
    np.testing.assert_allclose(
        chunked.consistency["dice"].matrix, patch_result.consistency["dice"].matrix, equal_nan=True
    )
    assert chunked.prediction_paths == {}


def test_patch_predictions_saved_and_example_is_worst(patch_result):
    group = zarr.open_group(patch_result.prediction_paths["shifted"], mode="r")
    assert group.attrs["sample_ids"] == ["slide/s0", "slide/s1"]
    assert group["samples/000000"].shape == (96, 96)
    (example,) = patch_result.examples
    assert set(example.scanners) == set(patch_result.worst_pair)
    per_sample = patch_result.consistency["dice"].per_sample[patch_result.worst_pair]
    assert example.score == pytest.approx(np.nanmin(per_sample))
    assert example.predictions[0].shape == example.images[0].shape[:2]


# -------------------------------------------------------------------- WSI mode
def test_wsi_identical_scanners_and_worst_pair(wsi_result):
    dice = wsi_result.consistency["dice"]
    assert wsi_result.mode == "wsi"
    np.testing.assert_allclose(dice.per_sample[("ref", "ref_copy")], 1.0)
    np.testing.assert_allclose(dice.matrix, dice.matrix.T, equal_nan=True)
    assert "shifted" in wsi_result.min_pair


def test_wsi_region_dice_equals_direct_output(wsi_result, wsi_image):
    """Regions are read from the zarr canvas: compare with the model run tile by tile."""

    def canvas(image: np.ndarray) -> np.ndarray:
        tiles = [
            image[y : y + 64, x : x + 64] for y in range(0, 256, 64) for x in range(0, 256, 64)
        ]
        labels = direct_labels(np.stack(tiles))
        return labels.reshape(4, 4, 64, 64).transpose(0, 2, 1, 3).reshape(256, 256)

    ref, shifted = canvas(wsi_image), canvas(shift_colour(wsi_image))
    expected = []
    for x, y, w, h in REGIONS.values():
        expected.append(paired_dice(ref[y : y + h, x : x + w], shifted[y : y + h, x : x + w])[0])
    got = wsi_result.consistency["dice"].per_sample[("ref", "shifted")]
    np.testing.assert_allclose(got, expected, atol=1e-12)


# -------------------------------------------- classification and embedding tasks
class MeanColourClassifier(ModelABC):
    """Two-class model: logistic of the mean colour (deterministic, no weights)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([0.04, -0.02, -0.03]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid((x.mean(dim=(2, 3)) - 128.0) @ self.w)
        return torch.stack([1 - p, p], 1)

    @staticmethod
    def infer_batch(model, batch_data, *, device):
        x = torch.as_tensor(batch_data).to(device).float().permute(0, 3, 1, 2)
        with torch.inference_mode():
            return model(x).cpu().numpy()

    @staticmethod
    def postproc(image):
        return image.argmax(axis=-1)


class ColourStatsEmbedder(ModelABC):
    """Embedding = channel means and stds; returns [features] like TIAToolbox backbones."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], 1) / 255.0

    @staticmethod
    def infer_batch(model, batch_data, *, device):
        x = torch.as_tensor(batch_data).to(device).float().permute(0, 3, 1, 2)
        with torch.inference_mode():
            return [model(x).cpu().numpy()]


def _ioconfig(size: int) -> IOPatchPredictorConfig:
    return IOPatchPredictorConfig(
        input_resolutions=[{"units": "baseline", "resolution": 1.0}],
        patch_input_shape=(size, size),
        stride_shape=(size, size),
    )


def test_classification_patch_mode(patch_collection, tiles, tmp_path):
    model = MeanColourClassifier()
    evaluator = ScannerConsistencyEvaluator(
        model, task="classification", ioconfig=_ioconfig(96), verbose=False
    )
    result = evaluator.evaluate(patch_collection, tmp_path)
    ref = model(torch.from_numpy(np.stack(tiles)).permute(0, 3, 1, 2).float()).detach().numpy()
    shifted_in = np.stack([shift_colour(t) for t in tiles])
    shifted = model(torch.from_numpy(shifted_in).permute(0, 3, 1, 2).float()).detach().numpy()
    np.testing.assert_allclose(result.outputs["shifted"], shifted, atol=1e-6)
    abs_prob = result.consistency["abs_prob"]
    np.testing.assert_allclose(
        abs_prob.per_sample[("ref", "shifted")], np.abs(ref[:, 1] - shifted[:, 1]), atol=1e-6
    )
    assert abs_prob.pairs[("ref", "ref_copy")] == pytest.approx(0.0)
    agreement = (ref.argmax(1) == shifted.argmax(1)).astype(float)
    np.testing.assert_allclose(
        result.consistency["agreement"].per_sample[("ref", "shifted")], agreement
    )
    assert result.per_scanner["ref"]["mean_positive_probability"] == pytest.approx(ref[:, 1].mean())


def test_embedding_patch_mode_with_feature_extractor(patch_collection, tiles, tmp_path):
    evaluator = ScannerConsistencyEvaluator(
        ColourStatsEmbedder(), task="embedding", ioconfig=_ioconfig(96), ks=(1,), verbose=False
    )
    result = evaluator.evaluate(patch_collection, tmp_path)
    assert result.cov is None
    assert result.outputs["ref"].shape == (2, 6)
    cosine = result.consistency["cosine"]
    expected = paired_cosine_similarity(result.outputs["ref"], result.outputs["shifted"])
    np.testing.assert_allclose(cosine.per_sample[("ref", "shifted")], expected)
    assert cosine.pairs[("ref", "ref_copy")] == pytest.approx(1.0)
    assert result.consistency["top1"].pairs[("ref", "ref_copy")] == 1.0


def test_ground_truth_masks_and_magnification_cov(tiles, tmp_path):
    """Masks give per-scanner Dice vs ground truth; two magnifications give a magnification CoV."""
    ref_nuclei = (direct_labels(np.stack(tiles)) == 2).astype(np.uint8)
    samples = []
    for k, tile in enumerate(tiles):
        mask = atomic_write_image(
            tmp_path / f"m{k}.png", np.repeat(ref_nuclei[k][..., None], 3, -1)
        )
        for mag, image in (("40x", tile), ("20x", tile[::2, ::2].copy())):
            for scanner, img in (("ref", image), ("shifted", shift_colour(image))):
                path = atomic_write_image(tmp_path / f"s{k}_{mag}_{scanner}.png", img)
                samples.append(
                    PairedSample(
                        f"s{k}",
                        scanner,
                        path=path,
                        magnification=mag,
                        mask_path=mask if mag == "40x" else None,
                    )
                )
    collection = PairedCollection(samples, scanners=["ref", "shifted"])
    result = ScannerConsistencyEvaluator("builtin", n_examples=0, verbose=False).evaluate(
        collection, tmp_path / "out"
    )
    assert result.sample_ids == ["s0@20x", "s0@40x", "s1@20x", "s1@40x"]
    # the mask is the reference scanner's own nuclei: Dice 1 there, lower after the shift
    np.testing.assert_allclose(result.per_sample["gt_dice"]["ref"], 1.0)
    assert max(result.per_sample["gt_dice"]["shifted"]) < 0.9
    fractions = result.per_sample["cov_fraction"]
    flat = np.array([fractions[s][i] for i in range(4) for s in ("ref", "shifted")])
    specimens = np.repeat(["s0", "s0", "s1", "s1"], 2)
    scanners = np.tile(["ref", "shifted"], 4)
    mags = np.repeat(["20x", "40x", "20x", "40x"], 2)
    expected = magnification_cov(flat, specimens, scanners, mags)
    assert result.magnification_cov.cov == pytest.approx(expected.cov)


# ------------------------------------------------------------------- errors
def test_invalid_inputs(patch_collection, tmp_path):
    with pytest.raises(ValueError, match="task"):
        ScannerConsistencyEvaluator("builtin", task="detection")
    with pytest.raises(ValueError, match="chunk_size"):
        ScannerConsistencyEvaluator("builtin", chunk_size=0)
    with pytest.raises(TypeError, match="PairedCollection"):
        ScannerConsistencyEvaluator("builtin", verbose=False).evaluate([], tmp_path)
    single = patch_collection.filter(scanners=["ref"])
    with pytest.raises(ValueError, match="at least 2"):
        ScannerConsistencyEvaluator("builtin", verbose=False).evaluate(single, tmp_path)
