"""The domain-generalisation protocol: task performance per scanner on unpaired data.

The paired protocol (:class:`~tia_scanner_robust.engines.consistency.ScannerConsistencyEvaluator`)
needs the *same* tissue on every scanner. Most labelled multi-scanner data is
not paired (Camelyon17, MIDOG, COSAS: different tissue per scanner). On such
data the question "does the model work on every scanner?" is answered by the
task metric per scanner, against each scanner's own ground truth:

==================  ========================  ==========================================
task                engine                    per-scanner metric (per sample)
==================  ========================  ==========================================
``segmentation``    ``SemanticSegmentor``     Dice against the sample's mask
``classification``  ``PatchPredictor``        accuracy against the label (and AUC)
==================  ========================  ==========================================

:class:`UnpairedEvaluator` runs the model through TIAToolbox's engine (via
:mod:`tia_scanner_robust._tiatoolbox`, like the paired evaluator) and reports,
in an :class:`UnpairedResult`, the metric of every scanner, the mean and the
minimum over scanners and the worst scanner, each with a 95% bootstrap
interval over the samples *within* each scanner (stratified: every scanner
keeps its size), the score of a trivial predictor, a per-scanner summary of
what the model predicted, and plain-sentence warnings.

Images of any size are accepted; bringing them to what the model needs is
the evaluator's job (:func:`tile_image`, :func:`stitch_tiles`):

- a model declaring ``fully_convolutional = True`` (the builtin one) sees
  each chunk of images reflect-padded to one common size, and each
  prediction is cropped back to its image;
- any other segmenter sees the image reflect-padded and cut into tiles of
  its IO config's ``patch_input_shape``, stepping by its
  ``patch_output_shape`` (margins included when the output is smaller); the
  tile predictions are stitched and cropped back to the image;
- a classifier sees images smaller than its input reflect-padded to it;
  larger ones follow ``size_policy`` (a resize is reported as a warning).

:func:`unpaired_from_paired` derives the same summary from a paired
evaluation that had masks or labels, so paired data gets both protocols in
one report; :func:`choose_protocol` picks a protocol for a set of samples
(``"auto"``: paired when specimens are shared across scanners).

Examples:
    >>> import tempfile, numpy as np
    >>> from pathlib import Path
    >>> from tiatoolbox.data import stain_norm_target
    >>> from tia_scanner_robust._io import atomic_write_image
    >>> from tia_scanner_robust.data.paired import PairedSample
    >>> root = Path(tempfile.mkdtemp())
    >>> he = stain_norm_target()
    >>> samples = []
    >>> for k, scanner in enumerate(("A", "A", "B", "B")):
    ...     tile = he[100 * k : 100 * k + 90 + 7 * k, 200 : 260 + 11 * k]
    ...     path = atomic_write_image(root / f"{k}.png", tile)
    ...     mask = atomic_write_image(root / f"{k}_m.png", (tile[..., 0] < 150).astype(np.uint8))
    ...     samples.append(PairedSample(f"t/{k}", scanner, path=path, mask_path=mask))
    >>> choose_protocol("auto", samples)
    'unpaired'
    >>> result = UnpairedEvaluator("builtin", verbose=False, n_resamples=200).evaluate(samples)
    >>> result.metric, result.scanners, result.worst_scanner in {"A", "B"}
    ('dice', ['A', 'B'], True)
    >>> 0.0 <= result.minimum <= result.mean <= 1.0
    True

"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from tia_scanner_robust._validation import check_in_choices
from tia_scanner_robust.engines._imageops import downsample
from tia_scanner_robust.engines.base import versions
from tia_scanner_robust.engines.patch import PatchModeEvaluator
from tia_scanner_robust.engines.results import sample_id
from tia_scanner_robust.engines.tiling import pad_image, stitch_tiles, tile_image, to_grid
from tia_scanner_robust.engines.unpaired_results import (
    DEFAULT_RESAMPLES,
    UnpairedExample,
    UnpairedResult,
    scanner_score_summary,
    target_names,
    trivial_summary,
    unpaired_from_paired,
    unpaired_warnings,
)
from tia_scanner_robust.seeding import seed_everything

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from tia_scanner_robust.data.collection import PairedSample

__all__ = [
    "PROTOCOLS",
    "UNPAIRED_METRICS",
    "UnpairedEvaluator",
    "UnpairedExample",
    "UnpairedResult",
    "choose_protocol",
    "group_by_scanner",
    "read_unpaired_manifest",
    "scanner_score_summary",
    "shares_specimens",
    "stitch_tiles",
    "tile_image",
    "unpaired_from_paired",
]

#: The evaluation protocols of ``evaluate --protocol``.
PROTOCOLS = ("paired", "unpaired", "auto")
#: Task -> the per-sample metric of the unpaired protocol.
UNPAIRED_METRICS = {"segmentation": "dice", "classification": "accuracy"}


# ------------------------------------------------------------------ the samples
def read_unpaired_manifest(
    csv_path: str | Path, *, allow_outside: bool = False
) -> list[PairedSample]:
    r"""Read a manifest CSV without requiring pairs (every row is kept).

    Same columns, path rules and error messages as
    :func:`~tia_scanner_robust.data.manifest.read_manifest`, but specimens
    need not be seen by every scanner: this is the reader of the unpaired
    protocol (different tissue per scanner).

    Args:
        csv_path: The manifest.
        allow_outside: Accept relative paths that leave the manifest's folder.

    Returns:
        The samples, in file order.

    Raises:
        FileNotFoundError: If the manifest or a file it names is missing.
        ValueError: On a malformed manifest or a duplicate
            (specimen, scanner, magnification) row (messages name the line).

    Examples:
        A specimen seen by one scanner only is kept (the example of
        :func:`~tia_scanner_robust.data.manifest.read_manifest_samples` reads
        such a file); a file the manifest names must exist:

        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "m.csv").write_text("specimen_id,scanner,path\na/1,A,gone.png\n")
        >>> read_unpaired_manifest(d / "m.csv")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        FileNotFoundError: ...m.csv: 1 file(s) named in the manifest do not exist: line 2: ...

    """
    from tia_scanner_robust.data.manifest import read_manifest_samples  # noqa: PLC0415

    return read_manifest_samples(csv_path, allow_outside=allow_outside)


def group_by_scanner(
    samples: Iterable[PairedSample], scanners: Sequence[str] | None = None
) -> dict[str, list[PairedSample]]:
    """Samples per scanner (scanner order: ``scanners`` or first appearance; samples by id).

    Examples:
        >>> from tia_scanner_robust.data.paired import PairedSample
        >>> s = [PairedSample("x/10", "B"), PairedSample("x/2", "B"), PairedSample("y", "A")]
        >>> {k: [p.specimen_id for p in v] for k, v in group_by_scanner(s).items()}
        {'B': ['x/2', 'x/10'], 'A': ['y']}

    """
    from tia_scanner_robust.data.collection import natural_key  # noqa: PLC0415

    out: dict[str, list[PairedSample]] = {}
    for sample in samples:
        out.setdefault(sample.scanner, []).append(sample)
    order = list(scanners) if scanners is not None else list(out)
    unknown = [s for s in out if s not in order]
    if unknown:
        msg = f"scanners {order} does not list the samples' scanners {unknown}."
        raise ValueError(msg)
    return {
        s: sorted(out[s], key=lambda p: natural_key(sample_id(p.specimen_id, p.magnification)))
        for s in order
        if s in out
    }


def shares_specimens(samples: Iterable[PairedSample]) -> bool:
    """Whether some specimen (at one magnification) is seen by two or more scanners.

    Examples:
        >>> from tia_scanner_robust.data.paired import PairedSample
        >>> shares_specimens([PairedSample("a", "X"), PairedSample("a", "Y")])
        True
        >>> shares_specimens([PairedSample("a", "X"), PairedSample("b", "Y")])
        False

    """
    seen: dict[tuple[str, str | None], set[str]] = defaultdict(set)
    for sample in samples:
        seen[sample.group].add(sample.scanner)
    return any(len(v) > 1 for v in seen.values())


def choose_protocol(protocol: str, samples: Iterable[PairedSample]) -> str:
    """``"paired"`` or ``"unpaired"``: ``protocol`` itself, or for ``"auto"`` what the data allows.

    ``"auto"`` is ``"paired"`` when specimens are shared across scanners (the
    same tissue scanned twice), else ``"unpaired"``.

    Examples:
        >>> from tia_scanner_robust.data.paired import PairedSample
        >>> choose_protocol("auto", [PairedSample("a", "X"), PairedSample("a", "Y")])
        'paired'
        >>> choose_protocol("both", [])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: Unknown protocol 'both'; valid values: paired, unpaired, auto.

    """
    check_in_choices(protocol, PROTOCOLS, "protocol")
    if protocol != "auto":
        return protocol
    return "paired" if shares_specimens(samples) else "unpaired"


# -------------------------------------------------------------- any image size
# ------------------------------------------------------------------- evaluator
class UnpairedEvaluator(PatchModeEvaluator):
    """Per-scanner task performance on labelled, unpaired multi-scanner data.

    Takes the arguments of
    :class:`~tia_scanner_robust.engines.consistency.ScannerConsistencyEvaluator`
    (``task`` is ``"segmentation"`` with masks or ``"classification"`` with
    labels), plus:

    Args:
        model: See :class:`~tia_scanner_robust.engines.consistency.ScannerConsistencyEvaluator`.
        task: ``"segmentation"`` or ``"classification"``.
        n_resamples: Bootstrap resamples of the intervals.
        n_tile_batch: Segmenters with a fixed input: tiles per engine call.
        **kwargs: The remaining evaluator settings.

    Raises:
        ValueError: On a task without ground truth (``"embedding"``).

    Examples:
        >>> UnpairedEvaluator("builtin").metric
        'dice'
        >>> UnpairedEvaluator("builtin", task="embedding")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: The unpaired protocol scores predictions against ground truth: ...

    """

    def __init__(
        self,
        model: Any = "builtin",
        task: str = "segmentation",
        *,
        n_resamples: int = DEFAULT_RESAMPLES,
        n_tile_batch: int = 256,
        **kwargs: Any,
    ) -> None:
        if task not in UNPAIRED_METRICS:
            msg = (
                "The unpaired protocol scores predictions against ground truth: task must be "
                f"one of {', '.join(UNPAIRED_METRICS)} (masks or labels), got {task!r}."
            )
            raise ValueError(msg)
        super().__init__(model, task, n_resamples=n_resamples, **kwargs)
        self.n_tile_batch = max(1, int(n_tile_batch))
        self.metric = UNPAIRED_METRICS[task]

    # ------------------------------------------------------------- inference
    def _tile_shapes(self) -> tuple[tuple[int, int], tuple[int, int]] | None:
        """Input and output tile of a fixed-input segmenter (``None``: any size)."""
        if self.fully_convolutional or self.ioconfig is None:
            return None
        tile = tuple(int(v) for v in self.ioconfig.patch_input_shape)
        out_shape = getattr(self.ioconfig, "patch_output_shape", None)
        out = tuple(int(v) for v in out_shape) if out_shape is not None else tile
        return tile, out  # type: ignore[return-value]

    def _run_checked(self, batch: np.ndarray, where: str, row_ids: list[str]) -> np.ndarray:
        """One engine run's label maps; NaN/inf model outputs raise, naming the sample."""
        from tia_scanner_robust.engines.checks import FiniteOutputGuard  # noqa: PLC0415

        guard = FiniteOutputGuard(self.model)
        try:
            preds = self._run_patch_engine(batch)["predictions"]
        finally:
            guard.close()
        if guard.bad_rows:
            row = guard.bad_rows[0]
            sample = row_ids[row] if row < len(row_ids) else row_ids[0]
            msg = (
                f"non-finite model output on {where}, sample {sample!r}: {guard.n_nan} NaN and "
                f"{guard.n_inf} inf value(s); scores of such outputs are meaningless (argmax of "
                "NaN is class 0). Check the weights and the input normalisation."
            )
            raise ValueError(msg)
        return preds

    def segment(
        self,
        images: Sequence[np.ndarray],
        *,
        where: str = "the model",
        sample_ids: Sequence[str] | None = None,
    ) -> list[np.ndarray]:
        """Label maps of RGB images of any size, each the size of its image.

        Fully convolutional models: the images are reflect-padded to one
        common size, run in one engine call and cropped back. Other models:
        each image is tiled (:func:`tile_image`), the tiles run in engine
        calls of ``n_tile_batch`` and are stitched back (:func:`stitch_tiles`).

        Args:
            images: RGB uint8 images.
            where: What the images are (e.g. ``"scanner 'A'"``), for errors.
            sample_ids: Their ids, for errors.

        Raises:
            ValueError: If the model outputs NaN or inf (naming the sample).

        Examples:
            >>> import numpy as np
            >>> from tiatoolbox.data import stain_norm_target
            >>> images = [stain_norm_target()[:37, :50], stain_norm_target()[:64, :21]]
            >>> [p.shape for p in UnpairedEvaluator("builtin", verbose=False).segment(images)]
            [(37, 50), (64, 21)]

        """
        if not images:
            return []
        ids = list(sample_ids) if sample_ids is not None else [f"#{i}" for i in range(len(images))]
        shapes = [tuple(im.shape[:2]) for im in images]
        tiles_spec = self._tile_shapes()
        if tiles_spec is None:
            canvas = (max(s[0] for s in shapes), max(s[1] for s in shapes))
            batch = np.stack(
                [
                    pad_image(im, 0, canvas[0] - s[0], 0, canvas[1] - s[1])
                    for im, s in zip(images, shapes, strict=True)
                ]
            )
            preds = self._run_checked(batch, where, ids)
            return [
                to_grid(np.asarray(p), canvas)[: s[0], : s[1]].astype(np.int64)
                for p, s in zip(preds, shapes, strict=True)
            ]
        tile, out = tiles_spec
        cut = [tile_image(im, tile, out) for im in images]
        flat = np.concatenate([t for t, _ in cut])
        owner = [ids[i] for i, (t, _) in enumerate(cut) for _ in range(len(t))]
        preds = []
        for start in range(0, len(flat), self.n_tile_batch):
            stop = start + self.n_tile_batch
            preds.extend(self._run_checked(flat[start:stop], where, owner[start:stop]))
        results, k = [], 0
        for (tiles, grid), shape in zip(cut, shapes, strict=True):
            results.append(
                stitch_tiles(preds[k : k + len(tiles)], grid, out, shape).astype(np.int64)
            )
            k += len(tiles)
        return results

    def classify(self, images: Sequence[np.ndarray]) -> tuple[list[np.ndarray], int]:
        """Class probabilities of RGB images; images smaller than the input are reflect-padded.

        Returns:
            ``(probabilities per image, number of images resized by the size policy)``.

        """
        target = self._model_input_shape()
        prepared = []
        for image in images:
            h, w = image.shape[:2]
            if target is not None and (h < target[0] or w < target[1]):
                dy, dx = max(0, target[0] - h), max(0, target[1] - w)
                prepared.append(pad_image(image, dy // 2, dy - dy // 2, dx // 2, dx - dx // 2))
            else:
                prepared.append(image)
        resized = 0
        if target is not None and self._effective_size_policy() == "resize":
            resized = sum(tuple(im.shape[:2]) != tuple(target) for im in prepared)
        outs = self.infer_images(prepared)
        return [np.asarray(o["probabilities"], dtype=np.float64).reshape(-1) for o in outs], resized

    # -------------------------------------------------------------- evaluate
    def evaluate(
        self, samples: Iterable[PairedSample], out_dir: str | Path | None = None
    ) -> UnpairedResult:
        """Score the model against every scanner's ground truth.

        Args:
            samples: The labelled samples (a ``PairedCollection`` or any
                iterable of :class:`~tia_scanner_robust.data.collection.PairedSample`);
                segmentation needs every sample's ``mask_path``, classification
                every ``label``. Whole-slide samples are read through their
                ``region`` (see :func:`~tia_scanner_robust.data.readers.load_sample_image`).
            out_dir: Folder recorded in the result (the report goes there).

        Returns:
            An :class:`UnpairedResult`.

        Raises:
            ValueError: If there are no samples, or some lack ground truth
                (the message names them), or the model outputs NaN/inf.

        """
        samples = list(samples)
        if not samples:
            msg = "No samples to evaluate."
            raise ValueError(msg)
        self._check_ground_truth(samples)
        seed_everything(self.seed)
        self._timings = defaultdict(float)
        start = time.perf_counter()
        groups = group_by_scanner(samples)
        per_scanner: dict[str, dict[str, Any]] = {}
        per_sample: dict[str, dict[str, list[Any]]] = {}
        trivial_pool: dict[str, list[float]] = defaultdict(list)
        progress = tqdm(total=len(samples), desc="Evaluating", disable=not self.verbose)
        try:
            for scanner, items in groups.items():
                row, values, trivial = self._score_scanner(scanner, items, progress)
                per_scanner[scanner] = row
                per_sample[scanner] = values
                for name, scores in trivial.items():
                    trivial_pool[name].extend(scores)
        finally:
            progress.close()
        result = self._finish(per_scanner, per_sample, trivial_pool)
        t0 = time.perf_counter()
        result.examples = self._examples(groups, result)
        self._timings["examples_seconds"] += time.perf_counter() - t0
        self._timings["total_seconds"] = time.perf_counter() - start
        result.timings = dict(self._timings)
        result.out_dir = None if out_dir is None else Path(out_dir)
        return result

    def _check_ground_truth(self, samples: list[PairedSample]) -> None:
        if self.task == "segmentation":
            lacking = [s for s in samples if s.mask_path is None]
            what = "mask_path"
        else:
            lacking = [s for s in samples if s.label is None]
            what = "label"
        if lacking:
            shown = ", ".join(f"{s.specimen_id} ({s.scanner})" for s in lacking[:5])
            msg = (
                f"The unpaired protocol scores the {self.task} against ground truth, but "
                f"{len(lacking)} of {len(samples)} sample(s) have no {what}: {shown}."
            )
            raise ValueError(msg)

    def _score_scanner(
        self, scanner: str, items: list[PairedSample], progress: Any
    ) -> tuple[dict[str, Any], dict[str, list[Any]], dict[str, list[float]]]:
        from tia_scanner_robust.data.paired import load_sample_image  # noqa: PLC0415
        from tia_scanner_robust.metrics.summaries import PredictionSummary, check_finite  # noqa: PLC0415

        summary = PredictionSummary(self.task, num_classes=self._num_classes())
        empty_vs_truth = 0  # predictions with no foreground in the mask's classes
        ids = [sample_id(s.specimen_id, s.magnification) for s in items]
        scores: list[float] = []
        trivial: dict[str, list[float]] = defaultdict(list)
        probabilities, padded, resized, sizes = [], 0, 0, set()
        chunk = self.chunk_size or len(items)
        for c0 in range(0, len(items), chunk):
            part = items[c0 : c0 + chunk]
            t0 = time.perf_counter()
            images = [load_sample_image(s) for s in part]
            self._timings["read_seconds"] += time.perf_counter() - t0
            sizes.update(tuple(im.shape[:2]) for im in images)
            t0 = time.perf_counter()
            if self.task == "segmentation":
                preds = self.segment(
                    images, where=f"scanner {scanner!r}", sample_ids=ids[c0 : c0 + len(part)]
                )
                self._timings[f"infer/{scanner}"] += time.perf_counter() - t0
                summary.update(preds)
                padded += self._count_padded(images)
                for sample, image, pred in zip(part, images, preds, strict=True):
                    mask = self._load_mask(sample, image.shape)
                    scores.append(self._gt_dice(pred, mask))
                    empty_vs_truth += int(self._to_target(pred, mask).max(initial=0) == 0)
                    for name, value in self._trivial_dice(mask).items():
                        trivial[name].append(value)
            else:
                probs, n_resized = self.classify(images)
                self._timings[f"infer/{scanner}"] += time.perf_counter() - t0
                resized += n_resized
                check_finite(
                    np.stack(probs),
                    where=f"scanner {scanner!r}",
                    sample_ids=ids[c0 : c0 + len(part)],
                )
                summary.update(np.stack(probs))
                probabilities.extend(probs)
                for sample, prob in zip(part, probs, strict=True):
                    scores.append(float(int(np.argmax(prob)) == int(sample.label)))
            progress.update(len(part))
        row: dict[str, Any] = {
            "n_samples": len(items),
            "image_sizes": {
                "min": list(min(sizes)),
                "max": list(max(sizes)),
                "n_distinct": len(sizes),
            },
            "predictions": summary.compute(),
            "inference_seconds": self._timings.get(f"infer/{scanner}", 0.0),
        }
        if self.task == "segmentation":
            row["padded"] = padded
            row["n_no_foreground"] = empty_vs_truth
            row["trivial"] = trivial_summary(trivial)
        else:
            labels = [int(s.label) for s in items]
            row.update(self._classification_extras(np.stack(probabilities), labels))
            row["resized"] = {
                "n_resized": resized,
                "n_images": len(items),
                "to": list(self._model_input_shape() or ()),
            }
        return row, {"sample_ids": ids, self.metric: scores}, trivial

    def _count_padded(self, images: list[np.ndarray]) -> int:
        shapes = {tuple(im.shape[:2]) for im in images}
        spec = self._tile_shapes()
        if spec is None:
            return 0 if len(shapes) == 1 else len(images)
        out = spec[1]
        return sum(s[0] % out[0] != 0 or s[1] % out[1] != 0 for s in shapes)

    @staticmethod
    def _load_mask(sample: PairedSample, shape: tuple[int, ...]) -> np.ndarray:
        from tia_scanner_robust.data.paired import load_sample_mask  # noqa: PLC0415

        return np.asarray(load_sample_mask(sample, shape), dtype=np.int64)

    def _trivial_dice(self, mask: np.ndarray) -> dict[str, float]:
        from tia_scanner_robust.metrics.functional.trivial import (  # noqa: PLC0415
            constant_prediction_dice,
        )

        found = constant_prediction_dice(mask, ignore_background=self.ignore_background)
        return {name: float(np.asarray(v).reshape(-1)[0]) for name, v in found.items()}

    def _classification_extras(self, probs: np.ndarray, labels: list[int]) -> dict[str, Any]:
        import warnings  # noqa: PLC0415

        from tia_scanner_robust.metrics.functional import roc_auc  # noqa: PLC0415
        from tia_scanner_robust.metrics.functional.trivial import (  # noqa: PLC0415
            majority_class_accuracy,
        )

        y = np.asarray(labels, dtype=np.int64)
        accuracy, majority = majority_class_accuracy(y)
        extras: dict[str, Any] = {
            "trivial": {
                "majority_class": majority,
                "best": f"always class {self._class_name(majority)}",
                "best_score": accuracy,
            },
            "auc": None,
        }
        if len(np.unique(y)) > 1 and probs.shape[1] >= 2:
            scores = probs[:, 1] if probs.shape[1] == 2 else probs
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                try:
                    extras["auc"] = roc_auc(y, scores)
                except ValueError:
                    extras["auc"] = None
        return extras

    def _class_name(self, index: int) -> str:
        name = (self.class_dict or {}).get(int(index))
        return f"{index} ({name})" if name else str(index)

    def _finish(
        self,
        per_scanner: dict[str, dict[str, Any]],
        per_sample: dict[str, dict[str, list[Any]]],
        trivial_pool: dict[str, list[float]],
    ) -> UnpairedResult:
        stats = scanner_score_summary(
            {s: v[self.metric] for s, v in per_sample.items()},
            n_resamples=self.n_resamples,
            seed=self.seed,
        )
        for scanner, row in per_scanner.items():
            row["mean"] = stats["per_scanner"][scanner]["mean"]
            row["ci95"] = stats["per_scanner"][scanner]["ci95"]
        if self.task == "segmentation":
            trivial = trivial_summary(trivial_pool)
        else:
            labels = [row["trivial"] for row in per_scanner.values()]
            pooled = sum(
                t["best_score"] * per_scanner[s]["n_samples"]
                for s, t in zip(per_scanner, labels, strict=True)
            )
            trivial = {
                "best": "majority class per scanner",
                "best_score": pooled / max(1, sum(r["n_samples"] for r in per_scanner.values())),
            }
        mapping = self.target_map
        if mapping is None and self.task == "segmentation" and self.model_name == "builtin":
            mapping = self._target_map_for(np.zeros((1, 1), np.int64))
        config = self.config() | {
            "protocol": "unpaired",
            "metric": self.metric,
            "n_resamples": self.n_resamples,
            "padding": _PADDING_RULE,
        }
        return UnpairedResult(
            task=self.task,
            metric=self.metric,
            model=self.model_name,
            scanners=list(per_scanner),
            per_scanner=per_scanner,
            per_sample=per_sample,
            mean=stats["mean"],
            minimum=stats["minimum"],
            worst_scanner=stats["worst_scanner"],
            ci95={k: stats[k] for k in ("n_resamples", "seed")}
            | {"mean": stats["mean_ci95"], "minimum": stats["minimum_ci95"]},
            trivial=trivial,
            warnings=unpaired_warnings(self.metric, per_scanner, self.class_dict),
            class_dict=self.class_dict,
            target_names=target_names(self.class_dict, mapping)
            if self.task == "segmentation"
            else None,
            config=config,
            versions=versions(),
        )

    # -------------------------------------------------------------- examples
    def _examples(
        self, groups: dict[str, list[PairedSample]], result: UnpairedResult
    ) -> list[UnpairedExample]:
        from tia_scanner_robust.data.paired import load_sample_image  # noqa: PLC0415

        if self.n_examples == 0:
            return []
        out = []
        for scanner, items in groups.items():
            values = np.asarray(result.per_sample[scanner][self.metric], dtype=np.float64)
            if not np.isfinite(values).any():
                continue
            worst = int(np.argmin(np.where(np.isfinite(values), values, np.inf)))
            distance = np.abs(values - float(np.nanmedian(values)))
            order = np.argsort(np.where(np.isfinite(values), distance, np.inf), kind="stable")
            typical = next((int(k) for k in order if k != worst), worst)
            picks = {"worst": worst, "typical": typical} if typical != worst else {"worst": worst}
            for kind, index in picks.items():
                sample = items[index]
                image = load_sample_image(sample)
                example = UnpairedExample(
                    scanner=scanner,
                    sample_id=result.per_sample[scanner]["sample_ids"][index],
                    kind=kind,
                    score=float(values[index]),
                    image=downsample(image, nearest=False),
                )
                if self.task == "segmentation":
                    mask = self._load_mask(sample, image.shape)
                    pred = self._to_target(self.segment([image])[0], mask)
                    example.prediction = downsample(pred, nearest=True)
                    example.truth = downsample(mask, nearest=True)
                    example.caption = f"{scanner} {kind}: Dice {values[index]:.3f}"
                else:
                    probs = self.classify([image])[0][0]
                    example.caption = (
                        f"{scanner} {kind}: predicted {self._class_name(int(np.argmax(probs)))}, "
                        f"true {self._class_name(int(sample.label))}"
                    )
                out.append(example)
        return out


_PADDING_RULE = (
    "fully convolutional models: images reflect-padded to a common size per chunk, predictions "
    "cropped back; fixed-input segmenters: images reflect-padded and tiled at the IO config's "
    "patch_input_shape (stepping by patch_output_shape), tile predictions stitched and cropped "
    "back; classifiers: images smaller than the input reflect-padded to it"
)
