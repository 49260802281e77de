"""The unpaired (domain-generalisation) protocol (:mod:`tia_scanner_robust.engines.unpaired`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tiatoolbox.models.engine.io_config import IOPatchPredictorConfig, IOSegmentorConfig
from tiatoolbox.models.models_abc import ModelABC

from tia_scanner_robust._io import atomic_write_image
from tia_scanner_robust.data.manifest import read_manifest
from tia_scanner_robust.data.paired import PairedSample, load_sample_image
from tia_scanner_robust.engines.results import EvaluationResult
from tia_scanner_robust.engines.unpaired import (
    UnpairedEvaluator,
    choose_protocol,
    read_unpaired_manifest,
    scanner_score_summary,
    stitch_tiles,
    tile_image,
    unpaired_from_paired,
)
from tia_scanner_robust.metrics.functional import dice_score, pairwise_consistency

# Different tissue and a different size on every sample (COSAS-like: nothing is paired).
CROPS = {
    "A": [(0, 0, 97, 83), (300, 120, 64, 101), (620, 40, 88, 88)],
    "B": [(150, 500, 75, 93), (700, 650, 101, 67), (420, 820, 90, 77)],
}


def _red_mask(image: np.ndarray) -> np.ndarray:
    return (image[..., 0] > 180).astype(np.uint8)


@pytest.fixture
def unpaired_folder(he_image, tmp_path):
    """Manifest of unpaired samples: A's masks are the red-channel rule, B's its inverse."""
    lines = ["specimen_id,scanner,path,mask_path"]
    for scanner, crops in CROPS.items():
        for k, (y, x, h, w) in enumerate(crops):
            image = np.ascontiguousarray(he_image[y : y + h, x : x + w])
            mask = _red_mask(image) if scanner == "A" else 1 - _red_mask(image)
            atomic_write_image(tmp_path / f"{scanner}_{k}.png", image)
            atomic_write_image(tmp_path / f"{scanner}_{k}_mask.png", mask)
            lines.append(f"{scanner}/{k},{scanner},{scanner}_{k}.png,{scanner}_{k}_mask.png")
    (tmp_path / "manifest.csv").write_text("\n".join(lines) + "\n")
    return tmp_path


class RedRuleSegmenter(ModelABC):
    """Per-pixel rule (red > 180 -> class 1) with a fixed input and a cropped output.

    ``fully_convolutional`` is not set: the evaluator must tile images of any
    size into ``patch_input_shape`` tiles and stitch the ``margin``-cropped
    outputs; since the rule is per pixel, the stitched map must equal the
    rule applied to the whole image.
    """

    def __init__(self, size: int = 32, margin: int = 4) -> None:
        super().__init__()
        self.size, self.margin = size, margin
        self.class_dict = {0: "other", 1: "red"}
        out = size - 2 * margin
        self.ioconfig = IOSegmentorConfig(
            input_resolutions=[{"units": "baseline", "resolution": 1.0}],
            output_resolutions=[{"units": "baseline", "resolution": 1.0}],
            patch_input_shape=(size, size),
            patch_output_shape=(out, out),
            stride_shape=(out, out),
            save_resolution={"units": "baseline", "resolution": 1.0},
        )
        self.seen: set[tuple[int, int]] = set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.add(tuple(x.shape[2:]))
        assert tuple(x.shape[2:]) == (self.size, self.size), x.shape
        red = (x[:, 0] > 180).float()
        probs = torch.stack([1 - red, red], dim=-1)
        m = self.margin
        return probs[:, m:-m, m:-m]

    @staticmethod
    def infer_batch(model, batch_data, *, device):
        x = torch.as_tensor(np.asarray(batch_data)).to(device).float().permute(0, 3, 1, 2)
        with torch.inference_mode():
            return model(x).cpu().numpy()

    @staticmethod
    def postproc(image):
        return image.argmax(axis=-1)


class MeanRedClassifier(ModelABC):
    """Class 1 when the mean red value exceeds 180; needs 48 x 48 inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.class_dict = {0: "pale", 1: "red"}
        self.ioconfig = IOPatchPredictorConfig(
            input_resolutions=[{"units": "baseline", "resolution": 1.0}],
            patch_input_shape=(48, 48),
            stride_shape=(48, 48),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert tuple(x.shape[2:]) == (48, 48), x.shape
        p = torch.sigmoid((x[:, 0].mean(dim=(1, 2)) - 180.0) / 5.0)
        return torch.stack([1 - p, p], 1)

    @staticmethod
    def infer_batch(model, batch_data, *, device):
        x = torch.as_tensor(np.asarray(batch_data)).to(device).float().permute(0, 3, 1, 2)
        with torch.inference_mode():
            return model(x).cpu().numpy()

    @staticmethod
    def postproc(image):
        return image.argmax(axis=-1)


# ---------------------------------------------------------------- data and protocol
def test_unpaired_manifest_is_read_and_auto_picks_the_unpaired_protocol(unpaired_folder):
    with pytest.raises(ValueError, match="lack scanners"):
        read_manifest(unpaired_folder / "manifest.csv")  # the paired reader refuses it
    samples = read_unpaired_manifest(unpaired_folder / "manifest.csv")
    assert [(s.specimen_id, s.scanner) for s in samples][:2] == [("A/0", "A"), ("A/1", "A")]
    assert all(s.mask_path is not None for s in samples)
    assert choose_protocol("auto", samples) == "unpaired"
    paired = [PairedSample("x", "A"), PairedSample("x", "B")]
    assert choose_protocol("auto", paired) == "paired"
    assert choose_protocol("unpaired", paired) == "unpaired"


def test_unpaired_manifest_errors_name_the_line(unpaired_folder):
    manifest = unpaired_folder / "bad.csv"
    manifest.write_text("specimen_id,scanner,path\nA/0,A,A_0.png\nA/0,A,A_1.png\n")
    with pytest.raises(ValueError, match=r"line 3.*duplicate row"):
        read_unpaired_manifest(manifest)
    manifest.write_text("specimen_id,scanner,path\nA/0,A,missing.png\n")
    with pytest.raises(FileNotFoundError, match=r"line 2: .*missing\.png"):
        read_unpaired_manifest(manifest)


# ------------------------------------------------------------------ any image size
@pytest.mark.parametrize(("tile", "out"), [((8, 8), (8, 8)), ((10, 12), (6, 4)), ((9, 9), (1, 1))])
def test_tiles_stitch_back_to_the_image(tile, out):
    image = np.arange(23 * 17).reshape(23, 17)
    tiles, grid = tile_image(image, tile, out)
    assert tiles.shape[1:3] == tile
    my, mx = (tile[0] - out[0]) // 2, (tile[1] - out[1]) // 2
    centres = [t[my : my + out[0], mx : mx + out[1]] for t in tiles]
    np.testing.assert_array_equal(stitch_tiles(centres, grid, out, image.shape), image)


def test_fixed_input_segmenter_sees_tiles_and_predictions_are_cropped_back(he_image):
    model = RedRuleSegmenter(size=32, margin=4)
    evaluator = UnpairedEvaluator(model, verbose=False)
    images = [he_image[:50, :37], he_image[100:123, 200:290], he_image[5:6, 7:9]]
    preds = evaluator.segment(images)
    assert model.seen == {(32, 32)}  # never an image of another size
    for image, pred in zip(images, preds, strict=True):
        assert pred.shape == image.shape[:2]
        np.testing.assert_array_equal(pred, _red_mask(image))


# ------------------------------------------------------------------------ metrics
def test_unpaired_segmentation_scores_each_scanner_against_its_masks(unpaired_folder):
    samples = read_unpaired_manifest(unpaired_folder / "manifest.csv")
    evaluator = UnpairedEvaluator(RedRuleSegmenter(), verbose=False, n_resamples=300)
    result = evaluator.evaluate(samples, unpaired_folder / "out")
    # A's masks are exactly the model's rule, B's the inverse
    np.testing.assert_allclose(result.per_sample["A"]["dice"], 1.0)
    expected_b = []
    for sample in samples[3:]:
        image = load_sample_image(sample)
        expected_b.append(
            float(dice_score(_red_mask(image)[None], (1 - _red_mask(image))[None])[0])
        )
    np.testing.assert_allclose(result.per_sample["B"]["dice"], expected_b, atol=1e-12)
    assert result.worst_scanner == "B"
    assert result.minimum == pytest.approx(np.mean(expected_b))
    assert result.mean == pytest.approx((1.0 + np.mean(expected_b)) / 2)
    low, high = result.per_scanner["B"]["ci95"]
    assert low <= result.minimum <= high
    assert result.ci95["mean"][0] <= result.mean <= result.ci95["mean"][1]
    # every sample was scored at its own size (none of them is 32 x 32)
    assert result.per_scanner["A"]["image_sizes"]["n_distinct"] == 3
    assert result.per_scanner["B"]["padded"] == 3
    # B is worse than predicting background everywhere; 3 samples per scanner is few
    text = " ".join(result.warnings)
    assert "No better than trivial" in text
    assert "(B " in text
    assert "Scanner A has only 3 scored sample(s)" in text
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["protocol"] == "unpaired"
    assert data["summary"]["worst_scanner"] == "B"
    assert data["per_scanner"]["A"]["predictions"]["classes_predicted"]
    assert {e.kind for e in result.examples} == {"typical", "worst"}
    assert result.examples[0].prediction.shape == result.examples[0].truth.shape


def test_unpaired_classification_accuracy_auc_and_majority_baseline(he_image, tmp_path):
    samples = []
    red = np.full((40, 30, 3), (230, 60, 60), np.uint8)  # smaller than the 48 x 48 input
    pale = np.full((40, 30, 3), (150, 150, 200), np.uint8)
    for scanner, images_labels in {
        "A": [(red, 1), (pale, 0), (red, 1), (pale, 0)],
        "B": [(red, 0), (pale, 0), (red, 1), (pale, 0)],  # two labels the rule gets wrong
    }.items():
        for k, (image, label) in enumerate(images_labels):
            path = atomic_write_image(tmp_path / f"{scanner}{k}.png", image)
            samples.append(PairedSample(f"{scanner}/{k}", scanner, path=path, label=label))
    result = UnpairedEvaluator(
        MeanRedClassifier(), task="classification", verbose=False, n_resamples=200
    ).evaluate(samples)
    assert result.metric == "accuracy"
    assert result.per_scanner["A"]["mean"] == 1.0
    assert result.per_scanner["B"]["mean"] == 0.75
    assert result.per_scanner["A"]["auc"] == pytest.approx(1.0)
    assert result.per_scanner["B"]["trivial"]["best_score"] == 0.75  # always "pale"
    assert result.worst_scanner == "B"
    assert result.per_scanner["A"]["resized"]["n_resized"] == 0  # padded, not resized
    assert any("No better than trivial" in w and "B 0.750" in w for w in result.warnings)
    assert "pale" in result.per_scanner["B"]["trivial"]["best"]


def test_missing_ground_truth_and_embedding_are_refused(he_image, tmp_path):
    path = atomic_write_image(tmp_path / "a.png", he_image[:32, :32])
    with pytest.raises(ValueError, match=r"1 of 1 sample\(s\) have no mask_path: s \(A\)"):
        UnpairedEvaluator("builtin", verbose=False).evaluate([PairedSample("s", "A", path=path)])
    with pytest.raises(ValueError, match="scores predictions against ground truth"):
        UnpairedEvaluator("builtin", task="embedding")


def test_stratified_bootstrap_summary_and_paired_results():
    out = scanner_score_summary({"A": [1.0, 1.0, 1.0], "B": [0.0, 1.0, 0.5, 0.5]}, seed=3)
    assert out["worst_scanner"] == "B"
    assert out["per_scanner"]["A"]["ci95"] == [1.0, 1.0]
    assert 0.0 <= out["minimum_ci95"][0] <= 0.5 <= out["minimum_ci95"][1] <= 1.0
    again = scanner_score_summary({"A": [1.0, 1.0, 1.0], "B": [0.0, 1.0, 0.5, 0.5]}, seed=3)
    assert again == out  # seeded

    pc = pairwise_consistency({"A": [0, 1], "B": [0, 1]}, "agreement")
    result = EvaluationResult(
        "classification",
        "patch",
        "m",
        ["A", "B"],
        ["x", "y"],
        {"agreement": pc},
        "agreement",
        outputs={"A": np.array([[0.9, 0.1], [0.2, 0.8]]), "B": np.array([[0.9, 0.1], [0.7, 0.3]])},
    )
    assert unpaired_from_paired(result) is None  # no labels: no task metric
    both = unpaired_from_paired(result, labels={"A": [0, 1], "B": [0, 1]}, n_resamples=50)
    assert both.per_sample["B"]["accuracy"] == [1.0, 0.0]
    assert both.worst_scanner == "B"


class NaNSegmenter(RedRuleSegmenter):
    """Outputs NaN on tiles whose mean red value is high (one bad sample)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        bad = x[:, 0].mean(dim=(1, 2)) > 200
        out[bad] = float("nan")
        return out


def test_non_finite_outputs_name_the_scanner_and_sample(he_image, tmp_path):
    samples = []
    for k, image in enumerate([he_image[:40, :40], np.full((40, 40, 3), 250, np.uint8)]):
        path = atomic_write_image(tmp_path / f"{k}.png", image)
        mask = atomic_write_image(tmp_path / f"{k}_m.png", np.zeros((40, 40), np.uint8))
        samples.append(PairedSample(f"tile/{k}", "AT2", path=path, mask_path=mask))
    with pytest.raises(
        ValueError, match=r"non-finite model output on scanner 'AT2', sample 'tile/1'"
    ):
        UnpairedEvaluator(NaNSegmenter(), verbose=False).evaluate(samples)
