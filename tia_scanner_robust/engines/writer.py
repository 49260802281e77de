"""The per-scanner prediction store of patch-mode evaluations (zarr, written atomically).

Examples:
    >>> import tempfile, zarr
    >>> from pathlib import Path
    >>> writer = ZarrPredictionWriter(Path(tempfile.mkdtemp()) / "A.zarr", {"scanner": "A"})
    >>> writer.add("probabilities", [np.array([0.1, 0.9]), np.array([0.5, 0.5])])
    >>> zarr.open_group(str(writer.close()), mode="r")["probabilities"].shape
    (2, 2)

"""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["ZarrPredictionWriter"]


class ZarrPredictionWriter:
    """Per-scanner prediction store written to a temporary folder, renamed when done.

    Args:
        path: The final store (``<scanner>.zarr``).
        attrs: Group attributes (task, sample ids, class names, scanner).
    """

    def __init__(self, path: Path, attrs: dict[str, Any]) -> None:
        import zarr  # noqa: PLC0415

        self.final = path
        self.tmp = path.with_name(f".{path.name}.tmp")
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.group = zarr.open_group(str(self.tmp), mode="w")
        self.group.attrs.update(attrs)
        self.count = 0

    def add(self, key: str, rows: list[np.ndarray]) -> None:
        """Append rows: label maps go to ``samples/<index>``, vectors to ``key``."""
        if not rows:
            return
        if key == "samples":
            for row in rows:
                self.group.create_array(
                    f"samples/{self.count:06d}", data=np.ascontiguousarray(row), overwrite=True
                )
                self.count += 1
            return
        data = np.stack(rows).astype(np.float32)
        if key not in self.group:
            arr = self.group.create_array(
                key, shape=(0, *data.shape[1:]), dtype=data.dtype, chunks=(1024, *data.shape[1:])
            )
        else:
            arr = self.group[key]
        old = arr.shape[0]
        arr.resize((old + data.shape[0], *data.shape[1:]))
        arr[old:] = data
        self.count = old + data.shape[0]

    def close(self) -> Path:
        """Move the finished store into place (replacing an older one)."""
        if self.final.exists():
            shutil.rmtree(self.final)
        self.tmp.rename(self.final)
        return self.final
