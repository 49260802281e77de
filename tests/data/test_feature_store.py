"""The zarr patch-feature store."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from tia_scanner_robust.data.feature_store import FeatureStore, sanitize_key


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


def test_existing_store_keeps_its_format(tmp_path):
    path = tmp_path / "v2.zarr"
    FeatureStore(path, mode="w", zarr_format=2).write_slide("P1", "AT2", np.ones((2, 3)))
    reopened = FeatureStore(path, mode="a", zarr_format=3)  # must not start a v3 store on top
    assert [s.key for s in reopened.slides()] == ["P1/AT2/na"]
    assert not (path / "zarr.json").exists()


def test_claim_extraction_records_and_refuses(tmp_path):
    store = FeatureStore(tmp_path / "f.zarr")
    assert store.extraction is None
    settings = {"model": "m", "patch_size": 224, "normalization": {"mean": (0.5,) * 3}}
    recorded = store.claim_extraction(settings)
    assert recorded["normalization"]["mean"] == [0.5, 0.5, 0.5]  # as JSON stores it
    assert FeatureStore(store.path, mode="r").extraction == recorded
    assert store.claim_extraction(settings) == recorded  # same settings: fine
    with pytest.raises(ValueError, match=r"patch_size: 224 in the store, 256 now"):
        store.claim_extraction({**settings, "patch_size": 256})
    with pytest.raises(ValueError, match=r"extra: None in the store, 1 now"):
        store.claim_extraction({**settings, "extra": 1})


def test_mode_w_refuses_to_delete_other_folders(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "keep.txt").write_text("x")
    with pytest.raises(ValueError, match="not a feature store; refusing to delete"):
        FeatureStore(folder, mode="w")
    assert (folder / "keep.txt").exists()
    store = FeatureStore(tmp_path / "f.zarr", mode="w")
    store.write_slide("P1", "AT2", np.ones((2, 3)))
    assert len(FeatureStore(store.path, mode="w")) == 0  # a feature store may be recreated
