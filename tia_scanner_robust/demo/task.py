"""The demo task: a scanner-paired segmentation task from one H&E image, on disk.

:func:`build_demo_task` renders an H&E image (default TIAToolbox's bundled
``tiatoolbox.data.stain_norm_target()``, 1000 x 1000 px, offline) through the
*reference* simulated scanner, derives labels on that rendering with the
classical segmenter (:func:`~tia_scanner_robust.demo.labels.derive_labels`),
and splits it by position::

    x < 60 % of the width, y < 80 %   train/  overlapping tiles (reference scan)
    x < 60 %,              y >= 80 %  val/    tiles for the best-epoch choice
    x >= 60 %                          test/   held-out tiles (reference scan)
                                       paired/ the held-out tiles through every
                                               scanner profile (SCORPION layout,
                                               manifest.csv with the masks)

``train/``, ``val/`` and ``test/`` are folder datasets (``images/`` and
``masks/``) that :class:`~tia_scanner_robust.training.data.SegmentationFolderDataset`
and ``tia-scanner-robust train`` read. The task is cached on disk: building
it again with the same arguments reuses the files.

Examples:
    >>> import tempfile
    >>> from tia_scanner_robust.demo.variants import demo_config
    >>> task = build_demo_task(
    ...     tempfile.mkdtemp(), train_tile_size=256, train_stride=256, test_tile_size=192
    ... )
    >>> task.num_classes, task.collection.scanners[0], len(task.collection.specimens)
    (2, 'reference', 10)
    >>> task.n_images("train"), task.n_images("val"), task.n_images("test")
    (12, 3, 10)
    >>> cfg = demo_config("colorjitter_simcons", task, steps=20, output_dir="runs/x")
    >>> cfg.model.arch, cfg.trainer.max_steps, cfg.hooks[0].kwargs["lam"]
    ('Unet', 20, 0.3)

"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tia_scanner_robust._io import atomic_write_image, atomic_write_json
from tia_scanner_robust._validation import check_in_choices, check_rgb_image, read_rgb_image
from tia_scanner_robust.demo.labels import LABEL_CLASS_DICTS, derive_labels, reference_rendering

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tia_scanner_robust.data import PairedCollection

__all__ = ["DemoTask", "build_demo_task"]

_TASK_MARKER = "demo_task.json"
_TASK_FORMAT = 1
_TASK_FOLDERS = ("train", "val", "test", "paired")


@dataclass
class DemoTask:
    """The demo segmentation task on disk.

    Attributes:
        root: The task folder.
        train_dir: Training folder dataset (reference-scan tiles).
        val_dir: Validation folder dataset (best-epoch selection).
        test_dir: Held-out folder dataset (reference-scan tiles, task Dice).
        paired_dir: Held-out tiles through every scanner profile.
        collection: The paired test set (masks attached), reference scanner first.
        scheme: Label scheme (``"nuclei"`` or ``"tissue"``).
        class_dict: Class names.
        parameters: What the task was built with.
    """

    root: Path
    train_dir: Path
    val_dir: Path
    test_dir: Path
    paired_dir: Path
    collection: PairedCollection
    scheme: str
    class_dict: dict[int, str]
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        """Number of label classes."""
        return len(self.class_dict)

    @property
    def nuclei_class(self) -> int:
        """Index of the nuclei class."""
        return next(k for k, v in self.class_dict.items() if v == "nuclei")

    def n_images(self, split: str) -> int:
        """Number of images in ``train``, ``val`` or ``test``."""
        folder = {"train": self.train_dir, "val": self.val_dir, "test": self.test_dir}[split]
        return sum(1 for _ in (folder / "images").glob("*.png"))


def _positions(start: int, end: int, tile: int, stride: int, *, cover_end: bool) -> list[int]:
    """Tile origins along one axis; ``cover_end`` adds a last tile flush with ``end``."""
    if end - start < tile:
        return []
    out = list(range(start, end - tile + 1, stride))
    if cover_end and out[-1] + tile < end:
        out.append(end - tile)
    return out


def _grid(
    region: tuple[int, int, int, int], tile: int, stride: int, *, cover_end: bool
) -> list[tuple[int, int]]:
    """``(y, x)`` origins of the tiles in ``region = (y0, y1, x0, x1)``."""
    y0, y1, x0, x1 = region
    return [
        (y, x)
        for y in _positions(y0, y1, tile, stride, cover_end=cover_end)
        for x in _positions(x0, x1, tile, stride, cover_end=cover_end)
    ]


def _task_parameters(
    image: np.ndarray,
    *,
    source: str,
    scheme: str,
    train_fraction: float,
    val_fraction: float,
    train_tile_size: int,
    train_stride: int,
    test_tile_size: int,
    profiles: list[Any],
) -> dict[str, Any]:
    return {
        "format": _TASK_FORMAT,
        "source": source,
        "source_sha256": hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest(),
        "scheme": scheme,
        "train_fraction": float(train_fraction),
        "val_fraction": float(val_fraction),
        "train_tile_size": int(train_tile_size),
        "train_stride": int(train_stride),
        "test_tile_size": int(test_tile_size),
        "profiles": [repr(p) for p in profiles],
    }


def _load_task(root: Path, marker: dict[str, Any]) -> DemoTask | None:
    from tia_scanner_robust.data import read_manifest  # noqa: PLC0415

    params = marker["parameters"]
    manifest = root / "paired" / "manifest.csv"
    files = marker.get("files", [])
    if not manifest.is_file() or not files or not all((root / f).is_file() for f in files):
        return None
    collection = read_manifest(manifest, scanners=marker["scanners"])
    return DemoTask(
        root=root,
        train_dir=root / "train",
        val_dir=root / "val",
        test_dir=root / "test",
        paired_dir=root / "paired",
        collection=collection,
        scheme=params["scheme"],
        class_dict=dict(LABEL_CLASS_DICTS[params["scheme"]]),
        parameters=params,
    )


def _check_task_arguments(
    scheme: str,
    fractions: dict[str, float],
    sizes: dict[str, int],
    profiles: Sequence[str] | None,
) -> list[str]:
    """Validate :func:`build_demo_task`'s arguments; return the profile names or files."""
    from tia_scanner_robust.augmentations.scanner import (  # noqa: PLC0415
        SCANNER_PROFILES,
        is_profile_path,
    )

    check_in_choices(scheme, tuple(LABEL_CLASS_DICTS), "scheme")
    for name, value in fractions.items():
        if not 0.0 < float(value) < 1.0:
            msg = f"{name} must be in (0, 1), got {value!r}."
            raise ValueError(msg)
    for name, value in sizes.items():
        if isinstance(value, bool) or int(value) != value or value < 16:
            msg = f"{name} must be an integer >= 16, got {value!r}."
            raise ValueError(msg)
    names = list(SCANNER_PROFILES) if profiles is None else list(profiles)
    for name in names:
        if not is_profile_path(name):  # a fitted profile file is checked when it is read
            check_in_choices(name, list(SCANNER_PROFILES), "profile")
    if len(names) < 2 or len(set(names)) != len(names):
        msg = f"profiles must name at least two distinct scanner profiles, got {names}."
        raise ValueError(msg)
    return names


def _reuse_or_clear(root: Path, params: dict[str, Any]) -> DemoTask | None:
    """The task already in ``root`` if built with ``params``; else clear our old folders."""
    marker_path = root / _TASK_MARKER
    if marker_path.is_file():
        marker = json.loads(marker_path.read_text(encoding="utf-8"))
        if marker.get("parameters") == params:
            task = _load_task(root, marker)
            if task is not None:
                return task
        for sub in _TASK_FOLDERS:  # our own folders, built with other parameters
            shutil.rmtree(root / sub, ignore_errors=True)
        marker_path.unlink()
    elif root.is_dir() and any((root / sub).exists() for sub in _TASK_FOLDERS):
        msg = (
            f"{root} holds {'/'.join(_TASK_FOLDERS)} folders but no {_TASK_MARKER}; "
            "choose another folder for the demo task."
        )
        raise ValueError(msg)
    return None


def _write_folder_tiles(
    root: Path,
    split: str,
    tiles: list[tuple[int, int]],
    size: int,
    images: tuple[np.ndarray, np.ndarray],
) -> list[str]:
    """Write ``split/images`` and ``split/masks`` tiles; return the relative paths."""
    reference, labels = images
    files = []
    for k, (y, x) in enumerate(tiles, start=1):
        stem = f"tile_{k:03d}_y{y:04d}_x{x:04d}"
        for folder, source in (("images", reference), ("masks", labels)):
            relative = f"{split}/{folder}/{stem}.png"
            atomic_write_image(root / relative, source[y : y + size, x : x + size])
            files.append(relative)
    return files


def _write_paired(
    root: Path,
    image: np.ndarray,
    tiles: list[tuple[int, int]],
    size: int,
    profiles: list[Any],
) -> tuple[PairedCollection, list[str]]:
    """Held-out tiles through every profile (masks from ``test/masks``), with a manifest."""
    from tia_scanner_robust.augmentations.scanner import simulate_scanner  # noqa: PLC0415
    from tia_scanner_robust.data import PairedCollection, PairedSample  # noqa: PLC0415
    from tia_scanner_robust.data.scorpion import write_scanner_order  # noqa: PLC0415

    samples, files = [], []
    for k, (y, x) in enumerate(tiles, start=1):
        crop = image[y : y + size, x : x + size]
        specimen = f"heldout/tile_{k:03d}"
        mask = root / "test" / "masks" / f"tile_{k:03d}_y{y:04d}_x{x:04d}.png"
        for profile in profiles:
            relative = f"paired/{specimen}/{profile.name}.png"
            path = atomic_write_image(root / relative, simulate_scanner(crop, profile))
            files.append(relative)
            samples.append(
                PairedSample(specimen, profile.name, path=path, mask_path=mask, split="test")
            )
    names = [p.name for p in profiles]
    collection = PairedCollection(samples, scanners=names, source=root / "paired")
    write_scanner_order(root / "paired", collection.scanners)
    collection.to_manifest(root / "paired" / "manifest.csv")
    return collection, files


def build_demo_task(
    out_dir: str | Path,
    *,
    scheme: str = "nuclei",
    train_fraction: float = 0.6,
    val_fraction: float = 0.2,
    train_tile_size: int = 192,
    train_stride: int = 64,
    test_tile_size: int = 128,
    profiles: Sequence[str] | None = None,
    image: str | Path | np.ndarray | None = None,
    progress: bool = False,
) -> DemoTask:
    """Build (or reuse) the demo segmentation task from TIAToolbox's bundled H&E image.

    Deterministic: the same arguments give the same files. A folder already
    holding a complete task built with the same arguments is reused; one
    built with other arguments is rebuilt (its task sub-folders are replaced).

    Args:
        out_dir: Task folder (created).
        scheme: Label scheme (:data:`~tia_scanner_robust.demo.labels.LABEL_SCHEMES`).
        train_fraction: Left fraction of the width used for training and
            validation; the rest is held out.
        val_fraction: Bottom fraction of the training columns kept for validation.
        train_tile_size: Side of the training tiles (random crops are taken
            from them during training).
        train_stride: Stride of the overlapping training tiles.
        test_tile_size: Side of the validation and held-out tiles (the model's
            inference patch size; non-overlapping).
        profiles: Scanner profile names or fitted profile files (``.yaml``,
            from ``fit-scanner-profile``) (default: every simulator profile;
            the first is the reference scanner the labels are derived on).
        image: Another H&E image to build the task from: a file path (read as
            RGB) or an ``(H, W, 3)`` uint8 array; default TIAToolbox's bundled
            ``stain_norm_target()``. It must be large enough for the tiles of
            every split.
        progress: Show a progress bar.

    Returns:
        The :class:`DemoTask`.

    Raises:
        ValueError: On invalid fractions or sizes, or a non-empty ``out_dir``
            that holds no demo task.
        TypeError: If ``image`` is an array but not RGB uint8.

    """
    from tiatoolbox.data import stain_norm_target  # noqa: PLC0415 - slow import
    from tqdm.auto import tqdm  # noqa: PLC0415

    from tia_scanner_robust.augmentations.scanner import get_scanner_profile  # noqa: PLC0415

    names = _check_task_arguments(
        scheme,
        {"train_fraction": train_fraction, "val_fraction": val_fraction},
        {
            "train_tile_size": train_tile_size,
            "train_stride": train_stride,
            "test_tile_size": test_tile_size,
        },
        profiles,
    )
    resolved = [get_scanner_profile(n) for n in names]
    if len({p.name for p in resolved}) != len(resolved):
        msg = f"profiles must have distinct names, got {[p.name for p in resolved]}."
        raise ValueError(msg)
    if image is None:
        source, image = "tiatoolbox.data.stain_norm_target", stain_norm_target()
    elif isinstance(image, (str, Path)):
        source, image = Path(image).name, read_rgb_image(image)
    else:
        source, image = "array", check_rgb_image(image, "image")
        if image.dtype != np.uint8:
            msg = f"image must be an RGB uint8 array, got dtype {image.dtype}."
            raise TypeError(msg)
    image = np.ascontiguousarray(image)
    params = _task_parameters(
        image,
        source=source,
        scheme=scheme,
        train_fraction=train_fraction,
        val_fraction=val_fraction,
        train_tile_size=train_tile_size,
        train_stride=train_stride,
        test_tile_size=test_tile_size,
        profiles=resolved,
    )
    root = Path(out_dir)
    task = _reuse_or_clear(root, params)
    if task is not None:
        return task

    reference = reference_rendering(image, resolved[0])
    labels = derive_labels(reference, scheme=scheme, render=False)
    height, width = labels.shape
    split_x = round(width * train_fraction)
    val_y = round(height * (1.0 - val_fraction))
    regions = {
        "train": (0, val_y, 0, split_x),
        "val": (val_y, height, 0, split_x),
        "test": (0, height, split_x, width),
    }
    tiles = {
        "train": _grid(regions["train"], train_tile_size, train_stride, cover_end=True),
        "val": _grid(regions["val"], test_tile_size, test_tile_size, cover_end=False),
        "test": _grid(regions["test"], test_tile_size, test_tile_size, cover_end=False),
    }
    if not all(tiles.values()):
        counts = {k: len(v) for k, v in tiles.items()}
        msg = f"The tile sizes do not fit the regions: tiles per split {counts}."
        raise ValueError(msg)
    sizes = {"train": train_tile_size, "val": test_tile_size, "test": test_tile_size}
    files: list[str] = []
    for split in tqdm(("train", "val", "test", "paired"), desc="demo task", disable=not progress):
        if split == "paired":
            collection, paired = _write_paired(root, image, tiles["test"], test_tile_size, resolved)
            files += paired
        else:
            files += _write_folder_tiles(
                root, split, tiles[split], sizes[split], (reference, labels)
            )
    atomic_write_image(root / "labels.png", labels)
    marker = {
        "parameters": params,
        "scanners": names,
        "regions": {k: list(v) for k, v in regions.items()},
        "n_tiles": {k: len(v) for k, v in tiles.items()},
        "files": files,
    }
    atomic_write_json(root / _TASK_MARKER, marker)  # written last: marks a complete build
    return DemoTask(
        root=root,
        train_dir=root / "train",
        val_dir=root / "val",
        test_dir=root / "test",
        paired_dir=root / "paired",
        collection=collection,
        scheme=scheme,
        class_dict=dict(LABEL_CLASS_DICTS[scheme]),
        parameters=params,
    )
