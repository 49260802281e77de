"""The CSV manifest reader: columns, values, files, kinds and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from tests.data.test_registration import write_pyramidal_tiff
from tia_scanner_robust._io import atomic_write_image
from tia_scanner_robust.data.manifest import detect_kind, read_manifest
from tia_scanner_robust.data.paired import PairedImageDataset, load_sample_image

HEADER = "specimen_id,scanner,path"


@pytest.fixture
def folder(tmp_path, he_tile):
    """Images A.png, B.png, C.png (distinct crops) and a mask in tmp_path/images."""
    for k, name in enumerate("ABC"):
        atomic_write_image(
            tmp_path / "images" / f"{name}.png",
            np.ascontiguousarray(he_tile[10 * k : 10 * k + 40, :48]),
        )
    atomic_write_image(tmp_path / "images" / "mask.png", np.zeros((40, 48, 3), np.uint8))
    return tmp_path


def write(folder, text, name="manifest.csv"):
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_all_columns(folder, he_tile):
    text = (
        "\ufeffSpecimen_ID , Scanner,PATH,magnification,mpp,label,mask_path,split,"
        "x,y,width,height,kind\n"
        "s/1,A,images/A.png,20x,0.5,1,images/mask.png,train,2,3,8,6,patch\n"
        "s/1,B,images/B.png,20x,0.5,1,images/mask.png,train,2,3,8,6,\n"
        "\n"
        "s/2,A,images/C.png,20x,0.5,2.5,,test,,,,,\n"
        "s/2,B,images/A.png,20x,,2.5,,test,,,,,\n"
    )
    collection = read_manifest(write(folder, text))
    assert collection.scanners == ["A", "B"]
    assert collection.specimens == ["s/1", "s/2"]
    first = collection.get("s/1", "A", "20x")
    assert first.path == folder / "images" / "A.png"
    assert first.mpp == 0.5
    assert first.label == 1
    assert isinstance(first.label, int)
    assert first.split == "train"
    assert first.region == (2, 3, 8, 6)
    assert first.mask_path == folder / "images" / "mask.png"
    assert not first.is_wsi
    assert collection.get("s/2", "A", "20x").label == 2.5
    assert collection.get("s/2", "B", "20x").mpp is None
    np.testing.assert_array_equal(load_sample_image(first), he_tile[3:9, 2:10])
    item = PairedImageDataset(collection)[0]
    assert item["image"].shape == (6, 8, 3)
    assert item["mask"].shape == (6, 8)
    assert item["magnification"] == "20x"
    assert collection.filter(split="test").specimens == ["s/2"]


def test_scanner_order_first_appearance_or_given(folder):
    text = f"{HEADER}\ns/1,B,images/B.png\ns/1,A,images/A.png\n"
    assert read_manifest(write(folder, text)).scanners == ["B", "A"]
    assert read_manifest(write(folder, text), scanners=["A", "B"]).scanners == ["A", "B"]


@pytest.mark.parametrize(
    ("text", "error", "match"),
    [
        ("", ValueError, "empty manifest \\(no header"),
        (f"{HEADER}\n", ValueError, "a header but no rows"),
        (
            "specimen_id,path\ns/1,images/A.png\n",
            ValueError,
            "missing required column\\(s\\) \\['scanner'\\]",
        ),
        (
            f"{HEADER},stain\n",
            ValueError,
            (
                "unknown column\\(s\\) \\['stain'\\]; known columns: specimen_id, scanner, path, "
                "magnification, mpp"
            ),
        ),
        (f"{HEADER},path\n", ValueError, "appear more than once"),
        (
            f"{HEADER}\ns/1,A,images/A.png\ns/1,A,images/B.png\n",
            ValueError,
            "line 3: duplicate row: specimen 's/1', scanner 'A'.*already on line 2",
        ),
        (
            f"{HEADER},mpp\ns/1,A,images/A.png,abc\n",
            ValueError,
            "line 2, column 'mpp': expected a positive number, got 'abc'",
        ),
        (f"{HEADER},mpp\ns/1,A,images/A.png,-1\n", ValueError, "column 'mpp'"),
        (
            f"{HEADER},x,y,width,height\ns/1,A,images/A.png,1.5,0,4,4\n",
            ValueError,
            "line 2, column 'x': expected an integer, got '1.5'",
        ),
        (
            f"{HEADER},x,y,width,height\ns/1,A,images/A.png,1,,4,4\n",
            ValueError,
            "give all of x, y, width, height",
        ),
        (
            f"{HEADER},label\ns/1,A,images/A.png,tumour\n",
            ValueError,
            "column 'label': expected a numeric label",
        ),
        (
            f"{HEADER},kind\ns/1,A,images/A.png,slide\n",
            ValueError,
            "column 'kind': expected 'patch', 'wsi'",
        ),
        (f"{HEADER}\ns/1,,images/A.png\n", ValueError, "line 2, column 'scanner': empty value"),
        (
            f"{HEADER}\ns/1,A,images/A.png,extra\n",
            ValueError,
            "line 2: 4 fields but the header has 3",
        ),
        (
            f"{HEADER}\n../s,A,images/A.png\n",
            ValueError,
            "line 2: specimen_id '../s' must be a relative id",
        ),
        (f"{HEADER}\ns/1,A/B,images/A.png\n", ValueError, "line 2: scanner 'A/B' is not a valid"),
        (
            f"{HEADER}\ns/1,A,../outside.png\n",
            ValueError,
            "line 2, column 'path': relative path '../outside.png' escapes the manifest's folder",
        ),
        (
            f"{HEADER},mask_path\ns/1,A,images/A.png,../m.png\n",
            ValueError,
            "column 'mask_path': relative path",
        ),
        (
            f"{HEADER}\ns/1,A,images/A.png\ns/2,B,images/B.png\n",
            ValueError,
            "s/1 \\(missing: B\\); s/2 \\(missing: A\\)",
        ),
    ],
)
def test_malformed_manifests(folder, text, error, match):
    with pytest.raises(error, match=match) as info:
        read_manifest(write(folder, text))
    assert "manifest.csv" in str(info.value) or "missing:" in str(info.value)


def test_missing_files_are_listed_up_front(folder):
    rows = "".join(f"s/{i},A,images/none_{i}.png\n" for i in range(7))
    with pytest.raises(
        FileNotFoundError,
        match=r"7 file\(s\) named in the manifest do not exist: line 2: .*none_0\.png; line 3",
    ) as info:
        read_manifest(write(folder, f"{HEADER}\n{rows}"))
    assert "... and 2 more" in str(info.value)
    with pytest.raises(FileNotFoundError, match="Manifest file not found"):
        read_manifest(folder / "absent.csv")


def test_paths_outside_the_folder(folder, tmp_path):
    sub = folder / "sub"
    sub.mkdir()
    manifest = write(sub, f"{HEADER}\ns/1,A,../images/A.png\ns/1,B,{folder / 'images' / 'B.png'}\n")
    with pytest.raises(ValueError, match="escapes"):
        read_manifest(manifest)
    collection = read_manifest(manifest, allow_outside=True)
    assert load_sample_image(collection.get("s/1", "A")).shape == (40, 48, 3)
    # Absolute paths are always accepted.
    absolute = write(sub, f"{HEADER}\ns/1,B,{folder / 'images' / 'B.png'}\n", "abs.csv")
    assert read_manifest(absolute).get("s/1", "B").path == folder / "images" / "B.png"


def test_incomplete_drop_and_verify(folder):
    text = f"{HEADER}\ns/1,A,images/A.png\ns/1,B,images/B.png\ns/2,A,images/C.png\n"
    with pytest.warns(UserWarning, match=r"dropped 1 incomplete specimen\(s\) \(1 sample\(s\)\)"):
        assert read_manifest(write(folder, text), incomplete="drop").specimens == ["s/1"]
    (folder / "images" / "B.png").write_bytes(b"broken")
    text = f"{HEADER}\ns/1,A,images/A.png\ns/1,B,images/B.png\n"
    read_manifest(write(folder, text))  # files exist: decoding is deferred
    with pytest.raises(ValueError, match=r"could not be read: .*B\.png"):
        read_manifest(write(folder, text), verify=True)


def test_kind_detection_and_wsi_rows(tmp_path, he_image):
    slide = np.full((1100, 1100, 3), 255, np.uint8)
    slide[50:1050, 50:1050] = he_image
    write_pyramidal_tiff(tmp_path / "slide.tif", slide, mpp=0.5)
    atomic_write_image(tmp_path / "plain.tif", np.ascontiguousarray(he_image[:64, :64]))
    assert detect_kind(tmp_path / "slide.tif") == "wsi"
    assert detect_kind(tmp_path / "plain.tif") == "patch"
    assert detect_kind(tmp_path / "x.ndpi") == "wsi"
    assert detect_kind(tmp_path / "x.jpg") == "patch"
    text = (
        "specimen_id,scanner,path,mpp,x,y,width,height,kind\n"
        "s/1,A,slide.tif,1.0,100,200,32,24,\n"
        "s/1,B,plain.tif,,0,0,32,24,\n"
        "s/2,A,slide.tif,,100,200,32,24,\n"
        "s/2,B,slide.tif,,100,200,32,24,patch\n"
    )
    collection = read_manifest(write(tmp_path, text))
    wsi = collection.get("s/1", "A")
    assert wsi.is_wsi
    assert not collection.get("s/1", "B").is_wsi
    assert collection.get("s/2", "A").is_wsi
    assert not collection.get("s/2", "B").is_wsi  # explicit kind wins
    region = load_sample_image(wsi)
    assert region.shape == (24, 32, 3)
    baseline = load_sample_image(collection.get("s/2", "A"))
    np.testing.assert_array_equal(baseline, slide[200:224, 100:132])
