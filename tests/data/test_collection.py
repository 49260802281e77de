"""The paired data model: PairedSample and PairedCollection."""

from __future__ import annotations

import pytest

from tia_scanner_robust.data.collection import PairedCollection, PairedSample, natural_key
from tia_scanner_robust.data.manifest import read_manifest

SCANNERS = ("AT2", "GT450", "P1000")


def _samples(specimens=("s/1", "s/2", "s/10"), scanners=SCANNERS, **kwargs):
    return [PairedSample(sp, sc, **kwargs) for sp in specimens for sc in scanners]


@pytest.mark.parametrize("bad", ["../x", "/abs/x", "a//b", "a\\b", "a/./b", " a", ""])
def test_sample_rejects_unsafe_specimen_ids(bad):
    with pytest.raises(ValueError, match="specimen_id"):
        PairedSample(bad, "AT2")


@pytest.mark.parametrize("bad", ["a/b", "..", "x:y", ""])
def test_sample_rejects_unsafe_scanner_names(bad):
    with pytest.raises(ValueError, match="scanner"):
        PairedSample("s/1", bad)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"mpp": 0}, ValueError, "mpp must be a positive"),
        ({"mpp": float("nan")}, ValueError, "mpp must be a positive"),
        ({"region": (0, 0, 5)}, ValueError, "four integers"),
        ({"region": (0, 0, 0, 5)}, ValueError, "positive"),
        ({"region": (-1, 0, 5, 5)}, ValueError, "non-negative"),
        ({"label": True}, TypeError, "label"),
        ({"label": "tumour"}, TypeError, "label"),
        ({"split": ""}, ValueError, "split"),
    ],
)
def test_sample_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        PairedSample("s/1", "AT2", **kwargs)


def test_wsi_region_may_start_left_of_the_slide():
    assert PairedSample("s/1", "AT2", region=(-5, 0, 8, 8), is_wsi=True).region == (-5, 0, 8, 8)


def test_collection_orders_naturally_and_aligns_scanners():
    samples = _samples()[::-1]  # reversed input order
    collection = PairedCollection(samples, scanners=["P1000", "AT2", "GT450"])
    assert collection.specimens == ["s/1", "s/2", "s/10"]
    assert collection.scanners == ["P1000", "AT2", "GT450"]
    assert collection.reference_scanner == "P1000"
    lists = [collection.by_scanner(s) for s in collection.scanners]
    for column in zip(*lists, strict=True):
        assert len({s.specimen_id for s in column}) == 1
    assert [s.scanner for s in collection][:3] == ["P1000", "AT2", "GT450"]
    assert len(collection) == 9
    assert "3 specimens x 3 scanners" in repr(collection)


def test_collection_default_scanner_order_is_first_appearance():
    samples = [PairedSample("s/1", s) for s in ("Philips", "AT2")]
    assert PairedCollection(samples).scanners == ["Philips", "AT2"]


def test_collection_rejects_duplicates_and_bad_scanner_lists():
    samples = _samples()
    with pytest.raises(ValueError, match="duplicate sample for specimen 's/1', scanner 'AT2'"):
        PairedCollection([*samples, PairedSample("s/1", "AT2")])
    with pytest.raises(ValueError, match="not listed: \\['P1000'\\]"):
        PairedCollection(samples, scanners=["AT2", "GT450"])
    with pytest.raises(ValueError, match="no samples: \\['DP200'\\]"):
        PairedCollection(samples, scanners=[*SCANNERS, "DP200"])
    with pytest.raises(ValueError, match="no samples"):
        PairedCollection([])
    with pytest.raises(TypeError, match="PairedSample"):
        PairedCollection([("s/1", "AT2")])


def test_incomplete_error_names_specimens_and_missing_scanners():
    samples = [s for s in _samples() if not (s.specimen_id == "s/2" and s.scanner != "AT2")]
    with pytest.raises(ValueError, match=r"1 specimen\(s\).*s/2 \(missing: GT450, P1000\)"):
        PairedCollection(samples)


def test_incomplete_drop_warns_with_count():
    samples = [
        s for s in _samples() if not (s.specimen_id in {"s/2", "s/10"} and s.scanner == "P1000")
    ]
    with pytest.warns(UserWarning, match=r"dropped 2 incomplete specimen\(s\) \(4 sample\(s\)\)"):
        collection = PairedCollection(samples, incomplete="drop")
    assert collection.specimens == ["s/1"]
    assert len(collection) == 3
    with pytest.raises(ValueError, match="valid values: error, drop"):
        PairedCollection(samples, incomplete="keep")


def test_incomplete_drop_of_everything_is_an_error():
    samples = [PairedSample("a/1", "X"), PairedSample("a/2", "Y")]
    with pytest.raises(ValueError, match="nothing is left"):
        PairedCollection(samples, incomplete="drop")


def test_magnifications_are_paired_separately():
    samples = _samples(specimens=("s/1",), magnification="20x") + _samples(
        specimens=("s/1",), magnification="40x"
    )
    collection = PairedCollection(samples)
    assert collection.magnifications == ["20x", "40x"]
    assert collection.groups == [("s/1", "20x"), ("s/1", "40x")]
    assert [s.magnification for s in collection.by_scanner("AT2")] == ["20x", "40x"]
    assert len(collection.by_scanner("AT2", magnification="40x")) == 1
    with pytest.raises(ValueError, match=r"s/1 @ 40x \(missing: P1000\)"):
        PairedCollection(samples[:-1])


def test_split_must_be_consistent_per_specimen():
    samples = _samples(specimens=("s/1",), split="train")
    samples[1] = PairedSample("s/1", "GT450", split="test")
    with pytest.raises(ValueError, match="several splits"):
        PairedCollection(samples)


def test_filter_get_and_by_specimen():
    samples = [
        PairedSample(sp, sc, split="test" if sp == "s/2" else "train")
        for sp in ("s/1", "s/2", "s/3")
        for sc in SCANNERS
    ]
    collection = PairedCollection(samples)
    train = collection.filter(split="train", scanners=["P1000", "AT2"])
    assert train.specimens == ["s/1", "s/3"]
    assert train.scanners == ["AT2", "P1000"]  # the collection's order is kept
    assert collection.filter(specimens=["s/3"]).specimens == ["s/3"]
    assert collection.filter(split=["train", "test"]).specimens == collection.specimens
    assert list(collection.by_specimen("s/2")) == list(SCANNERS)
    assert collection.get("s/2", "GT450").split == "test"
    with pytest.raises(KeyError, match="No sample"):
        collection.get("s/9", "AT2")
    with pytest.raises(ValueError, match="Unknown scanner 'DP200'"):
        collection.filter(scanners=["DP200"])
    with pytest.raises(ValueError, match="left no samples"):
        collection.filter(split="val")


def test_natural_key():
    names = ["slide_10/sample_2", "slide_2/sample_10", "slide_2/sample_9"]
    assert sorted(names, key=natural_key) == [
        "slide_2/sample_9",
        "slide_2/sample_10",
        "slide_10/sample_2",
    ]


def test_manifest_round_trip(image_tree):
    collection, root = image_tree
    samples = list(collection)
    samples[0] = PairedSample(
        samples[0].specimen_id,
        samples[0].scanner,
        path=samples[0].path,
        label=0,
        mask_path=samples[0].mask_path,
        mpp=0.25,
        region=(1, 2, 10, 12),
    )
    collection = PairedCollection(samples)
    manifest = collection.to_manifest(root / "manifest.csv")
    text = manifest.read_text()
    assert str(root) not in text  # paths inside the folder are written relative
    again = read_manifest(manifest)
    assert list(again) == list(collection)
    assert again.scanners == collection.scanners
