"""What the evaluator's patch and WSI modes share: settings, patch-mode inference, summaries.

:class:`EvaluatorBase` holds the evaluator's settings (validated once), runs
a list of images through the task's TIAToolbox engine in patch mode (grouped
by size or resized, :meth:`~EvaluatorBase.infer_images`), and turns what the
modes accumulated into an :class:`~tia_scanner_robust.engines.results.EvaluationResult`
(CoV, per-scanner summaries, worst-pair examples). The task-specific parts
come from the task's :class:`~tia_scanner_robust.engines.tasks.TaskSpec`;
the modes live in :mod:`~tia_scanner_robust.engines.patch` and
:mod:`~tia_scanner_robust.engines.wsi`, the public class in
:mod:`~tia_scanner_robust.engines.consistency`.

Examples:
    >>> base = EvaluatorBase("builtin", task="segmentation")
    >>> base.spec.engine, base.config()["size_policy"]
    ('SemanticSegmentor', 'group')

"""

from __future__ import annotations

import contextlib
import dataclasses
import platform
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tia_scanner_robust import _tiatoolbox
from tia_scanner_robust._validation import check_in_choices
from tia_scanner_robust.engines._imageops import resize
from tia_scanner_robust.engines.checks import (
    FiniteOutputGuard,
    ResolutionLog,
    as_label_grid,
    check_model_fits,
)
from tia_scanner_robust.engines.loading import resolve_model
from tia_scanner_robust.engines.results import EvaluationResult, sample_id
from tia_scanner_robust.engines.tasks import TASK_SPECS

if TYPE_CHECKING:
    from collections.abc import Sequence

    from torch import nn

    from tia_scanner_robust.data.paired import PairedCollection
    from tia_scanner_robust.engines.tasks import TaskSpec
    from tia_scanner_robust.metrics.functional import PairConsistency

__all__ = ["SIZE_POLICIES", "Accumulator", "EvaluatorBase"]

#: How patch datasets with images of several sizes are fed to a patch-mode engine.
SIZE_POLICIES = ("auto", "group", "resize")


@dataclass
class Accumulator:
    """Per-scanner values gathered while the engines run."""

    per_sample: dict[str, dict[str, list[float]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )
    scalars: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    labels: dict[str, list[Any]] = field(default_factory=lambda: defaultdict(list))
    rgb: dict[str, list[np.ndarray]] = field(default_factory=lambda: defaultdict(list))
    outputs: dict[str, list[np.ndarray]] = field(default_factory=lambda: defaultdict(list))
    #: Scanner -> :class:`~tia_scanner_robust.metrics.summaries.PredictionSummary`.
    summaries: dict[str, Any] = field(default_factory=dict)
    #: Scanner -> trivial predictor name -> per-sample Dice against the masks.
    trivial: dict[str, dict[str, list[float]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )


class EvaluatorBase:
    """Settings and shared machinery of the scanner-consistency evaluator.

    The arguments are those of
    :class:`~tia_scanner_robust.engines.consistency.ScannerConsistencyEvaluator`
    (documented there).

    Raises:
        ValueError: On an unknown task or policy, or a model that cannot be resolved.
    """

    def __init__(
        self,
        model: str | Path | nn.Module = "builtin",
        task: str = "segmentation",
        *,
        weights: str | Path | None = None,
        ioconfig: Any = None,
        batch_size: int = 8,
        num_workers: int = 0,
        device: str = "cpu",
        chunk_size: int | None = 64,
        size_policy: str = "auto",
        num_classes: int | None = None,
        ignore_background: bool = False,
        cov_class: int | None = None,
        target_map: dict[int, int] | None = None,
        positive_class: int = 1,
        ks: Sequence[int] = (1, 3, 5, 10),
        n_examples: int = 1,
        save_predictions: bool = True,
        auto_get_mask: bool = True,
        seed: int = 0,
        verbose: bool = True,
        empty_pairs: str = "exclude",
        n_resamples: int = 1000,
        mpp: float | None = None,
        patch_size: int | None = None,
    ) -> None:
        from tia_scanner_robust.metrics.functional.dice import (  # noqa: PLC0415
            EMPTY_PAIR_POLICIES,
        )

        self.task = check_in_choices(task, TASK_SPECS, "task")
        self.empty_pairs = check_in_choices(empty_pairs, EMPTY_PAIR_POLICIES, "empty_pairs")
        self.spec: TaskSpec = TASK_SPECS[self.task]
        self.size_policy = check_in_choices(size_policy, SIZE_POLICIES, "size_policy")
        for name, value, low in (
            ("batch_size", batch_size, 1),
            ("num_workers", num_workers, 0),
            ("n_examples", n_examples, 0),
            ("n_resamples", n_resamples, 1),
            ("patch_size", 1 if patch_size is None else patch_size, 1),
        ):
            if isinstance(value, bool) or int(value) != value or value < low:
                msg = f"{name} must be an integer >= {low}, got {value!r}."
                raise ValueError(msg)
        if chunk_size is not None and (int(chunk_size) != chunk_size or chunk_size < 1):
            msg = f"chunk_size must be a positive integer or None, got {chunk_size!r}."
            raise ValueError(msg)
        self.model_spec = model if isinstance(model, (str, Path)) else type(model).__name__
        if mpp is not None and not (isinstance(mpp, (int, float)) and float(mpp) > 0):
            msg = f"mpp must be a positive number of microns per pixel, got {mpp!r}."
            raise ValueError(msg)
        self.model, model_ioconfig, self.model_name = resolve_model(model, weights=weights)
        self.model_kind = check_model_fits(self.task, self.model, model_ioconfig, self.model_name)
        self.mpp = None if mpp is None else float(mpp)
        self.patch_size = None if patch_size is None else int(patch_size)
        self.n_resamples = int(n_resamples)
        self.ioconfig = _with_resolution(
            ioconfig if ioconfig is not None else model_ioconfig,
            self.mpp,
            self.patch_size,
            segmentor=TASK_SPECS[self.task].dense,
        )
        self._resolution = ResolutionLog()
        self._output_rules: set[str] = set()
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.device = str(device)
        self.chunk_size = None if chunk_size is None else int(chunk_size)
        self.class_dict = getattr(self.model, "class_dict", None) or None
        self.num_classes = num_classes
        self.ignore_background = bool(ignore_background)
        self.cov_class = cov_class
        self.target_map = (
            None if target_map is None else {int(k): int(v) for k, v in target_map.items()}
        )
        self.positive_class = int(positive_class)
        self.ks = tuple(int(k) for k in ks)
        self.n_examples = int(n_examples)
        self.save_predictions = bool(save_predictions)
        self.auto_get_mask = bool(auto_get_mask)
        self.seed = int(seed)
        self.verbose = bool(verbose)
        self.fully_convolutional = bool(getattr(self.model, "fully_convolutional", False))
        self._timings: dict[str, float] = defaultdict(float)

    # ----------------------------------------------------------------- config
    def config(self) -> dict[str, Any]:
        """The evaluator's settings (for the report)."""
        return {
            "model": str(self.model_spec),
            "model_description": self.model_name,
            "task": self.task,
            "engine": self.spec.engine,
            "batch_size": self.batch_size,
            "num_workers": self.num_workers,
            "device": self.device,
            "chunk_size": self.chunk_size,
            "size_policy": self._effective_size_policy(),
            "num_classes": self._num_classes(),
            "ignore_background": self.ignore_background,
            "cov_class": self.cov_class_index if self.spec.dense else None,
            "cov_quantity": self.spec.cov_quantity(self),
            "target_map": self.target_map,
            "positive_class": self.positive_class,
            "ks": list(self.ks),
            "save_predictions": self.save_predictions,
            "auto_get_mask": self.auto_get_mask,
            "seed": self.seed,
            "empty_pairs": self.empty_pairs if self.spec.dense else None,
            "n_resamples": self.n_resamples,
            "mpp": self.mpp,
            "patch_size": self.patch_size,
            "model_kind": self.model_kind,
            "ioconfig": None if self.ioconfig is None else _ioconfig_dict(self.ioconfig),
            "model_config": _model_config(self.model),
        }

    def _effective_size_policy(self) -> str:
        if self.size_policy != "auto":
            return self.size_policy
        return "group" if self.fully_convolutional else "resize"

    def _num_classes(self) -> int | None:
        if self.num_classes is not None:
            return int(self.num_classes)
        if self.spec.dense and self.class_dict:
            return len(self.class_dict)
        return None

    @property
    def cov_class_index(self) -> int:
        """Segmentation: the class whose pixel fraction is the CoV scalar.

        ``cov_class`` when given, else the class whose name contains "nucle", else 1.
        """
        if self.cov_class is not None:
            return int(self.cov_class)
        for index, name in (self.class_dict or {}).items():
            if "nucle" in str(name).lower():
                return int(index)
        return 1

    # ------------------------------------------------------- patch-mode runs
    def _patch_ioconfig(self, shape: tuple[int, int]) -> Any:
        """IO config whose input (and, when equal, output) shape is ``shape``."""
        if self.ioconfig is None:
            return _tiatoolbox.read_ioconfig(shape, segmentor=self.spec.dense)
        base = self.ioconfig
        current = tuple(int(v) for v in base.patch_input_shape)
        if current == tuple(shape):
            return base
        changes: dict[str, Any] = {"patch_input_shape": tuple(shape), "stride_shape": tuple(shape)}
        out_shape = getattr(base, "patch_output_shape", None)
        if out_shape is not None and tuple(int(v) for v in out_shape) == current:
            changes["patch_output_shape"] = tuple(shape)
        return dataclasses.replace(base, **changes)

    def _model_input_shape(self) -> tuple[int, int] | None:
        if self.ioconfig is None:
            return None
        return tuple(int(v) for v in self.ioconfig.patch_input_shape)

    def _run_patch_engine(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """One patch-mode engine run on same-size images: the task's output, one row each."""
        shape = (int(images.shape[1]), int(images.shape[2]))
        out = _tiatoolbox.run_patch_engine(
            self.spec.engine,
            self.model,
            images,
            ioconfig=self._patch_ioconfig(shape),
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            device=self.device,
            return_probabilities=self.spec.return_probabilities,
        )
        return self.spec.from_engine(out)

    def infer_images(
        self,
        images: list[np.ndarray],
        *,
        scanner: str | None = None,
        sample_ids: Sequence[str] | None = None,
        sample_mpps: Sequence[float | None] | None = None,
    ) -> list[dict[str, Any]]:
        """Per-image outputs of a list of RGB images (grouped by size or resized).

        Each output holds the task's output (``predictions``, ``probabilities``
        or ``features``), ``model_input_shape`` and ``image_shape``. With
        ``mpp`` set, an image whose ``sample_mpps`` entry differs is first
        rescaled to ``mpp``. Label maps larger than the model input are
        resized to the input grid; smaller ones cover its centre (see
        :func:`~tia_scanner_robust.engines.checks.as_label_grid`). With
        ``scanner`` given, the sizes are logged for ``input_resolution``.

        Raises:
            ValueError: If the model outputs NaN or inf (the message names the
                scanner and the sample).
        """
        policy = self._effective_size_policy()
        target = self._model_input_shape()
        ids = list(sample_ids) if sample_ids is not None else [f"#{i}" for i in range(len(images))]
        prepared = []
        for i, image in enumerate(images):
            in_shape = tuple(image.shape[:2])
            source_mpp = sample_mpps[i] if sample_mpps is not None else None
            fed = image
            if self.mpp is not None and source_mpp and abs(source_mpp / self.mpp - 1) > 1e-3:
                scale = float(source_mpp) / self.mpp
                shape = (max(1, round(in_shape[0] * scale)), max(1, round(in_shape[1] * scale)))
                fed = resize(fed, shape, nearest=False)
            if policy == "resize" and target is not None and tuple(fed.shape[:2]) != target:
                fed = resize(fed, target, nearest=False)
            prepared.append((fed, in_shape))
        by_shape: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, (image, _) in enumerate(prepared):
            by_shape[tuple(image.shape[:2])].append(i)
        results: list[dict[str, Any]] = [{} for _ in images]
        where = f"scanner {scanner!r}" if scanner is not None else "the model"
        guard = FiniteOutputGuard(self.model)
        try:
            for shape, index in by_shape.items():
                guard.reset()
                stacked = np.stack([prepared[i][0] for i in index])
                out = self._run_patch_engine(stacked)
                _check_outputs(out, guard, where, [ids[i] for i in index])
                for row, i in enumerate(index):
                    results[i] = {key: value[row] for key, value in out.items()}
                    results[i]["model_input_shape"] = shape
                    results[i]["image_shape"] = prepared[i][1]
        finally:
            guard.close()
        for i, res in enumerate(results):
            out_shape = None
            if self.spec.dense:
                out_shape = tuple(res["predictions"].shape[:2])
                res["predictions"], rule = as_label_grid(
                    res["predictions"], res["model_input_shape"]
                )
                self._output_rules.add(rule)
            if scanner is not None:
                mpp = sample_mpps[i] if sample_mpps is not None else None
                self._resolution.add(
                    scanner, res["image_shape"], res["model_input_shape"], out_shape, mpp=mpp
                )
        return results

    # ----------------------------------------------------------- shared bits
    def _metrics(self, scanners: list[str], *, nan_policy: str = "raise") -> Any:
        from tia_scanner_robust.metrics.consistency import ScannerConsistency  # noqa: PLC0415

        return ScannerConsistency(
            self.task, scanners=scanners, nan_policy=nan_policy, **self.spec.metric_kwargs(self)
        )

    def _scalar(self, output: dict[str, Any]) -> float:
        """The per-specimen scalar whose CoV across scanners is reported."""
        return self.spec.scalar(output, self)

    def _caption(self, output: dict[str, Any]) -> str:
        return self.spec.caption(output, self)

    def _finish_cov(
        self,
        scalars: dict[str, list[float]],
        groups: list[tuple[str, str | None]],
        scanners: list[str],
    ) -> tuple[Any, Any]:
        from tia_scanner_robust.metrics.functional import (  # noqa: PLC0415
            coefficient_of_variation,
            magnification_cov,
        )

        if self.spec.scalar_key is None:
            return None, None
        ids = [sample_id(s, m) for s, m in groups]
        values = np.array([scalars[s] for s in scanners], dtype=np.float64).T  # (N, S)
        cov = coefficient_of_variation(values, specimen_ids=ids)
        mags = {m for _, m in groups}
        mag_cov = None
        if len(mags) > 1 and None not in mags:
            flat = values.ravel()
            spec = np.repeat([s for s, _ in groups], len(scanners))
            scan = np.tile(scanners, len(groups))
            mag = np.repeat([m for _, m in groups], len(scanners))
            keep = ~np.isnan(flat)
            mag_cov = magnification_cov(flat[keep], spec[keep], scan[keep], mag[keep])
        return cov, mag_cov

    def _per_scanner_summary(
        self,
        scanners: list[str],
        per_sample: dict[str, dict[str, list[float]]],
        labels: dict[str, list[Any]],
        outputs: dict[str, list[np.ndarray]] | None,
    ) -> dict[str, dict[str, Any]]:
        summary: dict[str, dict[str, Any]] = {}
        for scanner in scanners:
            row: dict[str, Any] = {"inference_seconds": self._timings.get(f"infer/{scanner}", 0.0)}
            for quantity, values in per_sample.items():
                arr = np.asarray(values.get(scanner, []), dtype=np.float64)
                row[f"n_{quantity}"] = int((~np.isnan(arr)).sum())
                row[f"mean_{quantity}"] = float(np.nanmean(arr)) if (~np.isnan(arr)).any() else None
            if not self.spec.dense and outputs is not None:
                row.update(self.spec.summarise(np.stack(outputs[scanner]), labels.get(scanner, [])))
            summary[scanner] = row
        return summary

    def _make_result(
        self,
        mode: str,
        collection: PairedCollection,
        consistency: dict[str, PairConsistency],
        acc: Accumulator,
    ) -> EvaluationResult:
        """Assemble an :class:`EvaluationResult` from the accumulated values."""
        scanners = collection.scanners
        groups = collection.groups
        self._drop_unused_fractions(acc)
        if self.spec.scalar_key is not None:
            for scanner in scanners:
                acc.per_sample[self.spec.scalar_key][scanner] = list(acc.scalars[scanner])
        cov, mag_cov = self._finish_cov(acc.scalars, groups, scanners)
        outputs = None if self.spec.dense else {s: np.stack(v) for s, v in acc.outputs.items()}
        result = EvaluationResult(
            task=self.task,
            mode=mode,
            model=self.model_name,
            scanners=scanners,
            sample_ids=[sample_id(s, m) for s, m in groups],
            consistency=consistency,
            primary=self.spec.primary,
            cov=cov,
            magnification_cov=mag_cov,
            per_scanner=self._per_scanner_summary(
                scanners, acc.per_sample, acc.labels, acc.outputs
            ),
            per_sample={k: {s: list(v) for s, v in d.items()} for k, d in acc.per_sample.items()},
            class_dict=self.class_dict,
            rgb_stats={s: np.stack(v) for s, v in acc.rgb.items()} if acc.rgb else None,
            outputs=outputs,
        )
        return self._finish_robustness(result, acc)

    def _finish_robustness(self, result: EvaluationResult, acc: Accumulator) -> EvaluationResult:
        """Intervals, prediction summaries, trivial scores, resolution and warnings."""
        from tia_scanner_robust.engines.robustness import finish_robustness  # noqa: PLC0415

        if not self.spec.dense:
            for scanner, rows in acc.outputs.items():
                if rows and scanner not in acc.summaries:
                    self._summary(acc, scanner).update(np.stack(rows))
        rules = self._output_rules - {"same"}
        return finish_robustness(
            result,
            summaries=acc.summaries,
            resolution=self._resolution,
            trivial_samples=acc.trivial,
            labels=acc.labels,
            n_resamples=self.n_resamples,
            seed=self.seed,
            model_mpp=self._model_mpp(),
            output_rule=", ".join(sorted(rules)) if rules else "same",
            extra_warnings=self._mpp_warnings(),
        )

    def _summary(self, acc: Accumulator, scanner: str) -> Any:
        """The scanner's :class:`~tia_scanner_robust.metrics.summaries.PredictionSummary`."""
        from tia_scanner_robust.metrics.summaries import PredictionSummary  # noqa: PLC0415

        if scanner not in acc.summaries:
            acc.summaries[scanner] = PredictionSummary(self.task, num_classes=self._num_classes())
        return acc.summaries[scanner]

    def _model_mpp(self) -> float | None:
        """The resolution (µm/px) the model reads at, when its IO config says so."""
        if self.mpp is not None:
            return self.mpp
        for res in getattr(self.ioconfig, "input_resolutions", None) or []:
            if res.get("units") == "mpp":
                return float(res["resolution"])
        return None

    def _mpp_warnings(self) -> list[str]:
        """Tiles whose stated mpp differs from the model's, without ``mpp`` to rescale them."""
        if self.mpp is not None:
            return []
        model_mpp = self._model_mpp()
        out = []
        for scanner, row in self._resolution.to_dict().items():
            off = [m for m in row["sample_mpp"] if model_mpp and abs(m / model_mpp - 1) > 0.1]
            if off:
                out.append(
                    f"Resolution mismatch on scanner {scanner}: its images are at "
                    f"{', '.join(f'{m:g}' for m in off)} µm/px but the model reads at "
                    f"{model_mpp:g} µm/px; pass mpp (--mpp) to rescale them."
                )
        return out

    def _drop_unused_fractions(self, acc: Accumulator) -> None:
        """Keep ``fraction_<k>`` only for the model's named classes and classes it predicted.

        A WSI run of a model without a class dictionary counts 256 label
        values; the result keeps the classes the model names and those it
        predicted on some sample.
        """
        named = {int(k) for k in (self.class_dict or {})}
        for key in [k for k in acc.per_sample if k.startswith("fraction_")]:
            index = int(key.rsplit("_", 1)[1])
            values = [v for rows in acc.per_sample[key].values() for v in rows]
            used = any(np.isfinite(v) and v > 0 for v in values)
            if index not in named and not used:
                del acc.per_sample[key]

    def _worst_samples(self, result: EvaluationResult) -> list[tuple[int, tuple[str, str], float]]:
        pc = result.primary_result
        pair = pc.worst_pair
        if pair is None or self.n_examples == 0:
            return []
        values = np.asarray(pc.per_sample[pair], dtype=np.float64)
        order = np.argsort(
            np.where(np.isnan(values), np.inf, values if pc.higher_is_better else -values)
        )
        position = {sid: i for i, sid in enumerate(result.sample_ids)}
        row_ids = pc.specimen_ids or result.sample_ids
        picked = []
        for row in order[: self.n_examples]:
            if np.isnan(values[row]):
                continue
            picked.append((position[row_ids[row]], pair, float(values[row])))
        return picked

    def _typical_samples(
        self, result: EvaluationResult
    ) -> list[tuple[int, tuple[str, str], float]]:
        """Specimens whose worst-pair score is closest to its median (the report's gallery)."""
        pc = result.primary_result
        pair = pc.worst_pair
        if pair is None or self.n_examples == 0:
            return []
        values = np.asarray(pc.per_sample[pair], dtype=np.float64)
        if not np.isfinite(values).any():
            return []
        distance = np.abs(values - float(np.nanmedian(values)))
        order = np.argsort(np.where(np.isnan(values), np.inf, distance), kind="stable")
        worst = {index for index, _, _ in self._worst_samples(result)}
        position = {sid: i for i, sid in enumerate(result.sample_ids)}
        row_ids = pc.specimen_ids or result.sample_ids
        picked = []
        for row in order:
            index = position[row_ids[row]]
            if np.isnan(values[row]) or (index in worst and len(values) > 1):
                continue
            picked.append((index, pair, float(values[row])))
            if len(picked) == self.n_examples:
                break
        return picked


def _check_outputs(
    out: dict[str, np.ndarray], guard: FiniteOutputGuard, where: str, ids: list[str]
) -> None:
    """Raise on non-finite model outputs (seen by the hook or in the engine's arrays)."""
    from tia_scanner_robust.metrics.summaries import check_finite  # noqa: PLC0415

    if guard.bad_rows:
        row = guard.bad_rows[0]
        sample = ids[row] if guard.rows_seen == len(ids) and row < len(ids) else ids[0]
        msg = (
            f"non-finite model output on {where}, sample {sample!r}: {guard.n_nan} NaN and "
            f"{guard.n_inf} inf value(s) in this batch. Scores of such outputs are meaningless "
            "(argmax of NaN is class 0); check the weights (NaN after training?) and the input "
            "normalisation."
        )
        raise ValueError(msg)
    for value in out.values():
        if np.issubdtype(np.asarray(value).dtype, np.floating):
            check_finite(value, where=where, sample_ids=ids)


def _with_resolution(
    ioconfig: Any, mpp: float | None, patch_size: int | None, *, segmentor: bool
) -> Any:
    """The IO config read at ``mpp`` with ``patch_size`` patches (``None``: unchanged).

    Examples:
        >>> io = _with_resolution(None, 0.5, 64, segmentor=True)
        >>> io.input_resolutions, tuple(io.patch_input_shape), tuple(io.patch_output_shape)
        ([{'units': 'mpp', 'resolution': 0.5}], (64, 64), (64, 64))
        >>> _with_resolution(io, None, 32, segmentor=True).patch_output_shape
        (32, 32)

    """
    if mpp is None and patch_size is None:
        return ioconfig
    if ioconfig is None:
        if patch_size is None:
            return None  # patch mode without an IO config: each image's size is used
        return _tiatoolbox.read_ioconfig(patch_size, mpp, segmentor=segmentor)
    changes: dict[str, Any] = {}
    if mpp is not None:
        resolution = [{"units": "mpp", "resolution": float(mpp)}]
        changes["input_resolutions"] = resolution
        if getattr(ioconfig, "output_resolutions", None):
            changes["output_resolutions"] = resolution
        if getattr(ioconfig, "save_resolution", None) is not None:
            changes["save_resolution"] = resolution[0]
    if patch_size is not None:
        current = tuple(int(v) for v in ioconfig.patch_input_shape)
        shape = (int(patch_size), int(patch_size))
        changes["patch_input_shape"] = shape
        changes["stride_shape"] = shape
        out_shape = getattr(ioconfig, "patch_output_shape", None)
        if out_shape is not None and tuple(int(v) for v in out_shape) == current:
            changes["patch_output_shape"] = shape
    return dataclasses.replace(ioconfig, **changes)


def versions() -> dict[str, str]:
    """Versions of Python and of the packages an evaluation depends on."""
    import importlib.metadata as md  # noqa: PLC0415

    out = {"python": platform.python_version()}
    for name in ("tia-scanner-robust", "tiatoolbox", "torch", "numpy", "zarr"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _ioconfig_dict(ioconfig: Any) -> dict[str, Any]:
    out = {}
    for key in (
        "input_resolutions",
        "output_resolutions",
        "patch_input_shape",
        "patch_output_shape",
        "stride_shape",
        "save_resolution",
    ):
        value = getattr(ioconfig, key, None)
        if value is not None:
            out[key] = np.asarray(value).tolist() if key.endswith("shape") else value
    out["class"] = type(ioconfig).__name__
    return out


def _model_config(model: Any) -> Any:
    config = getattr(model, "config", None)
    if callable(config):
        with contextlib.suppress(Exception):
            return config()
        return None
    return config if isinstance(config, dict) else None
