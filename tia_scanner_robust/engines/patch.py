"""Patch mode of the evaluator: PNG/JPEG tiles through a patch-mode TIAToolbox engine.

Each scanner's images are stacked in specimen order and passed to the engine's
``run()`` (``patch_mode=True``), in chunks of ``chunk_size`` specimens so that
memory stays bounded (the streaming metric classes of
:mod:`tia_scanner_robust.metrics.consistency` receive each chunk). Label maps
of another size than the reference scanner's are compared on the reference
grid; per-scanner predictions go to ``out_dir/predictions/<scanner>.zarr``
(:class:`~tia_scanner_robust.engines.writer.ZarrPredictionWriter`).

Examples:
    >>> PatchModeEvaluator("builtin", verbose=False).chunk_size
    64

"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from tia_scanner_robust.engines._imageops import (
    centre_crop,
    downsample,
    min_uint,
    resize,
    rgb_stats,
)
from tia_scanner_robust.engines.base import Accumulator, EvaluatorBase
from tia_scanner_robust.engines.results import EvaluationResult, ExamplePair, sample_id
from tia_scanner_robust.engines.writer import ZarrPredictionWriter

if TYPE_CHECKING:
    from pathlib import Path

    from tia_scanner_robust.data.paired import PairedCollection, PairedSample

__all__ = ["PatchModeEvaluator"]


class PatchModeEvaluator(EvaluatorBase):
    """The evaluator's patch mode (see the module docstring)."""

    def _evaluate_patches(self, collection: PairedCollection, out_dir: Path) -> EvaluationResult:
        scanners = collection.scanners
        groups = collection.groups
        ids = [sample_id(s, m) for s, m in groups]
        metrics = self._metrics(scanners)
        acc = Accumulator()
        writers = self._open_writers(out_dir, scanners, ids)
        chunk = self.chunk_size or len(groups)
        chunks = [(i, min(i + chunk, len(groups))) for i in range(0, len(groups), chunk)]
        progress = tqdm(
            total=len(chunks) * len(scanners), desc="Evaluating", disable=not self.verbose
        )
        try:
            for c0, c1 in chunks:
                ref_shapes: list[tuple[int, ...]] = []
                for scanner in scanners:
                    progress.set_description(f"{scanner} [{c0}:{c1}]")
                    samples = [collection.get(s, scanner, m) for s, m in groups[c0:c1]]
                    ref_shapes = self._patch_chunk(
                        samples, ids[c0:c1], scanner, metrics, acc, writers.get(scanner), ref_shapes
                    )
                    progress.update(1)
        finally:
            progress.close()
        t0 = time.perf_counter()
        consistency = metrics.compute()
        self._timings["metrics_seconds"] += time.perf_counter() - t0
        result = self._make_result("patch", collection, consistency, acc)
        result.prediction_paths = {s: str(w.close()) for s, w in writers.items()}
        t0 = time.perf_counter()
        result.examples = self._patch_examples(collection, result)
        result.typical_examples = self._patch_examples(collection, result, kind="typical")
        self._timings["examples_seconds"] += time.perf_counter() - t0
        return result

    def _patch_chunk(  # noqa: PLR0917 - private helper of the chunk loop
        self,
        samples: list[PairedSample],
        chunk_ids: list[str],
        scanner: str,
        metrics: Any,
        acc: Accumulator,
        writer: ZarrPredictionWriter | None,
        ref_shapes: list[tuple[int, ...]],
    ) -> list[tuple[int, ...]]:
        """Infer one scanner's chunk and feed every accumulator; returns the reference shapes."""
        from tia_scanner_robust.data.paired import (  # noqa: PLC0415
            load_sample_image,
            load_sample_mask,
        )

        t0 = time.perf_counter()
        images = [load_sample_image(s) for s in samples]
        self._timings["read_seconds"] += time.perf_counter() - t0
        acc.rgb[scanner].extend(rgb_stats(im) for im in images)
        t0 = time.perf_counter()
        outs = self.infer_images(
            images, scanner=scanner, sample_ids=chunk_ids, sample_mpps=[s.mpp for s in samples]
        )
        self._timings[f"infer/{scanner}"] += time.perf_counter() - t0
        for sample, image, out in zip(samples, images, outs, strict=True):
            acc.scalars[scanner].append(self._scalar(out))
            acc.labels[scanner].append(sample.label)
            if self.spec.dense and sample.mask_path is not None:
                gt = load_sample_mask(sample, image.shape, **self._mask_labels())
                mask = self._mask_to_output(gt, out)
                acc.per_sample["gt_dice"][scanner].append(
                    self._gt_dice(out["predictions"].astype(np.int64), mask)
                )
                for name, value in self._trivial_dice(mask).items():
                    acc.trivial[scanner][name].append(value)
        if not self.spec.dense:
            key = self.spec.output
            rows = [o[key] for o in outs]
            metrics.update(chunk_ids, scanner, np.stack(rows))
            acc.outputs[scanner].extend(rows)
            if writer is not None:
                writer.add(key, rows)
            return ref_shapes
        preds = [o["predictions"].astype(np.int64) for o in outs]
        self._summary(acc, scanner).update(preds)
        ref_shapes = ref_shapes or [p.shape for p in preds]
        fixed = []
        for pred, ref in zip(preds, ref_shapes, strict=True):
            if pred.shape != ref:  # another scanner's image size: compare on the reference grid
                self._timings["n_resized_to_reference"] += 1
            fixed.append(pred if pred.shape == ref else resize(pred, ref, nearest=True))
        self._update_by_shape(metrics, chunk_ids, scanner, fixed)
        if writer is not None:
            writer.add("samples", [min_uint(p) for p in preds])
        for cls_idx, frac in self._class_fractions(preds).items():
            acc.per_sample[f"fraction_{cls_idx}"][scanner].extend(frac)
        return ref_shapes

    def _mask_labels(self) -> dict[str, Any]:
        """``num_classes``/``allowed`` of the ground-truth masks (``{}``: unknown, unchecked)."""
        n = self._num_classes()
        if self.target_map is None:
            return {} if n is None else {"num_classes": n}
        unmapped = set(range(n or 0)) - set(self.target_map)  # scored as predicted
        allowed = set(self.target_map.values()) | unmapped
        return {"num_classes": n or len(allowed), "allowed": allowed}

    def _target_map_for(self, mask: np.ndarray) -> dict[int, int] | None:
        if self.target_map is not None:
            return self.target_map
        if self.model_name == "builtin" and int(mask.max(initial=0)) <= 1:
            return {0: 0, 1: 0, 2: 1}  # nuclei vs the rest against a binary mask
        return None

    def _to_target(self, pred: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """A predicted label map in the mask's classes (``target_map``; identity when none)."""
        mapping = self._target_map_for(mask)
        if mapping is None:
            return pred
        lut = np.arange(max(int(pred.max(initial=0)), *mapping) + 1)
        for k, v in mapping.items():
            lut[k] = v
        return lut[pred]

    def _gt_dice(self, pred: np.ndarray, mask: np.ndarray) -> float:
        from tia_scanner_robust.metrics.functional import dice_score  # noqa: PLC0415

        pred = self._to_target(pred, mask)
        return float(
            dice_score(pred[None], mask[None], ignore_background=self.ignore_background)[0]
        )

    def _trivial_dice(self, mask: np.ndarray) -> dict[str, float]:
        """Dice of the constant predictors (all-background, all-foreground...) on one mask."""
        from tia_scanner_robust.metrics.functional import (  # noqa: PLC0415
            constant_prediction_dice,
        )

        mapping = self._target_map_for(mask)
        if mapping:  # the mask's classes are the mapped ones
            n = max(mapping.values()) + 1
        else:
            n = self._mask_labels().get("num_classes") or int(mask.max(initial=0)) + 1
        values = range(max(2, int(n)))
        scores = constant_prediction_dice(
            mask[None], values, ignore_background=self.ignore_background
        )
        return {name: float(v[0]) for name, v in scores.items()}

    def _class_fractions(self, preds: list[np.ndarray]) -> dict[int, list[float]]:
        k = self._num_classes() or (max(int(p.max(initial=0)) for p in preds) + 1)
        out: dict[int, list[float]] = {c: [] for c in range(k)}
        for p in preds:
            counts = np.bincount(p.ravel(), minlength=k)[:k] / max(1, p.size)
            for c in range(k):
                out[c].append(float(counts[c]))
        return out

    @staticmethod
    def _update_by_shape(
        metrics: Any, ids: list[str], scanner: str, preds: list[np.ndarray]
    ) -> None:
        by_shape: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for i, p in enumerate(preds):
            by_shape[p.shape].append(i)
        for index in by_shape.values():
            metrics.update([ids[i] for i in index], scanner, np.stack([preds[i] for i in index]))

    def _mask_to_output(self, mask: np.ndarray, out: dict[str, Any]) -> np.ndarray:
        """Bring a ground-truth mask into the prediction's geometry."""
        mask = resize(mask, out["model_input_shape"], nearest=True)
        return centre_crop(mask, out["predictions"].shape)

    def _open_writers(
        self, out_dir: Path, scanners: list[str], ids: list[str]
    ) -> dict[str, ZarrPredictionWriter]:
        if not self.save_predictions:
            return {}
        folder = out_dir / "predictions"
        folder.mkdir(parents=True, exist_ok=True)
        attrs = {
            "task": self.task,
            "sample_ids": ids,
            "class_dict": {str(k): v for k, v in (self.class_dict or {}).items()},
        }
        return {
            s: ZarrPredictionWriter(folder / f"{s}.zarr", {**attrs, "scanner": s}) for s in scanners
        }

    def _patch_examples(
        self, collection: PairedCollection, result: EvaluationResult, *, kind: str = "worst"
    ) -> list[ExamplePair]:
        from tia_scanner_robust.data.paired import load_sample_image  # noqa: PLC0415

        examples = []
        groups = collection.groups
        picks = self._worst_samples(result) if kind == "worst" else self._typical_samples(result)
        for index, pair, score in picks:
            spec, mag = groups[index]
            images, preds, captions, truths = [], [], [], []
            for scanner in pair:
                sample = collection.get(spec, scanner, mag)
                image = load_sample_image(sample)
                out = self.infer_images([image])[0]
                captions.append(f"{scanner}: {self._caption(out)}")
                if self.spec.dense:
                    pred = out["predictions"].astype(np.int64)
                    view = centre_crop(
                        resize(image, out["model_input_shape"], nearest=False), pred.shape
                    )
                    images.append(downsample(view, nearest=False))
                    preds.append(downsample(pred, nearest=True))
                    truths.append(self._truth_view(sample, image, out, pred))
                else:
                    images.append(downsample(image, nearest=False))
                    preds.append(None)
            if self.spec.dense and preds[0].shape != preds[1].shape:
                preds[1] = resize(preds[1], preds[0].shape, nearest=True)
                images[1] = resize(images[1], preds[0].shape, nearest=False)
                truths[1] = truths[1] and tuple(
                    resize(t, preds[0].shape, nearest=True) for t in truths[1]
                )
            both = len(truths) == 2 and all(t is not None for t in truths)
            examples.append(
                ExamplePair(
                    specimen_id=result.sample_ids[index],
                    scanners=pair,
                    images=(images[0], images[1]),
                    predictions=(preds[0], preds[1]),
                    score=score,
                    score_name=result.primary,
                    captions=(captions[0], captions[1]),
                    kind=kind,
                    truths=(truths[0][0], truths[1][0]) if both else None,
                    truth_predictions=(truths[0][1], truths[1][1]) if both else None,
                )
            )
        return examples

    def _truth_view(
        self, sample: PairedSample, image: np.ndarray, out: dict[str, Any], pred: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The sample's mask and the prediction in the mask's classes, downsampled (or None)."""
        from tia_scanner_robust.data.paired import load_sample_mask  # noqa: PLC0415

        if sample.mask_path is None:
            return None
        mask = self._mask_to_output(load_sample_mask(sample, image.shape), out).astype(np.int64)
        mapped = self._to_target(pred, mask)
        if mask.shape != mapped.shape:
            mask = resize(mask, mapped.shape, nearest=True)
        return downsample(mask, nearest=True), downsample(mapped, nearest=True)
