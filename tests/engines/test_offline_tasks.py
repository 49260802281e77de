"""Every task works offline with local weights, or says clearly why not (issue 10, item 4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiatoolbox.models.architecture.vanilla import CNNBackbone, CNNModel

from tia_scanner_robust._io import atomic_write_image
from tia_scanner_robust.data.paired import PairedCollection, PairedSample
from tia_scanner_robust.engines.consistency import ScannerConsistencyEvaluator
from tia_scanner_robust.engines.loading import WeightsUnavailableError, resolve_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def small_collection(he_image, tmp_path_factory) -> PairedCollection:
    root = tmp_path_factory.mktemp("tiles")
    samples = []
    for k in range(3):
        tile = np.ascontiguousarray(he_image[64 * k : 64 * k + 64, 200:264])
        for scanner, image in (("A", tile), ("B", tile[..., ::-1].copy())):
            path = atomic_write_image(root / f"{k}_{scanner}.png", image)
            samples.append(PairedSample(f"s/{k}", scanner, path=path, label=k % 2))
    return PairedCollection(samples, scanners=["A", "B"])


@pytest.fixture(scope="module")
def classifier_weights(tmp_path_factory):
    """Random-weight TIAToolbox classifier, as a bare state dict and as a named checkpoint."""
    root = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    model = CNNModel("resnet18", num_classes=9)
    torch.save(model.state_dict(), root / "kather_random.pth")
    torch.save({"arch": "resnet18-kather100k", "state_dict": model.state_dict()}, root / "ck.pt")
    return root / "kather_random.pth", root / "ck.pt", model


def test_classification_with_architecture_and_local_weights(
    small_collection, classifier_weights, tmp_path
):
    weights, checkpoint, _ = classifier_weights
    by_name = ScannerConsistencyEvaluator(
        "resnet18-kather100k", task="classification", weights=weights, verbose=False
    ).evaluate(small_collection, tmp_path / "name")
    assert by_name.outputs["A"].shape == (3, 9)
    np.testing.assert_allclose(by_name.outputs["A"].sum(axis=1), 1.0, rtol=1e-5)
    by_checkpoint = ScannerConsistencyEvaluator(
        checkpoint, task="classification", verbose=False
    ).evaluate(small_collection, tmp_path / "ck")
    np.testing.assert_allclose(by_checkpoint.outputs["A"], by_name.outputs["A"], atol=1e-5)
    summary = by_name.per_scanner["A"]["predictions"]
    assert sum(summary["class_histogram"].values()) == 3
    assert "majority_class" in by_name.trivial
    assert any("Inputs resized" in w for w in by_name.warnings)  # 64 px tiles -> 224 px


def test_embedding_with_backbone_and_local_weights(small_collection, tmp_path):
    torch.manual_seed(1)
    backbone = CNNBackbone("resnet18")
    path = tmp_path / "backbone.pth"
    torch.save(backbone.state_dict(), path)
    module, _, _ = resolve_model("resnet18", weights=path)
    for mine, theirs in zip(
        module.state_dict().values(), backbone.state_dict().values(), strict=True
    ):
        assert torch.equal(mine, theirs)  # the local weights are used, not a random init
    result = ScannerConsistencyEvaluator(
        "resnet18", task="embedding", weights=path, ks=(1,), verbose=False
    ).evaluate(small_collection, tmp_path / "emb")
    assert result.outputs["A"].shape == (3, 512)


@pytest.mark.parametrize(
    ("model", "task", "fits"),
    [
        ("builtin", "classification", "'segmentation'"),
        ("builtin", "embedding", "'segmentation'"),
        ("resnet18", "classification", "'embedding'"),
        ("resnet18", "segmentation", "'embedding'"),
    ],
)
def test_a_model_that_does_not_fit_the_task_is_refused_before_inference(model, task, fits):
    with pytest.raises(ValueError, match=f"it fits task {fits}, not '{task}'") as info:
        ScannerConsistencyEvaluator(model, task=task, verbose=False)
    assert "pass" in str(info.value)


def test_offline_pretrained_name_gives_one_clear_line(monkeypatch, tmp_path):
    import tiatoolbox.models.architecture as arch  # noqa: PLC0415

    def offline(*args, **kwargs):
        msg = "Cannot send a request, as the client has been closed."
        raise RuntimeError(msg)

    monkeypatch.setattr(arch, "fetch_pretrained_weights", offline)
    with pytest.raises(WeightsUnavailableError) as info:
        resolve_model("resnet18-kather100k")
    text = str(info.value)
    assert "\n" not in text
    assert "'resnet18-kather100k'" in text
    assert "could not fetch" in text.lower()
    assert "--weights" in text
