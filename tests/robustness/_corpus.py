"""Generators of the bad-input corpus: small files written by the tests into ``tmp_path``."""

from __future__ import annotations

import struct
import zlib
from typing import TYPE_CHECKING

import numpy as np

from tia_scanner_robust._io import atomic_write_image

if TYPE_CHECKING:
    from pathlib import Path


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_declaring(path: Path, width: int, height: int) -> Path:
    """A valid PNG header declaring ``width`` x ``height`` RGB with a tiny IDAT of zeros.

    The file is a few hundred bytes: decoding it whole would allocate
    ``3 * width * height`` bytes (a decompression bomb).
    """
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = (b"\0" * (1 + 3 * min(width, 4096))) * 4  # filter byte + a few rows of zeros
    data = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
    data += _chunk(b"IDAT", zlib.compress(rows, 9)) + _chunk(b"IEND", b"")
    path.write_bytes(data)
    return path


def rgb_tile(path: Path, size: int = 32, seed: int = 0) -> Path:
    """A small random RGB tile."""
    rng = np.random.default_rng(seed)
    return atomic_write_image(path, rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def rgba_tile(path: Path, size: int = 16) -> Path:
    """An RGBA PNG with a half-transparent alpha channel (written with OpenCV: BGRA)."""
    import cv2  # noqa: PLC0415

    image = np.full((size, size, 4), 200, np.uint8)
    image[..., 3] = 128
    assert cv2.imwrite(str(path), image)
    return path


def binary_255_mask(path: Path, size: int = 32) -> Path:
    """A 0/255 mask (the classic binary-mask export) instead of class indices 0/1."""
    mask = np.zeros((size, size), np.uint8)
    mask[size // 4 : size // 2, size // 4 : size // 2] = 255
    return atomic_write_image(path, mask)
