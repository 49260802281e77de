"""The evaluator never reports a degenerate model as robust (issue 10, items 1-3).

Trivial models on real H&E crops: an all-background segmenter, a model with
NaN weights, a model whose output is smaller or larger than its input, and
inputs that must be resized; intervals, summaries and warnings in the result
and in report.json / report.html.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tiatoolbox.models.engine.io_config import IOSegmentorConfig
from tiatoolbox.models.models_abc import ModelABC

from tests.engines.test_consistency import write_pyramid_tiff
from tia_scanner_robust._io import atomic_write_image
from tia_scanner_robust.data.paired import PairedCollection, PairedSample
from tia_scanner_robust.engines.consistency import ScannerConsistencyEvaluator
from tia_scanner_robust.report import write_report

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _shift(image: np.ndarray) -> np.ndarray:
    out = image.astype(np.float64) * 0.8 + np.array([40.0, 30.0, 50.0])
    return np.clip(out, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def real_collection(he_image, tmp_path_factory) -> PairedCollection:
    """12 real H&E crops x 3 scanners (identity, copy, colour shift), binary nuclei-ish masks."""
    root = tmp_path_factory.mktemp("real")
    samples = []
    for k in range(12):
        y, x = 64 * (k // 4), 64 * (k % 4) + 300
        tile = np.ascontiguousarray(he_image[y : y + 64, x : x + 64])
        mask = (tile.mean(axis=-1) < 150).astype(np.uint8)
        mask_path = atomic_write_image(root / f"m{k}.png", np.repeat(mask[..., None], 3, -1))
        for scanner, image in (("A", tile), ("B", tile), ("C", _shift(tile))):
            path = atomic_write_image(root / f"{k}_{scanner}.png", image)
            samples.append(PairedSample(f"s/{k}", scanner, path=path, mask_path=mask_path))
    return PairedCollection(samples, scanners=["A", "B", "C"])


class ConstantSegmenter(ModelABC):
    """Predicts class 0 (background) everywhere, optionally with NaN weights."""

    fully_convolutional = True

    def __init__(self, *, nan: bool = False, scale: float = 1.0) -> None:
        super().__init__()
        self.bias = torch.nn.Parameter(torch.tensor([5.0, 0.0]) * (np.nan if nan else 1.0))
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.bias.view(1, 2, 1, 1) + 0.0 * x[:, :1]
        if self.scale != 1.0:
            logits = torch.nn.functional.interpolate(logits, scale_factor=self.scale)
        return torch.softmax(logits, dim=1)

    @staticmethod
    def infer_batch(model, batch_data, *, device):
        x = torch.as_tensor(batch_data).to(device).float().permute(0, 3, 1, 2)
        with torch.inference_mode():
            return model(x).permute(0, 2, 3, 1).cpu().numpy()

    @staticmethod
    def postproc(image):
        return image.argmax(axis=-1)


def test_all_background_model_is_not_reported_as_robust(real_collection, tmp_path):
    evaluator = ScannerConsistencyEvaluator(ConstantSegmenter(), verbose=False, n_examples=0)
    with pytest.warns(RuntimeWarning):
        result = evaluator.evaluate(real_collection, tmp_path)
    assert np.isnan(result.average)  # not 1.000
    dice = result.consistency["dice"]
    assert dice.n_empty_total == 3 * 12
    predictions = result.per_scanner["A"]["predictions"]
    assert predictions["class_pixel_fractions"]["0"] == 1.0
    assert predictions["constant"]
    text = "\n".join(result.warnings)
    assert "Constant predictions on scanners A, B, C" in text
    assert "empty-vs-empty" in text
    assert "is no better than the trivial predictor" in text
    # the model *is* the all-background predictor: same Dice against the masks
    assert result.trivial["all_background"] == pytest.approx(
        np.mean(result.per_sample["gt_dice"]["A"])
    )
    paths = write_report(result, tmp_path)
    data = json.loads(paths["json"].read_text())
    assert data["warnings"] == result.warnings
    assert data["summary"]["average"] is None
    assert data["consistency"]["dice"]["n_empty_total"] == 36
    assert data["trivial"]["best_score"] >= data["trivial"]["all_background"]
    html = paths["html"].read_text()
    assert html.count('<div class="banner">') == len(result.warnings)
    assert html.index('<div class="banner">') < html.index('<div class="cards">')


def test_scorpion_empty_policy_is_reachable_and_counted(real_collection, tmp_path):
    evaluator = ScannerConsistencyEvaluator(
        ConstantSegmenter(), verbose=False, n_examples=0, empty_pairs="one"
    )
    result = evaluator.evaluate(real_collection, tmp_path)
    assert result.average == 1.0
    assert result.consistency["dice"].n_empty_total == 36
    assert any("empty-vs-empty" in w for w in result.warnings)
    assert result.config["empty_pairs"] == "one"


def test_nan_weights_are_an_error_naming_scanner_and_sample(real_collection, tmp_path):
    evaluator = ScannerConsistencyEvaluator(ConstantSegmenter(nan=True), verbose=False)
    with pytest.raises(ValueError, match=r"non-finite model output on scanner 'A', sample 's/0'"):
        evaluator.evaluate(real_collection, tmp_path)


def test_builtin_on_real_tiles_has_intervals_and_no_warning(real_collection, tmp_path):
    evaluator = ScannerConsistencyEvaluator("builtin", verbose=False, n_resamples=200)
    result = evaluator.evaluate(real_collection, tmp_path)
    assert result.warnings == []
    dice = result.consistency["dice"]
    low, high = dice.ci95["average"]
    assert low <= result.average <= high
    assert dice.ci95["minimum"][0] <= result.minimum <= dice.ci95["minimum"][1]
    assert result.cov.ci95[0] <= result.cov.cov <= result.cov.ci95[1]
    data = result.to_dict()
    assert data["summary"]["average_ci95"] == [low, high]
    assert data["summary"]["cov_ci95"] == result.cov.ci95
    assert data["warnings"] == []
    assert data["per_scanner"]["C"]["input_resolution"]["n_resized"] == 0
    assert data["per_scanner"]["A"]["predictions"]["n_nan"] == 0
    assert "all_background" in data["trivial"]
    again = ScannerConsistencyEvaluator("builtin", verbose=False, n_resamples=200)
    assert again.evaluate(real_collection, tmp_path / "again").consistency["dice"].ci95 == dice.ci95


@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_outputs_smaller_or_larger_than_the_input(real_collection, tmp_path, scale):
    evaluator = ScannerConsistencyEvaluator(
        ConstantSegmenter(scale=scale), verbose=False, n_examples=0, empty_pairs="one"
    )
    result = evaluator.evaluate(real_collection, tmp_path)
    row = result.per_scanner["A"]["input_resolution"]
    assert row["model_input_shapes"] == {"64x64": 12}
    expected = "32x32" if scale < 1 else "128x128"  # the raw model output
    assert row["model_output_shapes"] == {expected: 12}
    assert row["output_rule"] == ("centre" if scale < 1 else "resized")
    assert result.average == 1.0


def _segmentor_io(size: int) -> IOSegmentorConfig:
    """A segmentor IO config at 0.5 mpp with square ``size`` patches and no overlap."""
    at = {"units": "mpp", "resolution": 0.5}
    shape = (size, size)
    return IOSegmentorConfig(
        input_resolutions=[at],
        output_resolutions=[at],
        patch_input_shape=shape,
        patch_output_shape=shape,
        stride_shape=shape,
        save_resolution=at,
    )


def test_resized_inputs_warn_and_record_resolution(real_collection, tmp_path):
    io = _segmentor_io(48)
    evaluator = ScannerConsistencyEvaluator(
        "builtin", ioconfig=io, size_policy="resize", verbose=False, n_examples=0
    )
    result = evaluator.evaluate(real_collection, tmp_path)
    row = result.per_scanner["B"]["input_resolution"]
    assert row["image_shapes"] == {"64x64": 12}
    assert row["model_input_shapes"] == {"48x48": 12}
    assert row["n_resized"] == 12
    assert any(
        "Inputs resized on scanner B: 12 of 12 image(s) from 64x64 to 48x48" in w
        for w in result.warnings
    )
    by_patch = ScannerConsistencyEvaluator(
        "builtin", patch_size=32, size_policy="resize", verbose=False, n_examples=0
    ).evaluate(real_collection, tmp_path / "p32")
    assert by_patch.per_scanner["A"]["input_resolution"]["model_input_shapes"] == {"32x32": 12}
    assert by_patch.config["patch_size"] == 32


def test_nan_weights_are_an_error_in_wsi_mode_too(he_image, tmp_path):
    image = np.ascontiguousarray(he_image[300:556, 200:456])
    samples = []
    for scanner in ("A", "B"):
        path = write_pyramid_tiff(tmp_path / scanner / "slide.tif", image)
        samples.append(
            PairedSample(
                "slide/r0", scanner, path=path, mpp=0.5, region=(0, 0, 128, 128), is_wsi=True
            )
        )
    collection = PairedCollection(samples, scanners=["A", "B"])
    io = _segmentor_io(64)
    evaluator = ScannerConsistencyEvaluator(
        ConstantSegmenter(nan=True), ioconfig=io, num_classes=2, verbose=False
    )
    with pytest.raises(ValueError, match=r"non-finite model output on scanner 'A'.*slide\.tif"):
        evaluator.evaluate(collection, tmp_path / "eval")
    # the same slides with finite weights evaluate (the guard is not what fails)
    fine = ScannerConsistencyEvaluator(
        ConstantSegmenter(), ioconfig=io, num_classes=2, verbose=False
    )
    assert fine.evaluate(collection, tmp_path / "eval_ok").scanners == ["A", "B"]
