"""Corpus: manifests, YAML configs and WSI listings that are not UTF-8."""

from __future__ import annotations

import pytest

from tia_scanner_robust.data.build_paired import read_wsi_listing
from tia_scanner_robust.data.manifest import read_manifest
from tia_scanner_robust.training.config import load_config
from tia_scanner_robust.training.mil_config import load_mil_config

from ._corpus import rgb_tile

LATIN1 = "latin-1"
CP1252 = "cp1252"


def manifest(folder, encoding):
    rgb_tile(folder / "a.png")
    text = "specimen_id,scanner,path\nbiopsie-\u00e9t\u00e9,AT2,a.png\n"
    path = folder / "manifest.csv"
    path.write_bytes(text.encode(encoding))
    return path, read_manifest


def yaml_config(folder, encoding):
    path = folder / "config.yaml"
    path.write_bytes("# r\u00e9glages\ntrainer:\n  epochs: 2\n".encode(encoding))
    return path, load_config


def mil_config(folder, encoding):
    path = folder / "mil.yaml"
    path.write_bytes("# r\u00e9glages\nname: essai\n".encode(encoding))
    return path, load_mil_config


def wsi_listing(folder, encoding):
    (folder / "s.svs").write_bytes(b"x")
    path = folder / "listing.csv"
    path.write_bytes("slide_id,scanner,path\nlame-\u00e9,AT2,s.svs\n".encode(encoding))
    return path, read_wsi_listing


FILES = {"manifest": manifest, "config": yaml_config, "mil_config": mil_config, "wsi": wsi_listing}


@pytest.mark.parametrize("encoding", [LATIN1, CP1252, "utf-16"])
@pytest.mark.parametrize("kind", sorted(FILES))
def test_non_utf8_text_files_are_named(tmp_path, kind, encoding):
    path, reader = FILES[kind](tmp_path, encoding)
    with pytest.raises(ValueError, match="is not UTF-8 text") as caught:
        reader(path)
    message = str(caught.value)
    assert str(path) in message
    assert "save the file with UTF-8 encoding" in message
    assert "\n" not in message


@pytest.mark.parametrize("kind", ["manifest", "config", "mil_config"])
def test_utf8_with_byte_order_mark_is_read(tmp_path, kind):
    path, reader = FILES[kind](tmp_path, "utf-8-sig")
    assert reader(path) is not None
