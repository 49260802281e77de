"""Corpus: files written atomically honour the umask, like any other tool."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import torch

from tia_scanner_robust._io import (
    atomic_write_bytes,
    atomic_write_image,
    atomic_write_json,
    atomic_write_text,
    current_umask,
)
from tia_scanner_robust.training.checkpoint import write_checkpoint

WRITERS = {
    "text": lambda p: atomic_write_text(p, "x"),
    "bytes": lambda p: atomic_write_bytes(p, b"x"),
    "json": lambda p: atomic_write_json(p, {"a": 1}),
    "image": lambda p: atomic_write_image(p.with_suffix(".png"), np.zeros((2, 2, 3), np.uint8)),
    "checkpoint": lambda p: write_checkpoint({"w": torch.zeros(1)}, p),
}


@pytest.fixture
def umask():
    def set_mask(mask: int) -> None:
        os.umask(mask)

    previous = os.umask(0o022)
    os.umask(previous)
    yield set_mask
    os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077, 0o027])
@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_new_files_get_0666_minus_the_umask(tmp_path, umask, mask, writer):
    umask(mask)
    assert current_umask() == mask
    path = WRITERS[writer](tmp_path / "out.bin")
    assert mode(path) == 0o666 & ~mask
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_rewriting_keeps_the_existing_mode(tmp_path, umask):
    umask(0o022)
    path = atomic_write_text(tmp_path / "shared.txt", "v1")
    path.chmod(0o664)
    atomic_write_text(path, "v2")
    assert (mode(path), path.read_text()) == (0o664, "v2")


@pytest.mark.parametrize("suffix", [".html", ".pt", ".txt"])
def test_image_with_a_non_image_extension_is_a_clear_error(tmp_path, suffix):
    path = tmp_path / f"preview{suffix}"
    with pytest.raises(ValueError, match=rf"extension '\{suffix}' for .*preview") as caught:
        atomic_write_image(path, np.zeros((2, 2, 3), np.uint8))
    assert ".png" in str(caught.value)
    assert not path.exists()
    assert not list(tmp_path.glob(".*.tmp"))
