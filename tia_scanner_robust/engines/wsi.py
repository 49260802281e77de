"""WSI mode of the evaluator: whole slides through TIAToolbox's engines in WSI mode.

Each scanner's slides run once through the task's engine with
``patch_mode=False`` and ``output_type="zarr"`` (one run per group of slides
with distinct file stems; regions restrict the engine with a low-resolution
mask). The per-region predictions are then read back lazily, block by block,
from the engines' zarr outputs:

- :func:`slide_geometry` and :func:`region_box` map a sample's region
  (baseline ``x, y``; ``width, height`` at the sample's ``mpp``) into the
  engine's output grid; :func:`region_mask` restricts the engine to the
  regions it needs;
- :class:`CanvasDice` and :func:`class_fractions` compare two scanners'
  output canvases region by region without loading a whole slide (blocks of
  rows of the zarr arrays);
- :func:`pool_patches` pools per-patch outputs (classification, embeddings)
  over a region;
- :class:`WSIModeEvaluator` is the evaluator's WSI mode.

Examples:
    >>> import numpy as np
    >>> a = np.array([[0, 1], [1, 1]])
    >>> b = np.array([[0, 1], [0, 1]])
    >>> counts = confusion_counts(a, b, 2)
    >>> dice_from_confusion(counts, ignore_background=False)  # as paired_dice
    0.733...

"""

from __future__ import annotations

import math
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from tia_scanner_robust._tiatoolbox import open_output_array, run_wsi_engine
from tia_scanner_robust.engines._imageops import EXAMPLE_SIDE, downsample, resize, rgb_stats
from tia_scanner_robust.engines.base import Accumulator, EvaluatorBase
from tia_scanner_robust.engines.checks import FiniteOutputGuard
from tia_scanner_robust.engines.results import EvaluationResult, ExamplePair, sample_id

if TYPE_CHECKING:
    from tia_scanner_robust.data.paired import PairedCollection, PairedSample

__all__ = [
    "BLOCK_PIXELS",
    "CanvasDice",
    "RegionHandle",
    "WSIModeEvaluator",
    "class_fractions",
    "confusion_counts",
    "dice_from_confusion",
    "pool_patches",
    "region_box",
    "region_mask",
    "slide_geometry",
]

#: Pixels read per block when streaming a canvas (about 16 MB of uint8 labels).
BLOCK_PIXELS = 1 << 24


@dataclass(frozen=True)
class RegionHandle:
    """Where one sample's prediction lives: a box of a zarr canvas.

    Attributes:
        zarr_path: The engine's output zarr group.
        box: ``(x0, y0, x1, y1)`` in the canvas' pixels (output resolution).
    """

    zarr_path: str
    box: tuple[int, int, int, int]

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` of the box."""
        x0, y0, x1, y1 = self.box
        return (y1 - y0, x1 - x0)


def slide_geometry(path: str | Path, resolution: float, units: str) -> dict[str, Any]:
    """Baseline size, read size and pixel size of a WSI at the engine's resolution.

    Returns:
        Dict with ``baseline`` ``(w, h)``, ``read`` ``(w, h)`` (at
        ``resolution``/``units``), ``scale`` ``(sx, sy)`` = read / baseline and
        ``mpp`` (baseline microns per pixel or ``None``).

    Raises:
        ValueError: If the slide cannot be opened, or ``units`` is ``"mpp"``
            and the slide has no pixel-size metadata.

    """
    from tiatoolbox.wsicore.wsireader import WSIReader  # noqa: PLC0415

    try:
        reader = WSIReader.open(path)
    except Exception as error:
        msg = f"Could not open whole-slide image {path}: {error}"
        raise ValueError(msg) from error
    info = reader.info
    mpp = None if info.mpp is None else float(np.asarray(info.mpp, dtype=float)[0])
    if units == "mpp" and mpp is None:
        msg = (
            f"Whole-slide image {path} has no pixel-size (mpp) metadata, but the model's IO "
            "config reads at units='mpp'. Pass an ioconfig with units='baseline' "
            "(e.g. classical_ioconfig(units='baseline', resolution=1.0))."
        )
        raise ValueError(msg)
    base_w, base_h = (int(v) for v in info.slide_dimensions)
    read_w, read_h = (int(v) for v in reader.slide_dimensions(resolution=resolution, units=units))
    return {
        "baseline": (base_w, base_h),
        "read": (read_w, read_h),
        "scale": (read_w / base_w, read_h / base_h),
        "mpp": mpp,
    }


def region_box(
    region: tuple[int, int, int, int] | None,
    sample_mpp: float | None,
    geometry: dict[str, Any],
    canvas_shape: tuple[int, int] | None = None,
) -> tuple[int, int, int, int]:
    """A sample's region as ``(x0, y0, x1, y1)`` in the engine's output grid.

    ``region`` follows :class:`~tia_scanner_robust.data.paired.PairedSample`:
    ``x, y`` in baseline pixels, ``width, height`` in pixels at ``sample_mpp``
    (baseline pixels when ``sample_mpp`` or the slide's mpp is unknown). No
    region means the whole slide. The box is clipped to ``canvas_shape``.

    Examples:
        >>> geo = {"baseline": (1000, 800), "read": (500, 400), "scale": (0.5, 0.5), "mpp": 0.25}
        >>> region_box((100, 200, 50, 50), 0.5, geo)  # 50 px at 0.5 mpp = 100 baseline px
        (50, 100, 100, 150)
        >>> region_box(None, None, geo)
        (0, 0, 500, 400)

    """
    sx, sy = geometry["scale"]
    read_w, read_h = geometry["read"]
    if canvas_shape is not None:
        read_h, read_w = int(canvas_shape[0]), int(canvas_shape[1])
    if region is None:
        return (0, 0, read_w, read_h)
    x, y, w, h = region
    factor = 1.0
    if sample_mpp is not None and geometry.get("mpp"):
        factor = float(sample_mpp) / float(geometry["mpp"])
    x0 = round(x * sx)
    y0 = round(y * sy)
    x1 = round((x + w * factor) * sx)
    y1 = round((y + h * factor) * sy)
    x0, x1 = max(0, min(x0, read_w)), max(0, min(x1, read_w))
    y0, y1 = max(0, min(y0, read_h)), max(0, min(y1, read_h))
    return (x0, y0, max(x1, x0), max(y1, y0))


def region_mask(
    boxes_baseline: list[tuple[float, float, float, float]],
    baseline: tuple[int, int],
    *,
    max_side: int = 2048,
) -> np.ndarray:
    """Low-resolution binary mask covering the given baseline boxes (dilated by a pixel).

    TIAToolbox scales a mask array to the slide, so the engine processes only
    the patches that overlap the regions.

    Examples:
        >>> m = region_mask([(100, 100, 300, 200)], (1000, 1000), max_side=100)
        >>> m.shape, int(m.sum()) > 0, int(m[50, 50])
        ((100, 100), True, 0)

    """
    base_w, base_h = baseline
    down = max(1.0, max(base_w, base_h) / max_side)
    mask = np.zeros((max(1, math.ceil(base_h / down)), max(1, math.ceil(base_w / down))), np.uint8)
    for x0, y0, x1, y1 in boxes_baseline:
        c0 = max(0, math.floor(x0 / down) - 1)
        r0 = max(0, math.floor(y0 / down) - 1)
        c1 = min(mask.shape[1], math.ceil(x1 / down) + 1)
        r1 = min(mask.shape[0], math.ceil(y1 / down) + 1)
        mask[r0:r1, c0:c1] = 1
    return mask


def _row_blocks(height: int, width: int) -> list[tuple[int, int]]:
    rows = max(1, BLOCK_PIXELS // max(1, width))
    return [(r, min(r + rows, height)) for r in range(0, height, rows)]


def confusion_counts(labels_a: np.ndarray, labels_b: np.ndarray, num_classes: int) -> np.ndarray:
    """``(K, K)`` joint histogram of two label maps (``K = num_classes``)."""
    a = np.asarray(labels_a, dtype=np.int64).ravel()
    b = np.asarray(labels_b, dtype=np.int64).ravel()
    if a.size and (min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= num_classes):
        msg = f"labels must be in [0, {num_classes}); got values outside."
        raise ValueError(msg)
    return np.bincount(a * num_classes + b, minlength=num_classes**2).reshape(
        num_classes, num_classes
    )


def dice_from_confusion(counts: np.ndarray, *, ignore_background: bool = False) -> float:
    """Dice averaged over classes present in either map, from a confusion matrix.

    The same rule as :func:`tia_scanner_robust.metrics.functional.paired_dice`
    (a class absent from both maps is skipped; two empty maps score 1), on
    counts accumulated block by block over a whole canvas.
    """
    counts = np.asarray(counts, dtype=np.float64)
    inter = np.diag(counts)
    total = counts.sum(axis=1) + counts.sum(axis=0)
    present = total > 0
    if ignore_background:
        present[0] = False
    if not present.any():
        return 1.0
    return float(np.mean(2.0 * inter[present] / total[present]))


class CanvasDice:
    """Pair score for :class:`~tia_scanner_robust.metrics.consistency.PairedConsistency`.

    Rows of ``a`` and ``b`` are integer ids into ``handles``; each pair of
    boxes is compared on their common (top-left aligned) extent, streaming
    blocks of rows from the zarr canvases and accumulating a confusion matrix.

    Args:
        handles: The boxes, indexed by the ids fed to the metric.
        num_classes: Number of classes of the label maps.
        ignore_background: Skip class 0 in the average.

    Calls return ``(scores, empty)``: ``empty`` flags the boxes of which
    neither holds a foreground class (``reports_empty``), so the metric's
    ``empty_pairs`` policy applies as for patch-mode Dice.
    """

    __name__ = "dice"
    reports_empty = True

    def __init__(
        self, handles: list[RegionHandle], num_classes: int, *, ignore_background: bool = False
    ) -> None:
        self.handles = handles
        self.num_classes = int(num_classes)
        self.ignore_background = ignore_background

    def pair(self, ha: RegionHandle, hb: RegionHandle) -> float:
        """Dice between two boxes (common extent)."""
        return self._pair(ha, hb)[0]

    def _pair(self, ha: RegionHandle, hb: RegionHandle) -> tuple[float, bool]:
        """Dice between two boxes (common extent), and whether both are empty."""
        height = min(ha.shape[0], hb.shape[0])
        width = min(ha.shape[1], hb.shape[1])
        if height == 0 or width == 0:
            return float("nan"), False
        arr_a = open_output_array(ha.zarr_path, "predictions")
        arr_b = open_output_array(hb.zarr_path, "predictions")
        counts = np.zeros((self.num_classes, self.num_classes), np.int64)
        for r0, r1 in _row_blocks(height, width):
            block_a = np.asarray(
                arr_a[ha.box[1] + r0 : ha.box[1] + r1, ha.box[0] : ha.box[0] + width]
            )
            block_b = np.asarray(
                arr_b[hb.box[1] + r0 : hb.box[1] + r1, hb.box[0] : hb.box[0] + width]
            )
            counts += confusion_counts(block_a, block_b, self.num_classes)
        foreground = counts[1:, :].sum() + counts[:, 1:].sum()
        return dice_from_confusion(counts, ignore_background=self.ignore_background), bool(
            foreground == 0
        )

    def __call__(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scores of row-aligned id arrays ``a`` and ``b``, and the empty-vs-empty flags."""
        a = np.asarray(a, dtype=np.int64).ravel()
        b = np.asarray(b, dtype=np.int64).ravel()
        pairs = [self._pair(self.handles[i], self.handles[j]) for i, j in zip(a, b, strict=True)]
        return (
            np.array([p[0] for p in pairs], dtype=np.float64),
            np.array([p[1] for p in pairs], dtype=bool),
        )


def class_fractions(handle: RegionHandle, num_classes: int) -> np.ndarray:
    """Fraction of the box's pixels in each class, streamed by blocks of rows."""
    height, width = handle.shape
    if height == 0 or width == 0:
        return np.full(num_classes, np.nan)
    arr = open_output_array(handle.zarr_path, "predictions")
    counts = np.zeros(num_classes, np.int64)
    x0, y0 = handle.box[:2]
    for r0, r1 in _row_blocks(height, width):
        block = np.asarray(arr[y0 + r0 : y0 + r1, x0 : x0 + width]).astype(np.int64)
        counts += np.bincount(block.ravel(), minlength=num_classes)[:num_classes]
    return counts / max(1, height * width)


def pool_patches(
    zarr_path: str, key: str, box: tuple[int, int, int, int], *, block_rows: int = 8192
) -> np.ndarray:
    """Area-weighted mean of per-patch outputs over the patches overlapping ``box``.

    Args:
        zarr_path: Engine output with ``coordinates`` ``(P, 4)`` (x0, y0, x1,
            y1 at the read resolution) and ``key`` ``(P, D)``.
        key: ``"probabilities"`` or ``"features"``.
        box: ``(x0, y0, x1, y1)`` at the read resolution.
        block_rows: Patches read per block.

    Returns:
        ``(D,)`` mean (NaN when no patch overlaps the box).

    """
    coords = np.asarray(open_output_array(zarr_path, "coordinates")[:], dtype=np.float64)
    values = open_output_array(zarr_path, key)
    bx0, by0, bx1, by1 = box
    ow = np.clip(np.minimum(coords[:, 2], bx1) - np.maximum(coords[:, 0], bx0), 0, None)
    oh = np.clip(np.minimum(coords[:, 3], by1) - np.maximum(coords[:, 1], by0), 0, None)
    weight = ow * oh
    dim = int(np.prod(values.shape[1:])) if len(values.shape) > 1 else 1
    total = np.zeros(dim)
    hit = np.flatnonzero(weight > 0)
    if hit.size == 0:
        return np.full(dim, np.nan)
    for start in range(0, hit.size, block_rows):
        idx = hit[start : start + block_rows]
        lo, hi = int(idx.min()), int(idx.max()) + 1
        block = np.asarray(values[lo:hi], dtype=np.float64).reshape(hi - lo, -1)
        total += (block[idx - lo] * weight[idx, None]).sum(axis=0)
    return total / weight[hit].sum()


class WSIModeEvaluator(EvaluatorBase):
    """The evaluator's WSI mode (see the module docstring)."""

    def _wsi_ioconfig(self) -> Any:
        if self.ioconfig is None:
            msg = (
                "WSI mode needs an IO config (patch size, stride, resolution): pass ioconfig= "
                "or use a model that provides one (the builtin model, TIAToolbox pretrained "
                "models, models with an `ioconfig` attribute)."
            )
            raise ValueError(msg)
        return self.ioconfig

    @staticmethod
    def _engine_mask(members: list[PairedSample], geometry: dict[str, Any]) -> np.ndarray | None:
        """Low-resolution mask of a slide's regions (``None``: whole slide needed)."""
        if any(m.region is None for m in members):
            return None
        boxes = []
        for m in members:
            x, y, w, h = m.region
            factor = (m.mpp / geometry["mpp"]) if (m.mpp and geometry["mpp"]) else 1.0
            boxes.append((x, y, x + w * factor, y + h * factor))
        return region_mask(boxes, geometry["baseline"])

    def _run_wsi_engine(
        self, scanner: str, samples: list[PairedSample], work: Path
    ) -> dict[str, dict[str, Any]]:
        """Run the task's engine once per scanner (several runs only for clashing file stems).

        Returns:
            ``str(path) -> {"zarr": output path, "geometry": slide geometry}``.
        """
        ioconfig = self._wsi_ioconfig()
        res = ioconfig.input_resolutions[0]
        by_path: dict[str, list[PairedSample]] = defaultdict(list)
        for sample in samples:
            by_path[str(sample.path)].append(sample)
        geometry = {p: slide_geometry(p, res["resolution"], res["units"]) for p in by_path}
        paths = list(by_path)
        t0 = time.perf_counter()
        guard = FiniteOutputGuard(self.model)
        try:
            zarrs = run_wsi_engine(
                self.model,
                paths,
                work,
                ioconfig=ioconfig,
                engine=self.spec.engine,
                batch_size=self.batch_size,
                num_workers=self.num_workers,
                device=self.device,
                masks=[self._engine_mask(by_path[p], geometry[p]) for p in paths],
                auto_get_mask=self.auto_get_mask,
                return_probabilities=self.spec.return_probabilities,
                run_name=scanner,
            )
        finally:
            guard.close()
        if guard.bad_rows:
            names = ", ".join(sorted({s.specimen_id for s in samples}))
            msg = (
                f"non-finite model output on scanner {scanner!r} while predicting "
                f"{', '.join(Path(p).name for p in paths)} (specimens {names}): "
                f"{guard.n_nan} NaN and {guard.n_inf} inf values in {len(guard.bad_rows)} "
                "patch(es); check the model's weights (a checkpoint with NaN weights?) "
                "and its input normalisation."
            )
            raise ValueError(msg)
        self._timings[f"infer/{scanner}"] += time.perf_counter() - t0
        return {
            p: {"zarr": str(z), "geometry": geometry[p]} for p, z in zip(paths, zarrs, strict=True)
        }

    def _evaluate_wsi(self, collection: PairedCollection, out_dir: Path) -> EvaluationResult:
        scanners = collection.scanners
        ids = [sample_id(s, m) for s, m in collection.groups]
        work = out_dir / ".engine_tmp"
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        engine_out = {
            scanner: self._run_wsi_engine(scanner, collection.by_scanner(scanner), work)
            for scanner in tqdm(scanners, desc="Engine per scanner", disable=not self.verbose)
        }
        acc = Accumulator()
        handles: list[RegionHandle] = []
        handle_id: dict[tuple[str, str], int] = {}
        t0 = time.perf_counter()
        for spec, mag in tqdm(collection.groups, desc="Aligning", disable=not self.verbose):
            for scanner in scanners:
                sample = collection.get(spec, scanner, mag)
                info = engine_out[scanner][str(sample.path)]
                handle = self._align_wsi_sample(sample, info, acc)
                if handle is not None:
                    handle_id[(sample_id(spec, mag), scanner)] = len(handles)
                    handles.append(handle)
        self._timings["align_seconds"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        if self.spec.dense:
            from tia_scanner_robust.metrics.consistency import (  # noqa: PLC0415
                PairedConsistency,
            )

            score = CanvasDice(
                handles, self._canvas_classes(), ignore_background=self.ignore_background
            )
            metric = PairedConsistency(
                score, scanners=scanners, nan_policy="omit", empty_pairs=self.empty_pairs
            )
            for scanner in scanners:
                metric.update(ids, scanner, np.array([handle_id[(i, scanner)] for i in ids]))
            consistency = {"dice": metric.compute()}
        else:
            metrics = self._metrics(scanners, nan_policy="omit")
            for scanner in scanners:
                metrics.update(ids, scanner, np.stack(acc.outputs[scanner]))
            consistency = metrics.compute()
        self._timings["metrics_seconds"] += time.perf_counter() - t0
        if any(len(v) != len(ids) for v in acc.rgb.values()):
            acc.rgb.clear()  # RGB statistics only when every sample is a region
        result = self._make_result("wsi", collection, consistency, acc)
        if self.spec.dense:
            result.examples = self._wsi_examples(collection, result, handles, handle_id)
        else:
            result.examples = self._wsi_examples_vectors(collection, result)
        result.prediction_paths = self._keep_wsi_outputs(engine_out, work, out_dir / "predictions")
        return result

    def _align_wsi_sample(
        self, sample: PairedSample, info: dict[str, Any], acc: Accumulator
    ) -> RegionHandle | None:
        """Read one sample's region from the engine output into the accumulator."""
        from tia_scanner_robust.data.paired import load_sample_image  # noqa: PLC0415

        scanner = sample.scanner
        acc.labels[scanner].append(sample.label)
        if sample.region is not None:
            acc.rgb[scanner].append(rgb_stats(load_sample_image(sample)))
        if not self.spec.dense:
            key = self.spec.output
            box = region_box(sample.region, sample.mpp, info["geometry"])
            vector = pool_patches(info["zarr"], key, box)
            acc.outputs[scanner].append(vector)
            nan = bool(np.isnan(vector).any())
            acc.scalars[scanner].append(float("nan") if nan else self._scalar({key: vector}))
            return None
        canvas = open_output_array(info["zarr"], "predictions").shape
        box = region_box(sample.region, sample.mpp, info["geometry"], canvas[:2])
        handle = RegionHandle(info["zarr"], box)
        fractions = class_fractions(handle, self._canvas_classes())
        self._summary(acc, scanner).update_fractions(
            fractions[None], handle.shape[0] * handle.shape[1]
        )
        for c, value in enumerate(fractions[: self._num_classes() or fractions.size]):
            acc.per_sample[f"fraction_{c}"][scanner].append(float(value))
        cov_c = self.cov_class_index
        acc.scalars[scanner].append(float(fractions[cov_c]) if cov_c < fractions.size else np.nan)
        return handle

    def _canvas_classes(self) -> int:
        return self._num_classes() or 256

    def _keep_wsi_outputs(
        self, engine_out: dict[str, dict[str, dict[str, Any]]], work: Path, folder: Path
    ) -> dict[str, str]:
        """Move the engine outputs to ``out_dir/predictions/<scanner>/`` (or delete them)."""
        paths: dict[str, str] = {}
        if self.save_predictions:
            folder.mkdir(parents=True, exist_ok=True)
            for scanner, outputs in engine_out.items():
                target = folder / scanner
                if target.exists():
                    shutil.rmtree(target)
                target.mkdir()
                for src, info in outputs.items():
                    zarr_path = Path(info["zarr"])
                    dest = target / f"{zarr_path.parent.name}_{zarr_path.name}"
                    zarr_path.rename(dest)
                    info["zarr"] = str(dest)
                    info["source"] = src
                paths[scanner] = str(target)
        shutil.rmtree(work, ignore_errors=True)
        return paths

    @staticmethod
    def _wsi_image(sample: PairedSample, shape: tuple[int, int] | None = None) -> np.ndarray:
        """RGB view of a sample (its region, or a thumbnail), resized to ``shape`` if given."""
        from tia_scanner_robust.data.paired import load_sample_image  # noqa: PLC0415

        if sample.region is not None:
            image = load_sample_image(sample)
        else:
            from tiatoolbox.wsicore.wsireader import WSIReader  # noqa: PLC0415

            reader = WSIReader.open(sample.path)
            width, height = (int(v) for v in reader.info.slide_dimensions)
            scale = min(1.0, EXAMPLE_SIDE / max(width, height))
            bounds = (0, 0, width, height)
            image = reader.read_bounds(bounds, resolution=scale, units="baseline")[..., :3]
        image = np.ascontiguousarray(image)
        if shape is None:
            return downsample(image, nearest=False)
        return resize(image, shape, nearest=False)

    def _wsi_examples(
        self,
        collection: PairedCollection,
        result: EvaluationResult,
        handles: list[RegionHandle],
        handle_id: dict[tuple[str, str], int],
    ) -> list[ExamplePair]:
        examples = []
        groups = collection.groups
        for index, pair, score in self._worst_samples(result):
            spec, mag = groups[index]
            sid = result.sample_ids[index]
            ha, hb = (handles[handle_id[(sid, s)]] for s in pair)
            shape = (min(ha.shape[0], hb.shape[0]), min(ha.shape[1], hb.shape[1]))
            step = max(1, math.ceil(max(shape) / EXAMPLE_SIDE))
            images, preds, captions = [], [], []
            for scanner, handle in zip(pair, (ha, hb), strict=True):
                x0, y0 = handle.box[:2]
                arr = open_output_array(handle.zarr_path, "predictions")
                pred = np.asarray(arr[y0 : y0 + shape[0] : step, x0 : x0 + shape[1] : step]).astype(
                    np.int64
                )
                sample = collection.get(spec, scanner, mag)
                images.append(self._wsi_image(sample, pred.shape))
                preds.append(pred)
                captions.append(f"{scanner}: {self._caption({'predictions': pred})}")
            examples.append(
                ExamplePair(
                    sid, pair, tuple(images), tuple(preds), score, result.primary, tuple(captions)
                )
            )
        return examples

    def _wsi_examples_vectors(
        self, collection: PairedCollection, result: EvaluationResult
    ) -> list[ExamplePair]:

        examples = []
        groups = collection.groups
        key = self.spec.output
        for index, pair, score in self._worst_samples(result):
            spec, mag = groups[index]
            images, captions = [], []
            for scanner in pair:
                sample = collection.get(spec, scanner, mag)
                images.append(self._wsi_image(sample))
                vector = result.outputs[scanner][index] if result.outputs else None
                captions.append(
                    f"{scanner}: {self._caption({key: vector})}" if vector is not None else scanner
                )
            examples.append(
                ExamplePair(
                    result.sample_ids[index],
                    pair,
                    tuple(images),
                    (None, None),
                    score,
                    result.primary,
                    tuple(captions),
                )
            )
        return examples
