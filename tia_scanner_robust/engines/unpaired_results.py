"""Results of the unpaired (domain-generalisation) protocol and their statistics.

- :func:`scanner_score_summary`: mean and minimum over scanners of the
  per-scanner mean scores, with stratified bootstrap intervals (samples
  resampled *within* each scanner);
- :class:`UnpairedResult` / :class:`UnpairedExample`: what the protocol
  measured, :meth:`UnpairedResult.to_dict` for strict JSON;
- :func:`unpaired_warnings`: the protocol's plain-sentence warnings (built with
  :func:`~tia_scanner_robust.metrics.diagnostics.robustness_warnings`);
- :func:`unpaired_from_paired`: the same summary from a paired evaluation
  that had ground truth (both protocols in one report).

The evaluator itself is :class:`~tia_scanner_robust.engines.unpaired.UnpairedEvaluator`.

Examples:
    >>> out = scanner_score_summary({"A": [0.8, 0.9], "B": [0.5, 0.6]}, n_resamples=100)
    >>> out["worst_scanner"], round(out["minimum"], 2)
    ('B', 0.55)

"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from tia_scanner_robust._io import to_jsonable

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

    from tia_scanner_robust.engines.results import EvaluationResult

__all__ = [
    "MIN_SAMPLES",
    "UnpairedExample",
    "UnpairedResult",
    "scanner_score_summary",
    "target_names",
    "trivial_summary",
    "unpaired_from_paired",
    "unpaired_warnings",
]

#: Bootstrap resamples unless told otherwise.
DEFAULT_RESAMPLES = 1000
#: A scanner with fewer scored samples than this gets a warning.
MIN_SAMPLES = 10


# ------------------------------------------------------------------ statistics
def _resampled_means(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    picked = values[index]
    ok = ~np.isnan(picked)
    count = ok.sum(axis=1)
    total = np.where(ok, picked, 0.0).sum(axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _percentiles(stats: np.ndarray) -> list[float] | None:
    stats = stats[np.isfinite(stats)]
    if stats.size == 0:
        return None
    low, high = np.quantile(stats, [0.025, 0.975])
    return [float(low), float(high)]


def _nanmean(values: Sequence[float]) -> float:
    arr = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(arr)) if np.isfinite(arr).any() else float("nan")


def scanner_score_summary(
    scores: Mapping[str, Sequence[float]], *, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> dict[str, Any]:
    """Mean and minimum over scanners of per-scanner mean scores, with stratified bootstrap CIs.

    Each scanner's samples are resampled with replacement *within* that
    scanner (seeded; one index array per scanner from
    :func:`~tia_scanner_robust.metrics.functional.bootstrap_indices`); per
    resample the scanner means, their mean and their minimum are recomputed;
    the 2.5 and 97.5 percentiles give the 95% intervals. A scanner with fewer
    than two finite scores gets no interval and makes the pooled ones ``None``.

    Args:
        scores: Scanner -> per-sample scores (NaN: not scored).
        n_resamples: Bootstrap resamples.
        seed: Seed.

    Returns:
        The summary
        ``{"per_scanner": {s: {"mean", "ci95", "n"}}, "mean", "mean_ci95",
        "minimum", "minimum_ci95", "worst_scanner", "n_resamples", "seed"}``.

    Examples:
        >>> out = scanner_score_summary({"A": [0.8, 0.9, 0.7], "B": [0.4, 0.5, 0.6]})
        >>> round(out["mean"], 3), round(out["minimum"], 3), out["worst_scanner"]
        (0.65, 0.5, 'B')
        >>> lo, hi = out["minimum_ci95"]
        >>> lo <= 0.5 <= hi
        True

    """
    from tia_scanner_robust.metrics.functional import bootstrap_indices  # noqa: PLC0415

    per: dict[str, dict[str, Any]] = {}
    resampled = []
    for k, (scanner, values) in enumerate(scores.items()):
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
        n = int(np.isfinite(arr).sum())
        row: dict[str, Any] = {"mean": _nanmean(arr), "ci95": None, "n": n}
        if n >= 2:
            means = _resampled_means(arr, bootstrap_indices(arr.size, n_resamples, seed + k))
            row["ci95"] = _percentiles(means)
            resampled.append(means)
        else:
            resampled.append(None)
        per[scanner] = row
    finite = {s: r["mean"] for s, r in per.items() if math.isfinite(r["mean"])}
    worst = min(finite, key=finite.__getitem__) if finite else None
    out: dict[str, Any] = {
        "per_scanner": per,
        "mean": float(np.mean(list(finite.values()))) if finite else float("nan"),
        "mean_ci95": None,
        "minimum": finite[worst] if worst is not None else float("nan"),
        "minimum_ci95": None,
        "worst_scanner": worst,
        "n_resamples": int(n_resamples),
        "seed": int(seed),
    }
    if resampled and all(r is not None for r in resampled):
        stack = np.stack(resampled)  # (S, R)
        out["mean_ci95"] = _percentiles(np.nanmean(stack, axis=0))
        out["minimum_ci95"] = _percentiles(np.nanmin(stack, axis=0))
    return out


# --------------------------------------------------------------------- results
@dataclass
class UnpairedExample:
    """One sample of one scanner with its prediction and ground truth (for the report).

    Attributes:
        scanner: The scanner.
        sample_id: The sample.
        kind: ``"typical"`` (score closest to the scanner's median) or ``"worst"``.
        score: Its score (Dice, or 1/0 accuracy).
        image: RGB uint8 (downsampled to at most 384 px).
        prediction: Label map in the mask's classes (segmentation), else ``None``.
        truth: The mask (segmentation), else ``None``.
        caption: One line (class fractions, or predicted and true class).
    """

    scanner: str
    sample_id: str
    kind: str
    score: float
    image: np.ndarray
    prediction: np.ndarray | None = None
    truth: np.ndarray | None = None
    caption: str = ""


@dataclass
class UnpairedResult:
    """What the unpaired (domain-generalisation) protocol measured.

    Attributes:
        task: ``"segmentation"`` or ``"classification"``.
        metric: The per-sample metric (``"dice"`` or ``"accuracy"``).
        model: Short description of the model.
        scanners: Scanner names.
        per_scanner: Scanner -> ``{"n_samples", "mean", "ci95", "auc"?,
            "trivial": {...}, "predictions": {...}, "padded", "resized"}``.
        per_sample: Scanner -> ``{"sample_ids": [...], "<metric>": [...]}``.
        mean: Mean over scanners of the per-scanner means.
        minimum: The worst scanner's mean.
        worst_scanner: That scanner.
        ci95: ``{"mean": [lo, hi], "minimum": [lo, hi], "n_resamples", "seed"}``.
        trivial: The trivial predictor's score pooled over scanners
            (``{"best": name, "best_score": value, ...}``).
        warnings: Plain sentences (empty when all is well).
        class_dict: The model's class names (and ``target_names``: the mask
            classes' names, when predictions are mapped).
        config: The evaluator's settings.
        timings: Seconds per stage.
        versions: Package versions.
        examples: Typical and worst sample per scanner (not serialised).
        out_dir: Where the evaluation wrote its files.
    """

    task: str
    metric: str
    model: str
    scanners: list[str]
    per_scanner: dict[str, dict[str, Any]]
    per_sample: dict[str, dict[str, list[Any]]]
    mean: float
    minimum: float
    worst_scanner: str | None
    ci95: dict[str, Any] = field(default_factory=dict)
    trivial: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    class_dict: dict[int, str] | None = None
    target_names: dict[int, str] | None = None
    config: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    examples: list[UnpairedExample] = field(default_factory=list, repr=False)
    out_dir: Path | None = None

    @property
    def n_samples(self) -> int:
        """Samples scored over every scanner."""
        return int(sum(len(v["sample_ids"]) for v in self.per_sample.values()))

    def summary(self) -> str:
        """A few human-readable lines (the CLI prints them).

        Examples:
            >>> r = UnpairedResult("segmentation", "dice", "m", ["A", "B"], {}, {}, 0.5, 0.4, "B")
            >>> print(r.summary())
            unpaired protocol: segmentation, model m, 2 scanners, 0 samples
            dice per scanner: mean 0.5000, minimum 0.4000 (worst scanner B)

        """
        lines = [
            (
                f"unpaired protocol: {self.task}, model {self.model}, "
                f"{len(self.scanners)} scanners, {self.n_samples} samples"
            ),
            (
                f"{self.metric} per scanner: mean {self.mean:.4f}, minimum {self.minimum:.4f} "
                f"(worst scanner {self.worst_scanner or 'n/a'})"
            ),
        ]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Every number as strict JSON (NaN -> ``None``)."""
        return to_jsonable(
            {
                "protocol": "unpaired",
                "task": self.task,
                "metric": self.metric,
                "model": self.model,
                "scanners": self.scanners,
                "n_samples": self.n_samples,
                "summary": {
                    "mean": self.mean,
                    "mean_ci95": self.ci95.get("mean"),
                    "minimum": self.minimum,
                    "minimum_ci95": self.ci95.get("minimum"),
                    "worst_scanner": self.worst_scanner,
                    "trivial": self.trivial.get("best"),
                    "trivial_score": self.trivial.get("best_score"),
                },
                "ci95": self.ci95,
                "per_scanner": self.per_scanner,
                "per_sample": self.per_sample,
                "trivial": self.trivial,
                "warnings": self.warnings,
                "class_dict": self.class_dict,
                "target_names": self.target_names,
                "examples": [
                    {
                        "scanner": e.scanner,
                        "sample_id": e.sample_id,
                        "kind": e.kind,
                        "score": e.score,
                        "caption": e.caption,
                    }
                    for e in self.examples
                ],
                "config": self.config,
                "timings": self.timings,
                "versions": self.versions,
                "out_dir": self.out_dir,
            }
        )


def unpaired_warnings(
    metric: str,
    per_scanner: Mapping[str, Mapping[str, Any]],
    class_dict: Mapping[int, str] | None,
) -> list[str]:
    """Warnings of the unpaired protocol (built with the paired protocol's diagnostics).

    Constant or mostly empty predictions on a scanner, a scanner no better
    than its trivial predictor, fewer than :data:`MIN_SAMPLES` samples on a
    scanner, inputs resized.

    Examples:
        >>> rows = {
        ...     "A": {
        ...         "n_samples": 3,
        ...         "mean": 0.4,
        ...         "trivial": {"best": "all_background", "best_score": 0.5},
        ...     }
        ... }
        >>> for line in unpaired_warnings("dice", rows, None):
        ...     print(line)  # doctest: +ELLIPSIS
        No better than trivial: Dice against ground truth (A 0.400) is no better than ...
        Scanner A has only 3 scored sample(s) (fewer than 10): ...

    """
    from tia_scanner_robust.metrics.diagnostics import robustness_warnings  # noqa: PLC0415

    label = "Dice" if metric == "dice" else metric
    predictions = {s: r["predictions"] for s, r in per_scanner.items() if r.get("predictions")}
    out = robustness_warnings(predictions=predictions or None, class_names=class_dict)
    for scanner, row in per_scanner.items():
        trivial = row.get("trivial") or {}
        out += robustness_warnings(
            task_scores={scanner: row.get("mean")}, task_metric=label, trivial=trivial
        )
        n = int(row.get("n_samples", 0))
        empty = int(row.get("n_no_foreground", 0) or 0)
        if n and empty / n > 0.5:
            out.append(
                f"No foreground predicted on scanner {scanner}: on {empty} of {n} samples the "
                "prediction (in the mask's classes) holds background only; its Dice there comes "
                "from the background class."
            )
        if n < MIN_SAMPLES:
            out.append(
                f"Scanner {scanner} has only {n} scored sample(s) (fewer than {MIN_SAMPLES}): "
                f"its {label} and its interval are not stable estimates."
            )
    resized = {
        s: r["resized"] for s, r in per_scanner.items() if r.get("resized", {}).get("n_resized")
    }
    if resized:
        out += robustness_warnings(resized=resized)
    return out


def target_names(
    class_dict: Mapping[int, str] | None, mapping: Mapping[int, int] | None
) -> dict[int, str] | None:
    """Names of the mask classes: the model's names, joined when several map to one.

    Examples:
        >>> target_names({0: "background", 1: "tissue", 2: "nuclei"}, {0: 0, 1: 0, 2: 1})
        {0: 'background + tissue', 1: 'nuclei'}

    """
    if not class_dict:
        return None
    if not mapping:
        return dict(class_dict)
    out: dict[int, list[str]] = defaultdict(list)
    for source, target in sorted(mapping.items()):
        out[int(target)].append(str(class_dict.get(int(source), source)))
    return {k: " + ".join(v) for k, v in out.items()}


def trivial_summary(values: Mapping[str, Sequence[float]]) -> dict[str, Any]:
    """Mean Dice of each constant predictor and the best (``{"best": None}`` when none).

    Examples:
        >>> trivial_summary({"all_background": [0.2, 0.4]})["best"]
        'all_background'

    """
    from tia_scanner_robust.metrics.functional.trivial import (  # noqa: PLC0415
        trivial_segmentation_scores,
    )

    if not values:
        return {"best": None, "best_score": float("nan")}
    return trivial_segmentation_scores({k: list(v) for k, v in values.items()})


# ------------------------------------------------------- from a paired result
def unpaired_from_paired(
    result: EvaluationResult,
    *,
    labels: Mapping[str, Sequence[Any]] | None = None,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int | None = None,
) -> UnpairedResult | None:
    """The unpaired protocol's summary of a paired evaluation that had ground truth.

    Uses the per-sample Dice against masks (``per_sample["gt_dice"]``) of a
    segmentation, or the outputs and labels of a classification (accuracy
    per sample, AUC per scanner), so paired data gets both protocols without
    a second inference.

    Args:
        result: The paired evaluation.
        labels: Classification: scanner -> labels in ``result.sample_ids``
            order (the paired result keeps accuracy, not the labels).
        n_resamples: Bootstrap resamples.
        seed: Seed (default: the evaluation's).

    Returns:
        An :class:`UnpairedResult`, or ``None`` when the evaluation had no
        ground truth.

    Examples:
        >>> from tia_scanner_robust.engines.results import EvaluationResult
        >>> from tia_scanner_robust.metrics.functional import pairwise_consistency
        >>> pc = pairwise_consistency({"A": [0, 1], "B": [0, 0]}, "agreement")
        >>> r = EvaluationResult(
        ...     "segmentation",
        ...     "patch",
        ...     "m",
        ...     ["A", "B"],
        ...     ["x", "y"],
        ...     {"dice": pc},
        ...     "dice",
        ...     per_sample={"gt_dice": {"A": [0.9, 0.7], "B": [0.5, 0.3]}},
        ... )
        >>> u = unpaired_from_paired(r, n_resamples=100)
        >>> round(u.mean, 2), u.worst_scanner
        (0.6, 'B')

    """
    seed = int(result.config.get("seed", 0) if seed is None else seed)
    scanners = list(result.scanners)
    if result.task == "segmentation":
        gt = result.per_sample.get("gt_dice") or {}
        if not all(len(gt.get(s, [])) == len(result.sample_ids) for s in scanners):
            return None
        values = {s: list(gt[s]) for s in scanners}
        metric = "dice"
        per_scanner = {s: {"n_samples": len(values[s])} for s in scanners}
    elif result.task == "classification" and result.outputs:
        metric = "accuracy"
        values, per_scanner = {}, {}
        for s in scanners:
            row = result.per_scanner.get(s, {})
            truth = (labels or {}).get(s)
            if truth is None or any(y is None for y in truth):
                return None
            probs = np.asarray(result.outputs[s])
            values[s] = [
                float(int(np.argmax(p)) == int(y)) for p, y in zip(probs, truth, strict=True)
            ]
            per_scanner[s] = {"n_samples": len(values[s]), "auc": row.get("auc")}
    else:
        return None
    stats = scanner_score_summary(values, n_resamples=n_resamples, seed=seed)
    for s in scanners:
        per_scanner[s]["mean"] = stats["per_scanner"][s]["mean"]
        per_scanner[s]["ci95"] = stats["per_scanner"][s]["ci95"]
        predicted = result.per_scanner.get(s, {}).get("predictions")
        if predicted:
            per_scanner[s]["predictions"] = predicted
    trivial = getattr(result, "trivial", None) or {}
    return UnpairedResult(
        task=result.task,
        metric=metric,
        model=result.model,
        scanners=scanners,
        per_scanner=per_scanner,
        per_sample={
            s: {"sample_ids": list(result.sample_ids), metric: values[s]} for s in scanners
        },
        mean=stats["mean"],
        minimum=stats["minimum"],
        worst_scanner=stats["worst_scanner"],
        ci95={
            "mean": stats["mean_ci95"],
            "minimum": stats["minimum_ci95"],
            "n_resamples": n_resamples,
            "seed": seed,
        },
        trivial=dict(trivial),
        class_dict=result.class_dict,
        config={"protocol": "unpaired (from the paired run)", "metric": metric},
    )
