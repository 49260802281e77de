"""Corpus: feature stores with NaN/inf, and extractions resumed with other settings."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
import zarr
from torch import nn

from tia_scanner_robust.data.bag_datasets import BagDataset
from tia_scanner_robust.data.collection import PairedCollection, PairedSample
from tia_scanner_robust.data.feature_store import FeatureStore
from tia_scanner_robust.features.extract import extract_features

from ._corpus import rgb_tile


def store_with(tmp_path, bad_value: float) -> tuple[FeatureStore, str]:
    """Four specimens x two scanners; one slide's stored features get ``bad_value``."""
    path = tmp_path / "pool.zarr"
    store = FeatureStore(path, mode="w")
    rng = np.random.default_rng(0)
    for p in range(4):
        for scanner in ("A", "B"):
            store.write_slide(f"P{p}", scanner, rng.normal(size=(3, 4)), label=p % 2, split="train")
    key = store.slide_key("P2", "B")
    zarr.open_group(str(path), mode="r+")[key]["features"][1, 2] = bad_value  # a foreign write
    return FeatureStore(path, mode="r"), key


BAD_VALUES = [np.nan, np.inf, -np.inf]


def read_all_bags(store: FeatureStore) -> None:
    dataset = BagDataset(store)
    for index in range(len(dataset)):
        dataset[index]


def load_scangen_pool(store: FeatureStore) -> None:
    from tia_scanner_robust.training.scangen import ScanGenHook  # noqa: PLC0415

    ScanGenHook(store.path, batch_size=4, seed=0)._load_cache(torch.device("cpu"))


READS = {
    "read_slide": lambda store, key: store.read_slide("P2", "B"),
    "read_features": lambda store, key: store.read_features(key),
    "bag_dataset": lambda store, key: read_all_bags(store),
    "scangen_pool": lambda store, key: load_scangen_pool(store),
}


@pytest.mark.parametrize("bad_value", BAD_VALUES, ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("reader", sorted(READS))
def test_non_finite_features_are_refused_with_the_slide_named(tmp_path, bad_value, reader):
    store, key = store_with(tmp_path, bad_value)
    with pytest.raises(ValueError, match="NaN or inf") as caught:
        READS[reader](store, key)
    assert key in str(caught.value)
    assert str(store.path) in str(caught.value)


@pytest.mark.parametrize("bad_value", BAD_VALUES, ids=["nan", "inf", "-inf"])
def test_non_finite_features_are_not_written(tmp_path, bad_value):
    store = FeatureStore(tmp_path / "f.zarr")
    features = np.ones((2, 3))
    features[0, 1] = bad_value
    with pytest.raises(ValueError, match=r"'P1', 'AT2'.*NaN or inf"):
        store.write_slide("P1", "AT2", features)


# ------------------------------------------------------------- provenance
class MeanNet(nn.Module):
    """Mean colour of the patch times a weight (its weights identify it)."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((1,), scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x.mean(dim=(2, 3))


@pytest.fixture
def samples(tmp_path):
    out = []
    for p in range(2):
        for seed, scanner in enumerate(("A", "B")):
            path = rgb_tile(tmp_path / f"P{p}_{scanner}.png", 64, seed + 2 * p)
            out.append(PairedSample(f"P{p}", scanner, path=path, label=p, split="train", mpp=0.5))
    return PairedCollection(out)


def run(samples, path, model=None, **kwargs):
    kwargs.setdefault("patch_size", 32)
    return extract_features(samples, path, model or MeanNet(), progress=False, **kwargs)


CHANGES = {
    "weights": ({"model": MeanNet(2.0)}, "weights"),
    "patch_size": ({"patch_size": 16}, "patch_size"),
    "normalization": ({"normalization": ((0.5,) * 3, (0.5,) * 3)}, "normalization"),
    "model_name": ({"model_name": "other"}, "model"),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_resume_with_other_settings_is_refused(samples, tmp_path, change):
    path = tmp_path / "f.zarr"
    assert run(samples, path)["written"] == 4
    before = FeatureStore(path, mode="r").read_slide("P0", "A").features.copy()
    kwargs, field = CHANGES[change]
    with pytest.raises(ValueError, match=f"{field}: .* in the store") as caught:
        run(samples, path, **kwargs)
    assert str(path) in str(caught.value)
    assert "--overwrite" in str(caught.value)
    np.testing.assert_array_equal(
        FeatureStore(path, mode="r").read_slide("P0", "A").features, before
    )
    # overwrite starts afresh with the new settings
    summary = run(samples, path, overwrite=True, **kwargs)
    assert (summary["written"], summary["skipped"]) == (4, 0)
    store = FeatureStore(path, mode="r")
    assert store.extraction is not None
    assert len(store) == 4


def test_resume_with_the_same_settings_skips(samples, tmp_path):
    path = tmp_path / "f.zarr"
    run(samples, path)
    summary = run(samples, path)
    assert (summary["written"], summary["skipped"]) == (0, 4)
    extraction = FeatureStore(path, mode="r").extraction
    assert extraction["model"] == "MeanNet"
    assert extraction["patch_size"] == 32
    assert extraction["weights"].startswith("sha256:")


def test_resume_with_another_mpp_is_refused(samples, tmp_path):
    path = tmp_path / "f.zarr"
    run(samples, path)
    moved = PairedCollection([dataclasses.replace(s, mpp=0.25) for s in samples])
    with pytest.raises(ValueError, match=r"mpp: 0.5 in the store, 0.25 now"):
        run(moved, path)


def test_random_initialisation_is_seeded_and_recorded(samples, tmp_path):
    path = tmp_path / "f.zarr"
    run(samples, path, model="resnet18", pretrained=False, seed=0)
    assert run(samples, path, model="resnet18", pretrained=False, seed=0)["skipped"] == 4
    with pytest.raises(ValueError, match="weights: 'sha256:"):
        run(samples, path, model="resnet18", pretrained=False, seed=1)


def test_store_without_a_record_is_checked_against_its_slides(samples, tmp_path):
    path = tmp_path / "old.zarr"
    store = FeatureStore(path, mode="w")
    store.write_slide("P0", "A", np.ones((4, 3)), model="UNI", attrs={"patch_size": 32})
    with pytest.raises(ValueError, match="model: 'UNI' in the store, 'MeanNet' now"):
        run(samples, path)


def test_overwrite_refuses_to_delete_a_folder_that_is_not_a_store(samples, tmp_path):
    folder = tmp_path / "precious"
    folder.mkdir()
    (folder / "thesis.txt").write_text("years of work")
    with pytest.raises(ValueError, match="not a feature store"):
        run(samples, folder, overwrite=True)
    assert (folder / "thesis.txt").read_text() == "years of work"


def test_cli_refuses_another_network_and_overwrites_on_request(samples, tmp_path):
    from click.testing import CliRunner  # noqa: PLC0415

    from tia_scanner_robust.cli.extract_features import extract_features as cli  # noqa: PLC0415

    manifest = tmp_path / "manifest.csv"
    samples.to_manifest(manifest)
    out = tmp_path / "cli.zarr"
    base = ["--manifest", str(manifest), "--model", "resnet18", "--no-pretrained"]
    base += ["-o", str(out), "--patch-size", "32", "--batch-size", "4"]
    assert CliRunner().invoke(cli, base).exit_code == 0
    other = CliRunner().invoke(cli, [*base, "--seed", "1"])
    assert other.exit_code == 1
    assert "other settings" in other.output
    assert "weights" in other.output
    again = CliRunner().invoke(cli, [*base, "--seed", "1", "--overwrite"])
    assert again.exit_code == 0, again.output
    summary = json.loads(again.output[again.output.rindex('{"written"') :].splitlines()[0])
    assert (summary["written"], summary["skipped"]) == (4, 0)
