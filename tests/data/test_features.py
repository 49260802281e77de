"""Feature store, bag datasets, ScanGen sampler and specimen splits."""

from __future__ import annotations

import pickle
from collections import Counter

import numpy as np
import pytest
import torch

from tia_scanner_robust.data.features import (
    MISSING_LABEL,
    BagDataset,
    FeatureStore,
    ScanGenBatchSampler,
    collate_bags,
    sanitize_key,
    split_specimens,
)
from tia_scanner_robust.losses.pairs import count_pairs


@pytest.fixture(params=[2, 3], ids=["zarr-v2", "zarr-v3"])
def store(tmp_path, request):
    return FeatureStore(tmp_path / "features.zarr", mode="w", zarr_format=request.param)


def test_round_trip(store):
    rng = np.random.default_rng(0)
    features = rng.standard_normal((7, 5)).astype(np.float32)
    coords = rng.integers(0, 1000, (7, 4))
    info = store.write_slide(
        "TCGA 05/4244",
        "Aperio AT2",
        features,
        coords,
        magnification="40x",
        label=1,
        split="train",
        model="UNI",
        attrs={"site": "A"},
    )
    assert info.key == "TCGA_05_4244/Aperio_AT2/40x"
    reopened = FeatureStore(store.path, mode="r")
    slide = reopened.read_slide("TCGA 05/4244", "Aperio AT2", "40x")
    np.testing.assert_array_equal(slide.features, features)
    np.testing.assert_array_equal(slide.coordinates, coords)
    assert slide.features.dtype == np.float32
    meta = slide.info
    assert (meta.specimen_id, meta.scanner, meta.magnification) == (
        "TCGA 05/4244",
        "Aperio AT2",
        "40x",
    )
    assert (meta.label, meta.split, meta.model, meta.n_instances, meta.feature_dim) == (
        1,
        "train",
        "UNI",
        7,
        5,
    )
    assert meta.extra == {"site": "A"}
    assert reopened.feature_dim == 5
    assert reopened.has_slide("TCGA 05/4244", "Aperio AT2", "40x")
    assert not reopened.has_slide("TCGA 05/4244", "Aperio AT2")  # other magnification
    with pytest.raises(PermissionError):
        reopened.write_slide("x", "y", features)
    frame = reopened.to_dataframe()
    assert frame.loc[0, "specimen_id"] == "TCGA 05/4244"
    assert frame.loc[0, "site"] == "A"


def test_incomplete_slide_is_absent_and_replaced(store):
    store.write_slide("P1", "AT2", np.ones((3, 4)))
    # simulate a write interrupted after the arrays: the complete flag is still False
    group = store._root.require_group(FeatureStore.slide_key("P2", "AT2"))
    group.attrs.update(
        {"specimen_id": "P2", "scanner": "AT2", "magnification": None, "complete": False}
    )
    assert not store.has_slide("P2", "AT2")
    assert [s.specimen_id for s in store.slides()] == ["P1"]
    assert len(store.slides(include_incomplete=True)) == 2
    with pytest.raises(KeyError, match="No complete slide"):
        store.read_slide("P2", "AT2")
    # a resumed extraction rewrites it without overwrite=True
    store.write_slide("P2", "AT2", np.full((2, 4), 7.0))
    assert store.read_slide("P2", "AT2").features[0, 0] == 7.0
    # corrupted metadata (a crash while writing it) also counts as absent
    meta = next(
        p
        for p in (store.path / "P1" / "AT2" / "na").iterdir()
        if p.name in ("zarr.json", ".zattrs")
    )
    meta.write_text("{not json")
    reopened = FeatureStore(store.path, mode="a")
    assert not reopened.has_slide("P1", "AT2")
    assert [s.specimen_id for s in reopened.slides()] == ["P2"]
    reopened.write_slide("P1", "AT2", np.zeros((1, 4)))
    assert reopened.has_slide("P1", "AT2")


def test_write_guards(store):
    store.write_slide("P1", "AT2", np.ones((3, 4)))
    with pytest.raises(ValueError, match="overwrite=True"):
        store.write_slide("P1", "AT2", np.ones((3, 4)))
    store.write_slide("P1", "AT2", np.zeros((2, 4)), overwrite=True)
    assert store.read_slide("P1", "AT2").info.n_instances == 2
    with pytest.raises(ValueError, match="feature size"):
        store.write_slide("P2", "AT2", np.ones((3, 5)))
    store.write_slide("P 1", "AT2", np.ones((3, 4)))
    with pytest.raises(ValueError, match="collision"):
        store.write_slide("P/1", "AT2", np.ones((3, 4)))  # both sanitise to "P_1"
    assert not store.has_slide("P/1", "AT2")
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        store.write_slide("P3", "AT2", np.ones((0, 4)))
    with pytest.raises(ValueError, match="NaN"):
        store.write_slide("P3", "AT2", np.full((2, 4), np.nan))
    with pytest.raises(ValueError, match="coordinates"):
        store.write_slide("P3", "AT2", np.ones((2, 4)), np.ones((3, 4)))
    with pytest.raises(ValueError, match="reserved"):
        store.write_slide("P3", "AT2", np.ones((2, 4)), attrs={"label": 1})
    assert store.delete_slide("P1", "AT2")
    assert not store.has_slide("P1", "AT2")


def test_sanitize_and_errors(tmp_path):
    assert sanitize_key("a b/c") == "a_b_c"
    assert sanitize_key(".hidden") == "k.hidden"
    with pytest.raises(FileNotFoundError):
        FeatureStore(tmp_path / "missing.zarr", mode="r")
    with pytest.raises(ValueError, match="mode"):
        FeatureStore(tmp_path / "x.zarr", mode="x")


def test_filter_splits_and_pickling(store):
    for specimen, split in (("P1", "train"), ("P2", "test")):
        for scanner in ("AT2", "GT450"):
            store.write_slide(
                specimen, scanner, np.ones((2, 3)), split=split, label=int(specimen == "P2")
            )
    assert {s.key for s in store.filter(split="train")} == {"P1/AT2/na", "P1/GT450/na"}
    assert len(store.filter(scanner=["GT450"], split={"train", "test"})) == 2
    assert store.assign_splits({"P1": "val"}) == 2
    assert {s.split for s in store.filter(specimen_id="P1")} == {"val"}
    clone = pickle.loads(pickle.dumps(store))  # DataLoader workers with spawn
    assert len(clone.slides()) == 4


def test_bag_dataset_and_collate(store):
    sizes = {"P1": 3, "P2": 5, "P3": 2}
    for specimen, n in sizes.items():
        label = None if specimen == "P3" else int(specimen == "P2")
        store.write_slide(
            specimen, "AT2", np.full((n, 4), n, np.float32), label=label, split="train"
        )
    dataset = BagDataset(store, split="train")
    assert len(dataset) == 3
    item = dataset[1]
    assert item["features"].shape == (5, 4)
    assert (item["specimen_id"], item["scanner"], item["label"]) == ("P2", "AT2", 1)
    assert dataset[2]["label"] == MISSING_LABEL
    batch = collate_bags([dataset[i] for i in range(3)])
    assert batch["features"].shape == (3, 5, 4)
    assert batch["mask"].sum(dim=1).tolist() == [3, 5, 2]
    assert batch["label"].tolist() == [0, 1, MISSING_LABEL]
    assert batch["label"].dtype == torch.int64
    assert torch.all(batch["features"][0, 3:] == 0)
    # missing labels are ignored by cross-entropy's default ignore_index
    logits = torch.zeros(3, 2)
    assert torch.isfinite(torch.nn.functional.cross_entropy(logits, batch["label"]))
    with pytest.raises(ValueError, match="no 'label'"):
        BagDataset(store, require_label=True)
    capped = BagDataset(store.path, split="train", max_instances=2, seed=0)
    assert capped[1]["features"].shape == (2, 4)
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, collate_fn=collate_bags)
    assert [b["features"].shape[0] for b in loader] == [2, 1]
    with pytest.raises(ValueError, match="No complete slide"):
        BagDataset(store, split="nope")


def multi_scanner_pool(n_specimens=12, scanners=("A", "B", "C", "D")):
    specimens, scanner_ids = [], []
    rng = np.random.default_rng(0)
    for p in range(n_specimens):
        chosen = rng.choice(len(scanners), rng.integers(1, len(scanners) + 1), replace=False)
        for s in chosen:
            specimens.append(f"p{p}")
            scanner_ids.append(scanners[s])
    return specimens, scanner_ids


@pytest.mark.parametrize(("batch_size", "per_specimen"), [(4, 2), (8, 2), (9, 3), (12, 3)])
def test_sampler_guarantees_pairs(batch_size, per_specimen):
    specimens, scanners = multi_scanner_pool()
    sampler = ScanGenBatchSampler(
        specimens, scanners, batch_size, scanners_per_specimen=per_specimen, num_batches=200, seed=1
    )
    seen = Counter()
    for batch in sampler:
        assert len(batch) == batch_size
        assert len(set(batch)) == batch_size
        batch_specimens = [specimens[i] for i in batch]
        batch_scanners = [scanners[i] for i in batch]
        n_attract, n_repel = count_pairs(batch_specimens, batch_scanners)
        assert n_attract >= 1
        assert n_repel >= 1
        per = Counter(batch_specimens)
        assert set(per.values()) == {per_specimen}
        for p in per:  # distinct scanners per specimen
            assert (
                len({s for s, q in zip(batch_scanners, batch_specimens, strict=True) if q == p})
                == per_specimen
            )
        seen.update(batch_specimens)
    assert set(seen) == set(sampler.eligible)  # every eligible specimen gets drawn


def test_sampler_is_reproducible_and_varies_by_epoch():
    specimens, scanners = multi_scanner_pool()
    a = ScanGenBatchSampler(specimens, scanners, 4, seed=3)
    b = ScanGenBatchSampler(specimens, scanners, 4, seed=3)
    first_a, first_b = list(a), list(b)
    assert first_a == first_b
    assert list(a) != first_a  # the next epoch differs
    a.set_epoch(0)
    assert list(a) == first_a


def test_sampler_rejects_impossible_pools():
    # every specimen under one scanner: no attraction pair possible
    with pytest.raises(ValueError, match="cannot fill"):
        ScanGenBatchSampler(["a", "b", "c"], ["X", "X", "Y"], 4)
    # two specimens, each under two scanners, but no scanner in common: no repulsion pair
    with pytest.raises(ValueError, match="repulsion"):
        ScanGenBatchSampler(["a", "a", "b", "b"], ["W", "X", "Y", "Z"], 4)
    with pytest.raises(ValueError, match="specimens_per_batch"):
        ScanGenBatchSampler(["a", "a"], ["X", "Y"], 2)
    with pytest.raises(ValueError, match="must equal"):
        ScanGenBatchSampler(["a", "a", "b", "b"], ["X", "Y", "X", "Y"], 5, specimens_per_batch=2)
    with pytest.raises(ValueError, match="scanners_per_specimen"):
        ScanGenBatchSampler(["a", "b"], ["X", "X"], 2, scanners_per_specimen=1)


def test_split_specimens_no_leak_and_stratified():
    specimens = [f"p{i}" for i in range(40) for _ in range(3)]  # three slides each
    labels = [int(i < 20) for i in range(40) for _ in range(3)]
    splits = split_specimens(
        specimens, {"train": 0.5, "val": 0.25, "test": 0.25}, seed=0, labels=labels
    )
    assert set(splits) == set(specimens)  # each specimen exactly one split
    counts = Counter(splits.values())
    assert counts == {"train": 20, "val": 10, "test": 10}
    for name in ("train", "val", "test"):
        positives = sum(1 for p, s in splits.items() if s == name and int(p[1:]) < 20)
        assert positives == counts[name] // 2  # class balance preserved
    # independent of the input order; changes with the seed
    assert (
        split_specimens(
            specimens[::-1], {"train": 0.5, "val": 0.25, "test": 0.25}, 0, labels=labels[::-1]
        )
        == splits
    )
    assert split_specimens(specimens, (0.5, 0.25, 0.25), seed=1, labels=labels) != splits
    with pytest.raises(ValueError, match="sum to 1"):
        split_specimens(specimens, (0.5, 0.2))
    with pytest.raises(ValueError, match="conflicting labels"):
        split_specimens(["a", "a"], (0.5, 0.5), labels=[0, 1])


def test_existing_store_keeps_its_format(tmp_path):
    path = tmp_path / "v2.zarr"
    FeatureStore(path, mode="w", zarr_format=2).write_slide("P1", "AT2", np.ones((2, 3)))
    reopened = FeatureStore(path, mode="a", zarr_format=3)  # must not start a v3 store on top
    assert [s.key for s in reopened.slides()] == ["P1/AT2/na"]
    assert not (path / "zarr.json").exists()
