"""The SimCons demo and experiments as a Python API: data, training, evaluation, report.

The pipeline behind ``tia-scanner-robust demo`` and
``examples/02_simcons_experiments.py``, on TIAToolbox's bundled H&E image
(``tiatoolbox.data.stain_norm_target()``, 1000 x 1000 px, offline):

1. :func:`build_demo_task` renders the image through the *reference*
   simulated scanner, derives labels on that rendering with the classical
   segmenter (:func:`~tia_scanner_robust.experiments.labels.derive_labels`),
   and splits it by position::

       x < 60 % of the width, y < 80 %   train/  overlapping tiles (reference scan)
       x < 60 %,              y >= 80 %  val/    tiles for the best-epoch choice
       x >= 60 %                          test/   held-out tiles (reference scan)
                                          paired/ the held-out tiles through every
                                                  scanner profile (SCORPION layout,
                                                  manifest.csv with the masks)

   ``train/``, ``val/`` and ``test/`` are folder datasets (``images/`` and
   ``masks/``) that :class:`~tia_scanner_robust.training.data.SegmentationFolderDataset`
   and ``tia-scanner-robust train`` read.
2. :func:`demo_config` takes a shipped config (``baseline``,
   ``colorjitter_simcons``...) and applies the light demo model (Unet with a
   ResNet18 encoder of depth 4, 128-px crops, cosine schedule, ``max_steps``
   steps);
   :func:`train_variant` trains it (checkpointed, resumable, and reused
   when already finished with the same config).
3. :func:`evaluate_variant` runs the best checkpoint through
   :class:`~tia_scanner_robust.engines.consistency.ScannerConsistencyEvaluator`
   (TIAToolbox's ``SemanticSegmentor.run()`` per scanner): scanner-paired Dice
   (average and minimum over the scanner pairs) on ``paired/``, and the task
   Dice against the labels on the held-out reference scans.
4. :func:`run_demo` does all of it for a baseline and a SimCons model and
   writes a self-contained HTML report comparing them
   (:func:`~tia_scanner_robust.experiments.comparison.write_comparison_report`).

Everything is cached on disk: re-running reuses the task, finished models and
finished evaluations.

Examples:
    >>> import tempfile
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
import logging
import math
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tia_scanner_robust._io import atomic_write_image, atomic_write_json
from tia_scanner_robust._validation import check_in_choices, check_rgb_image, read_rgb_image
from tia_scanner_robust.experiments.configs import load_experiment_config, merge_overrides
from tia_scanner_robust.experiments.labels import (
    LABEL_CLASS_DICTS,
    derive_labels,
    reference_rendering,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from tia_scanner_robust.data.paired import PairedCollection
    from tia_scanner_robust.training.config import ExperimentConfig

__all__ = [
    "DEFAULT_STEPS",
    "DEMO_MODEL",
    "DEMO_VARIANTS",
    "QUICK_STEPS",
    "DemoResult",
    "DemoTask",
    "RunRecord",
    "TrainedVariant",
    "VariantEvaluation",
    "VariantSpec",
    "build_demo_task",
    "demo_config",
    "evaluate_variant",
    "run_demo",
    "run_variant",
    "train_variant",
]

logger = logging.getLogger(__name__)

#: The light demo network (overrides the shipped configs' DeepLabV3+ / ResNet34):
#: a Unet on timm's ResNet18 (smp's ``tu-`` encoders build only the stages the
#: depth uses: 3.1 M parameters at depth 4) with a thin decoder.
DEMO_MODEL: dict[str, Any] = {
    "arch": "Unet",
    "encoder_name": "tu-resnet18",
    "encoder_weights": None,
    "patch_size": 128,
    "model_kwargs": {"encoder_depth": 4, "decoder_channels": [64, 32, 16, 16]},
}
#: Demo variants: report label -> shipped config name.
DEMO_VARIANTS: dict[str, str] = {"baseline": "baseline", "simcons": "fda_simcons"}
#: Optimiser steps of a full demo run and of ``--quick``.
DEFAULT_STEPS = 200
QUICK_STEPS = 30

_TASK_MARKER = "demo_task.json"
_TASK_FORMAT = 1
_TASK_FOLDERS = ("train", "val", "test", "paired")
_RUN_MARKER = "done.json"
_EVAL_FILE = "evaluation.json"


# --------------------------------------------------------------------------- task
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
    from tia_scanner_robust.data.manifest import read_manifest  # noqa: PLC0415

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
    """Validate :func:`build_demo_task`'s arguments; return the profile names."""
    from tia_scanner_robust.augmentations.scanner import SCANNER_PROFILES  # noqa: PLC0415

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
    from tia_scanner_robust.data.paired import PairedCollection, PairedSample  # noqa: PLC0415
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
        scheme: Label scheme (:data:`~tia_scanner_robust.experiments.labels.LABEL_SCHEMES`).
        train_fraction: Left fraction of the width used for training and
            validation; the rest is held out.
        val_fraction: Bottom fraction of the training columns kept for validation.
        train_tile_size: Side of the training tiles (random crops are taken
            from them during training).
        train_stride: Stride of the overlapping training tiles.
        test_tile_size: Side of the validation and held-out tiles (the model's
            inference patch size; non-overlapping).
        profiles: Scanner profile names (default: every simulator profile;
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

    from tia_scanner_robust.augmentations.scanner import SCANNER_PROFILES  # noqa: PLC0415

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
    resolved = [SCANNER_PROFILES[n] for n in names]
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


# --------------------------------------------------------------------------- configs
def demo_config(
    config: str | Path,
    task: DemoTask,
    *,
    steps: int = DEFAULT_STEPS,
    seed: int = 0,
    output_dir: str | Path = "runs/demo",
    batch_size: int = 8,
    lr: float = 1e-3,
    device: str = "cpu",
    progress: bool = True,
    overrides: Mapping[str, Any] | None = None,
) -> ExperimentConfig:
    """A shipped config (or YAML file) with the light demo model and the task's data.

    Overrides applied on top of ``config``: :data:`DEMO_MODEL` (Unet,
    ResNet18 encoder of depth 4, 128-px patches), 128-px crops, Adam with
    ``lr`` and a cosine schedule over ``steps`` optimiser steps, the task's
    folders and number of classes, ``seed``, ``device`` and ``output_dir``;
    then ``overrides`` (e.g. a different SimCons ``lam``). The style
    augmentation and the hooks come from ``config``.

    Args:
        config: Shipped config name or YAML file.
        task: The :class:`DemoTask`.
        steps: Optimiser steps (``max_steps``); the number of epochs follows.
        seed: Seed of the run.
        output_dir: Where checkpoints and logs go.
        batch_size: Batch size (SimCons doubles the images per step).
        lr: Learning rate.
        device: Torch device.
        progress: Show the trainer's progress bars.
        overrides: Further nested overrides.

    Returns:
        The validated config.

    """
    if isinstance(steps, bool) or int(steps) != steps or steps < 1:
        msg = f"steps must be a positive integer, got {steps!r}."
        raise ValueError(msg)
    n_train = task.n_images("train")
    steps_per_epoch = max(1, n_train // int(batch_size))
    crop = int(DEMO_MODEL["patch_size"])
    light = {
        "trainer": {
            "epochs": math.ceil(int(steps) / steps_per_epoch),
            "max_steps": int(steps),
            "batch_size": int(batch_size),
            "lr": float(lr),
            "scheduler": "cosine",
            "min_lr": float(lr) / 100,
            "device": device,
            "seed": int(seed),
            "output_dir": str(output_dir),
            "checkpoint_every_n_steps": 50,
            "log_every_n_steps": 10,
            "num_workers": 0,
            "progress": bool(progress),
        },
        "model": {**DEMO_MODEL, "num_classes": task.num_classes},
        "data": {
            "train_dir": str(task.train_dir),
            "val_dir": str(task.val_dir),
            "crop_size": crop,
            "val_crop_size": None,
            "num_classes": task.num_classes,
        },
    }
    return load_experiment_config(config, overrides=merge_overrides(light, dict(overrides or {})))


# --------------------------------------------------------------------------- training
@dataclass
class TrainedVariant:
    """A finished training run.

    Attributes:
        output_dir: The run folder.
        checkpoint: Best checkpoint (``best.pt``), or ``last.pt`` without validation.
        global_step: Optimiser steps done.
        best_metric: Best validation Dice (``None`` without validation).
        best_epoch: Its epoch.
        train_seconds: Wall time of the training (of the session that finished it).
        seconds_per_step: ``train_seconds`` per step of that session.
        reused: ``True`` when a finished run was found and not retrained.
    """

    output_dir: Path
    checkpoint: Path
    global_step: int
    best_metric: float | None
    best_epoch: int | None
    train_seconds: float
    seconds_per_step: float | None
    reused: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "output_dir": str(self.output_dir),
            "checkpoint": str(self.checkpoint),
            "global_step": self.global_step,
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "train_seconds": self.train_seconds,
            "seconds_per_step": self.seconds_per_step,
        }


def _clear_run(folder: Path) -> None:
    for name in (_RUN_MARKER, "last.pt", "best.pt", "metrics.jsonl", "metrics.csv", "steps.jsonl"):
        (folder / name).unlink(missing_ok=True)


def train_variant(config: ExperimentConfig, *, resume: bool = True) -> TrainedVariant:
    """Train a config with :func:`~tia_scanner_robust.training.trainer.build_trainer`.

    The run folder is ``config.trainer.output_dir``. With ``resume``, a run
    finished with the same config (``done.json``) is reused without
    training, and an interrupted one continues from ``last.pt``. A finished
    run with a different config is trained again from scratch.

    Args:
        config: The experiment config.
        resume: Reuse / resume what the folder holds.

    Returns:
        The :class:`TrainedVariant`.

    """
    from tia_scanner_robust.training.trainer import build_trainer  # noqa: PLC0415

    folder = Path(config.trainer.output_dir)
    marker = folder / _RUN_MARKER
    wanted = config.to_dict()
    if marker.is_file():
        done = json.loads(marker.read_text(encoding="utf-8"))
        checkpoint = folder / str(done.get("checkpoint", ""))
        if resume and done.get("config") == wanted and checkpoint.is_file():
            return TrainedVariant(
                output_dir=folder,
                checkpoint=checkpoint,
                global_step=int(done["global_step"]),
                best_metric=done.get("best_metric"),
                best_epoch=done.get("best_epoch"),
                train_seconds=float(done.get("train_seconds", 0.0)),
                seconds_per_step=done.get("seconds_per_step"),
                reused=True,
            )
        logger.warning(
            "Run folder %s holds a finished run of another config (or resume=False); "
            "training again from scratch.",
            folder,
        )
        _clear_run(folder)
    elif not resume:
        _clear_run(folder)
    trainer = build_trainer(config)
    start_step = 0
    if resume and trainer.last_checkpoint_path.is_file():
        trainer.load_checkpoint(trainer.last_checkpoint_path)
        start_step = trainer.global_step
    t0 = time.perf_counter()
    try:
        result = trainer.fit()
    finally:
        trainer.close()
    seconds = time.perf_counter() - t0
    steps_now = result.global_step - start_step
    checkpoint = result.best_checkpoint or result.last_checkpoint
    if checkpoint is None:  # pragma: no cover - the trainer always writes last.pt
        msg = f"Training in {folder} wrote no checkpoint."
        raise RuntimeError(msg)
    trained = TrainedVariant(
        output_dir=folder,
        checkpoint=checkpoint,
        global_step=result.global_step,
        best_metric=result.best_metric,
        best_epoch=result.best_epoch,
        train_seconds=seconds,
        seconds_per_step=seconds / steps_now if steps_now else None,
    )
    atomic_write_json(
        marker,
        {**trained.to_dict(), "checkpoint": checkpoint.name, "config": wanted},
    )
    return trained


# --------------------------------------------------------------------------- evaluation
@dataclass
class VariantEvaluation:
    """Scanner-paired and task Dice of one trained model.

    Attributes:
        name: Report label.
        scanners: Scanner order (reference first).
        matrix: ``(S, S)`` paired Dice (NaN diagonal).
        pairs: ``"a|b"`` -> paired Dice.
        n_samples: ``"a|b"`` -> number of held-out tiles of that pair.
        paired_dice_avg: Average paired Dice over the scanner pairs.
        paired_dice_min: Minimum paired Dice over the pairs (worst case).
        min_pair: The worst pair.
        task_dice: Dice against the labels on the held-out reference scans.
        task_dice_per_scanner: The same against each scanner's scans.
        cov: CoV across scanners of the nuclei pixel fraction.
        checkpoint: The evaluated checkpoint.
        checkpoint_sha256: Its hash (cache key).
        eval_seconds: Wall time of the evaluation.
        report_dir: Folder with the evaluator's own report.
    """

    name: str
    scanners: list[str]
    matrix: list[list[float | None]]
    pairs: dict[str, float | None]
    n_samples: dict[str, int]
    paired_dice_avg: float
    paired_dice_min: float
    min_pair: list[str] | None
    task_dice: float | None
    task_dice_per_scanner: dict[str, float | None]
    cov: float | None
    checkpoint: str
    checkpoint_sha256: str
    eval_seconds: float
    report_dir: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN written as ``None``)."""
        from tia_scanner_robust.metrics.functional import to_jsonable  # noqa: PLC0415

        return to_jsonable(dict(self.__dict__))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VariantEvaluation:
        """Inverse of :meth:`to_dict`."""
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in names})

    def pair_consistency(self) -> Any:
        """The paired Dice as a :class:`~tia_scanner_robust.metrics.functional.PairConsistency`."""
        from tia_scanner_robust.metrics.functional import PairConsistency  # noqa: PLC0415

        matrix = np.array([[np.nan if v is None else float(v) for v in row] for row in self.matrix])
        pairs = {
            tuple(k.split("|", 1)): (np.nan if v is None else float(v))
            for k, v in self.pairs.items()
        }
        counts = {tuple(k.split("|", 1)): int(v) for k, v in self.n_samples.items()}
        return PairConsistency(
            score="dice",
            scanners=list(self.scanners),
            matrix=matrix,
            pairs=pairs,  # type: ignore[arg-type]
            n_samples=counts,  # type: ignore[arg-type]
            per_sample={},
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _maybe(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def evaluate_variant(
    checkpoint: str | Path,
    task: DemoTask,
    out_dir: str | Path,
    *,
    name: str = "model",
    batch_size: int = 16,
    device: str = "cpu",
    progress: bool = True,
    report: bool = True,
) -> VariantEvaluation:
    """Evaluate a checkpoint on the task's paired test set through TIAToolbox's engine.

    Runs :class:`~tia_scanner_robust.engines.consistency.ScannerConsistencyEvaluator`
    (``SemanticSegmentor.run()`` once per scanner) with the background class
    ignored in Dice (so the paired Dice of the ``"nuclei"`` scheme is the
    nuclei Dice between two scanners' predictions). The result is cached in
    ``out_dir/evaluation.json`` keyed by the checkpoint's hash.

    Args:
        checkpoint: A trainer checkpoint (``best.pt``/``last.pt``).
        task: The :class:`DemoTask`.
        out_dir: Evaluation folder.
        name: Report label.
        batch_size: Engine batch size.
        device: Torch device.
        progress: Show the evaluator's progress bar.
        report: Also write the evaluator's own report (JSON, HTML, figures) in ``out_dir``.

    Returns:
        The :class:`VariantEvaluation`.

    """
    from tia_scanner_robust.engines.consistency import (  # noqa: PLC0415
        ScannerConsistencyEvaluator,
    )

    checkpoint = Path(checkpoint)
    out_dir = Path(out_dir)
    sha = _sha256(checkpoint)
    cache = out_dir / _EVAL_FILE
    if cache.is_file():
        cached = json.loads(cache.read_text(encoding="utf-8"))
        if cached.get("checkpoint_sha256") == sha:
            cached["name"] = name
            return VariantEvaluation.from_dict(cached)
    evaluator = ScannerConsistencyEvaluator(
        str(checkpoint),
        task="segmentation",
        num_classes=task.num_classes,
        ignore_background=True,
        cov_class=task.nuclei_class,
        batch_size=batch_size,
        device=device,
        n_examples=1,
        save_predictions=False,
        verbose=progress,
    )
    t0 = time.perf_counter()
    result = evaluator.evaluate(task.collection, out_dir / "engine")
    seconds = time.perf_counter() - t0
    shutil.rmtree(out_dir / "engine", ignore_errors=True)
    report_dir = None
    if report:
        from tia_scanner_robust.report import write_report  # noqa: PLC0415

        write_report(result, out_dir, title=f"Scanner consistency: {name}", analysis=False)
        report_dir = str(out_dir)
    pc = result.primary_result
    reference = result.scanners[0]
    per_scanner = {
        s: _maybe(result.per_scanner.get(s, {}).get("mean_gt_dice")) for s in result.scanners
    }
    evaluation = VariantEvaluation(
        name=name,
        scanners=list(result.scanners),
        matrix=[[_maybe(v) for v in row] for row in np.asarray(pc.matrix, dtype=float)],
        pairs={f"{a}|{b}": _maybe(v) for (a, b), v in pc.pairs.items()},
        n_samples={f"{a}|{b}": int(v) for (a, b), v in pc.n_samples.items()},
        paired_dice_avg=float(pc.average),
        paired_dice_min=float(pc.minimum),
        min_pair=list(pc.min_pair) if pc.min_pair else None,
        task_dice=per_scanner.get(reference),
        task_dice_per_scanner=per_scanner,
        cov=None if result.cov is None else _maybe(result.cov.cov),
        checkpoint=str(checkpoint),
        checkpoint_sha256=sha,
        eval_seconds=seconds,
        report_dir=report_dir,
    )
    atomic_write_json(cache, evaluation.to_dict())
    return evaluation


# --------------------------------------------------------------------------- runs
@dataclass(frozen=True)
class VariantSpec:
    """A training variant: a report label, a shipped config and extra overrides.

    Runs are stored by *what they train* (:meth:`run_name`), not by label:
    two specs giving the same config (e.g. ``lam=0.3`` on a config whose
    ``lam`` already is 0.3) share one run.

    Examples:
        >>> spec = VariantSpec("FDA + SimCons (lambda 0.5)", "fda_simcons", lam=0.5)
        >>> spec.slug, spec.all_overrides()["hooks"][0]["kwargs"]["lam"]
        ('fda-simcons-lambda-0-5', 0.5)
        >>> spec.run_name(seed=1, steps=200)
        'fda_simcons-lam0.5-seed1-steps200'
        >>> VariantSpec("same as shipped", "fda_simcons", lam=0.3).run_name(seed=1, steps=200)
        'fda_simcons-seed1-steps200'

    """

    label: str
    config: str
    lam: float | None = None
    overrides: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def slug(self) -> str:
        """File-system friendly label."""
        return re.sub(r"[^a-z0-9]+", "-", self.label.lower()).strip("-") or "run"

    def run_name(self, *, seed: int, steps: int) -> str:
        """Folder name of this spec's run: config, non-default lambda, overrides, seed, steps."""
        parts = [Path(self.config).stem]
        if self.lam is not None:
            shipped = [h.kwargs.get("lam") for h in load_experiment_config(self.config).hooks]
            if float(self.lam) not in shipped:
                parts.append(f"lam{self.lam:g}")
        if self.overrides:
            text = json.dumps(self.overrides, sort_keys=True, default=str)
            parts.append(hashlib.sha256(text.encode()).hexdigest()[:8])
        return "-".join([*parts, f"seed{seed}", f"steps{steps}"])

    def all_overrides(self) -> dict[str, Any]:
        """``overrides`` plus the SimCons ``lam`` (which rewrites the config's hooks)."""
        out = dict(self.overrides)
        if self.lam is not None:
            base = load_experiment_config(self.config)
            hooks = [h.to_dict() for h in base.hooks]
            if not any(h["name"] == "simcons" for h in hooks):
                msg = (
                    f"VariantSpec {self.label!r}: lam is set but {self.config!r} "
                    "has no simcons hook."
                )
                raise ValueError(msg)
            for hook in hooks:
                if hook["name"] == "simcons":
                    hook["kwargs"] = {**hook["kwargs"], "lam": float(self.lam)}
            out["hooks"] = hooks
        return out


@dataclass
class RunRecord:
    """One trained and evaluated (variant, seed)."""

    label: str
    config: str
    lam: float | None
    seed: int
    steps: int
    trained: TrainedVariant
    evaluation: VariantEvaluation

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "label": self.label,
            "config": self.config,
            "lam": self.lam,
            "seed": self.seed,
            "steps": self.steps,
            "training": self.trained.to_dict(),
            "evaluation": self.evaluation.to_dict(),
        }


def run_variant(
    spec: VariantSpec,
    task: DemoTask,
    out_dir: str | Path,
    *,
    steps: int = DEFAULT_STEPS,
    seed: int = 0,
    batch_size: int = 8,
    lr: float = 1e-3,
    device: str = "cpu",
    progress: bool = True,
    resume: bool = True,
) -> RunRecord:
    """Train (or reuse) and evaluate one variant with one seed.

    The run lives in ``out_dir/runs/<name>`` and its evaluation in
    ``out_dir/eval/<name>``, with ``name = spec.run_name(seed=..., steps=...)``.
    """
    run_name = spec.run_name(seed=seed, steps=steps)
    config = demo_config(
        spec.config,
        task,
        steps=steps,
        seed=seed,
        output_dir=Path(out_dir) / "runs" / run_name,
        batch_size=batch_size,
        lr=lr,
        device=device,
        progress=progress,
        overrides=spec.all_overrides(),
    )
    trained = train_variant(config, resume=resume)
    evaluation = evaluate_variant(
        trained.checkpoint,
        task,
        Path(out_dir) / "eval" / run_name,
        name=spec.label,
        device=device,
        progress=progress,
    )
    return RunRecord(spec.label, spec.config, spec.lam, seed, steps, trained, evaluation)


def _demo_note(variants: Mapping[str, str]) -> str:
    """The report's note: what the comparison mixes, and what it is."""
    from tia_scanner_robust.experiments.comparison import DEFAULT_NOTE  # noqa: PLC0415

    parts = []
    for label, config in variants.items():
        style = config.removesuffix("_simcons")
        if config.endswith("_simcons") and style:
            parts.append(
                f"'{label}' uses the shipped {config} config: the baseline's flips, blur and "
                f"noise, plus {style} in the training pipeline, plus the SimCons consistency "
                f"loss, so its difference from the baseline mixes both; docs/results.md "
                f"separates them ({style} alone versus {style} + SimCons, over seeds)."
            )
    return " ".join([*parts, DEFAULT_NOTE])


# --------------------------------------------------------------------------- demo
@dataclass
class DemoResult:
    """What :func:`run_demo` produced."""

    out_dir: Path
    task: DemoTask
    records: dict[str, RunRecord]
    report_html: Path
    report_json: Path

    def summary_table(self) -> str:
        """A plain-text table of the variants' numbers."""
        header = (
            f"{'variant':<10} {'config':<22} {'paired Dice avg':>15} {'min':>7} "
            f"{'task Dice':>10} {'train s':>8}"
        )
        lines = [header, "-" * len(header)]
        for label, rec in self.records.items():
            ev = rec.evaluation
            task_dice = "n/a" if ev.task_dice is None else f"{ev.task_dice:.4f}"
            lines.append(
                f"{label:<10} {rec.config:<22} {ev.paired_dice_avg:>15.4f} "
                f"{ev.paired_dice_min:>7.4f} {task_dice:>10} {rec.trained.train_seconds:>8.1f}"
            )
        return "\n".join(lines)


def run_demo(
    out_dir: str | Path,
    *,
    steps: int | None = None,
    quick: bool = False,
    seed: int = 0,
    variants: Mapping[str, str] | None = None,
    batch_size: int | None = None,
    device: str = "cpu",
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
) -> DemoResult:
    """Build the paired demo set, train baseline and SimCons, evaluate, write the report.

    Args:
        out_dir: Output folder (``data/``, ``runs/``, ``eval/``, ``report.html``,
            ``report.json``). Re-running reuses what is finished.
        steps: Optimiser steps per model (default :data:`DEFAULT_STEPS`, or
            :data:`QUICK_STEPS` with ``quick``).
        quick: Smoke run: few steps, batch 4.
        seed: Seed of both runs.
        variants: Report label -> shipped config (default :data:`DEMO_VARIANTS`).
        batch_size: Batch size (default 8, 4 with ``quick``).
        device: Torch device.
        progress: Show progress bars.
        echo: Called with one line per stage (e.g. ``click.echo``).

    Returns:
        The :class:`DemoResult`.

    """
    from tia_scanner_robust.experiments.comparison import (  # noqa: PLC0415
        write_comparison_report,
    )

    say = echo or logger.info
    steps = int(steps) if steps is not None else (QUICK_STEPS if quick else DEFAULT_STEPS)
    batch_size = int(batch_size) if batch_size is not None else (4 if quick else 8)
    variants = dict(variants or DEMO_VARIANTS)
    out = Path(out_dir)
    t0 = time.perf_counter()
    say(f"[1/3] Demo task in {out / 'data'} (bundled H&E image, simulated scanners)")
    task = build_demo_task(out / "data", progress=progress)
    say(
        f"      {task.n_images('train')} training tiles, {task.n_images('val')} validation, "
        f"{len(task.collection.specimens)} held-out tiles x {len(task.collection.scanners)} "
        "scanners"
    )
    records: dict[str, RunRecord] = {}
    for i, (label, config) in enumerate(variants.items(), start=1):
        say(f"[2/3] ({i}/{len(variants)}) {label}: train '{config}' for {steps} steps, evaluate")
        record = run_variant(
            VariantSpec(label, config),
            task,
            out,
            steps=steps,
            seed=seed,
            batch_size=batch_size,
            device=device,
            progress=progress,
        )
        state = "reused" if record.trained.reused else f"{record.trained.train_seconds:.0f} s"
        say(
            f"      trained ({state}); paired Dice avg {record.evaluation.paired_dice_avg:.4f}, "
            f"min {record.evaluation.paired_dice_min:.4f}"
        )
        records[label] = record
    say(f"[3/3] Report in {out}")
    settings = {
        "steps": steps,
        "batch_size": batch_size,
        "seed": seed,
        "quick": bool(quick),
        "device": device,
        "model": DEMO_MODEL,
        "crop_size": DEMO_MODEL["patch_size"],
        "variants": variants,
        "task": task.parameters | {"class_dict": task.class_dict},
        "n_tiles": {s: task.n_images(s) for s in ("train", "val", "test")},
        "scanners": task.collection.scanners,
        "wall_seconds": time.perf_counter() - t0,
    }
    paths = write_comparison_report(
        {label: rec.evaluation for label, rec in records.items()},
        out,
        settings=settings,
        note=_demo_note(variants),
        training={
            label: rec.trained.to_dict() | {"config": rec.config} for label, rec in records.items()
        },
    )
    return DemoResult(out, task, records, paths["html"], paths["json"])
