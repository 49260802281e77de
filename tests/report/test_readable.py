"""Reports a reader can act on: class names, distributions, typical tiles, truth, links."""

from __future__ import annotations

import base64
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tia_scanner_robust._io import atomic_write_image
from tia_scanner_robust.data.paired import PairedCollection, PairedSample
from tia_scanner_robust.engines.consistency import ScannerConsistencyEvaluator
from tia_scanner_robust.engines.results import EvaluationResult
from tia_scanner_robust.engines.tasks import TASK_SPECS
from tia_scanner_robust.metrics.functional import pairwise_consistency
from tia_scanner_robust.report import write_report
from tia_scanner_robust.report.comparison import VariantEvaluation, write_comparison_report
from tia_scanner_robust.report.html import render_html


def _embedded(page: str) -> set[bytes]:
    return {base64.b64decode(s) for s in re.findall(r'src="data:image/png;base64,([^"]*)"', page)}


@pytest.fixture(scope="module")
def checkpoint_report(he_image, tmp_path_factory):
    """A paired evaluation with masks of a checkpoint, and its report."""
    root = tmp_path_factory.mktemp("data")
    samples = []
    for k in range(4):
        tile = np.ascontiguousarray(he_image[150 * k : 150 * k + 64, 100:164])
        dark = np.clip(tile.astype(int) - 50 * (k % 2), 0, 255).astype(np.uint8)
        for scanner, image in (("A", tile), ("dark", dark)):
            path = atomic_write_image(root / f"{k}{scanner}.png", image)
            mask = atomic_write_image(root / f"{k}{scanner}_m.png", (tile[..., 0] < 150) * 1)
            samples.append(PairedSample(f"s/{k}", scanner, path=path, mask_path=mask))
    ckpt = root / "runs" / "simcons" / "best.pt"
    ckpt.parent.mkdir(parents=True)
    torch.save({"arch": "builtin", "config": {}}, ckpt)
    out = tmp_path_factory.mktemp("report")
    evaluator = ScannerConsistencyEvaluator(str(ckpt), verbose=False, save_predictions=False)
    result = evaluator.evaluate(PairedCollection(samples), out)
    return result, write_report(result, out, analysis=False), ckpt


def test_report_has_typical_tiles_truth_overlays_and_distributions(checkpoint_report):
    result, paths, ckpt = checkpoint_report
    assert [e.kind for e in result.examples] == ["worst"]
    assert [e.kind for e in result.typical_examples] == ["typical"]
    assert result.typical_examples[0].specimen_id != result.examples[0].specimen_id
    assert result.examples[0].truths is not None
    assert {p.name for p in paths.values()} >= {
        "example_worst_pair_0.png",
        "example_typical_pair_0.png",
        "truth_worst_pair_0.png",
        "truth_typical_pair_0.png",
        "pair_distribution_dice.png",
    }
    page = paths["html"].read_text()
    assert "Typical specimen on the worst pair" in page
    assert "prediction against the ground truth" in page
    embedded = _embedded(page)
    for key in ("pair_distribution", "typical_0", "truth_0", "typical_truth_0"):
        assert paths[key].read_bytes() in embedded
    # the model is named by its path, not only "checkpoint:best.pt"
    assert str(ckpt) in page


def test_tables_list_only_the_models_classes_with_their_names():
    pc = pairwise_consistency({"A": [0, 1], "B": [0, 1]}, "agreement")
    per_scanner = {
        s: {f"mean_fraction_{k}": (0.6 if k == 0 else 0.4 if k == 1 else 0.0) for k in range(256)}
        for s in ("A", "B")
    }
    result = EvaluationResult(
        "segmentation",
        "wsi",
        "m",
        ["A", "B"],
        ["x", "y"],
        {"dice": pc},
        "dice",
        per_scanner=per_scanner,
    )
    page = render_html(result, {})
    assert "class 1 fraction" in page
    assert "class 2 fraction" not in page
    assert "class 255 fraction" not in page
    result.class_dict = {0: "background", 1: "tumour", 2: "stroma"}
    page = render_html(result, {})
    assert "tumour fraction" in page
    assert "stroma fraction" in page  # a named class stays, even when never predicted
    assert "class 3 fraction" not in page


def test_classification_captions_use_class_names():
    settings = SimpleNamespace(class_dict={0: "normal", 1: "tumour"}, positive_class=1)
    spec = TASK_SPECS["classification"]
    caption = spec.caption({"probabilities": np.array([0.3, 0.7])}, settings)
    assert caption == "tumour (class 1), p = normal 0.30, tumour 0.70"
    assert spec.cov_quantity(settings) == "probability of tumour (class 1)"


def _variant(name, report_dir, checkpoint, avg, ci=None):
    return VariantEvaluation(
        name=name,
        scanners=["A", "dark"],
        matrix=[[None, avg], [avg, None]],
        pairs={"A|dark": avg},
        n_samples={"A|dark": 4},
        paired_dice_avg=avg,
        paired_dice_min=avg,
        min_pair=["A", "dark"],
        task_dice=0.7,
        task_dice_per_scanner={"A": 0.7, "dark": 0.6},
        cov=0.123456,
        checkpoint=checkpoint,
        checkpoint_sha256="0" * 64,
        eval_seconds=1.0,
        report_dir=report_dir,
        average_ci95=ci,
        minimum_ci95=ci,
    )


def test_comparison_links_galleries_cov_settings_and_intervals(checkpoint_report, tmp_path):
    _, paths, _ = checkpoint_report
    report_dir = str(paths["html"].parent)
    evaluations = {
        "baseline": _variant("baseline", report_dir, "runs/baseline/best.pt", 0.6, [0.5, 0.7]),
        "simcons": _variant("simcons", report_dir, "runs/simcons/best.pt", 0.65, [0.55, 0.75]),
    }
    settings = {"steps": 7, "model": {"arch": "unet", "size": [64, 64]}, "quick": True}
    out = write_comparison_report(evaluations, tmp_path / "cmp", settings=settings)
    page = out["html"].read_text()
    # links to the per-model reports, relative to the comparison page
    hrefs = re.findall(r'href="([^"]*)"', page)
    assert hrefs
    assert all(h.endswith("report.html") and not h.startswith("/") for h in hrefs)
    assert (out["html"].parent / hrefs[0]).resolve() == paths["html"].resolve()
    # CoV in the summary; each model named by its checkpoint
    assert "CoV across scanners" in page
    assert "<td>0.1235</td>" in page
    assert "runs/baseline/best.pt" in page
    assert "runs/simcons/best.pt" in page
    # settings as a table: dotted keys, no Python or JSON reprs
    settings_html = page.split("<h2>Settings</h2>", 1)[1]
    assert "<td>model.size</td><td>64, 64</td>" in settings_html
    assert "<td>quick</td><td>yes</td>" in settings_html
    assert "{" not in settings_html
    assert "'" not in settings_html
    # the typical tile beside the worst pair, and prediction against truth
    embedded = _embedded(page)
    assert paths["typical_0"].read_bytes() in embedded
    assert paths["example_0"].read_bytes() in embedded  # worst
    assert paths["truth_0"].read_bytes() in embedded
    # intervals: drawn, and the overlap is stated
    assert out["intervals"].read_bytes() in embedded
    assert "within the uncertainty" in page
