"""Result types of the scanner-consistency evaluator.

- :class:`EvaluationResult`: every number an evaluation measured (pair
  scores, CoV, per-scanner and per-sample values, timings, versions), with
  :meth:`~EvaluationResult.to_dict` for strict JSON;
- :class:`ExamplePair`: one specimen seen by two scanners, for the report;
- :func:`sample_id`: the id of a pairing unit.

:mod:`tia_scanner_robust.report` turns an :class:`EvaluationResult` into
``report.json`` and ``report.html``.

Examples:
    >>> sample_id("s/1", "20x")
    's/1@20x'

"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tia_scanner_robust._io import to_jsonable

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np

    from tia_scanner_robust.metrics.functional import CoVResult, PairConsistency

__all__ = ["EvaluationResult", "ExamplePair", "sample_id"]


def sample_id(specimen_id: str, magnification: str | None) -> str:
    """The id of a pairing unit in results: ``specimen`` or ``specimen@magnification``.

    Examples:
        >>> sample_id("slide_1/sample_2", None), sample_id("s/1", "20x")
        ('slide_1/sample_2', 's/1@20x')

    """
    return specimen_id if magnification is None else f"{specimen_id}@{magnification}"


@dataclass
class ExamplePair:
    """One specimen seen by two scanners, with the model's outputs (for the report).

    Attributes:
        specimen_id: The sample id.
        scanners: The two scanners.
        images: Their RGB uint8 images (downsampled to at most 384 px).
        predictions: Their label maps (segmentation) resized like the images,
            else ``None``.
        score: The pair score of this specimen.
        score_name: Name of that score (``"dice"``...).
        captions: One line per scanner (e.g. class fractions or probabilities).
        kind: ``"worst"`` (lowest pair score) or ``"typical"`` (closest to the median).
        truths: Segmentation with masks: the two ground-truth masks (like the
            images), else ``None``.
        truth_predictions: The two predictions mapped to the masks' classes
            (``target_map``), for prediction-against-truth overlays.
    """

    specimen_id: str
    scanners: tuple[str, str]
    images: tuple[np.ndarray, np.ndarray]
    predictions: tuple[np.ndarray | None, np.ndarray | None]
    score: float
    score_name: str
    captions: tuple[str, str] = ("", "")
    kind: str = "worst"
    truths: tuple[np.ndarray, np.ndarray] | None = None
    truth_predictions: tuple[np.ndarray, np.ndarray] | None = None


@dataclass
class EvaluationResult:
    """Everything an evaluation measured.

    Attributes:
        task: ``"segmentation"``, ``"classification"`` or ``"embedding"``.
        mode: ``"patch"`` or ``"wsi"``.
        model: Short description of the model.
        scanners: Scanner names (canonical order; the first is the reference).
        sample_ids: Pairing units in order (``specimen`` or ``specimen@mag``).
        consistency: Pair-score name -> :class:`PairConsistency` (matrix, pairs,
            per-sample values, average, minimum and worst pair).
        primary: Name of the headline score (see
            :data:`~tia_scanner_robust.engines.tasks.PRIMARY_SCORE`).
        cov: CoV across scanners of a per-specimen scalar (classification:
            positive-class probability; segmentation: fraction of pixels in
            ``cov_class``); ``None`` for embeddings.
        magnification_cov: CoV across magnifications of the same scanner, when
            the collection has several magnifications.
        per_scanner: Scanner -> summary numbers (task metrics against ground
            truth when labels/masks exist, means, inference time).
        per_sample: Quantity -> scanner -> per-sample values aligned with
            ``sample_ids`` (NaN where undefined).
        class_dict: The model's class names, if known.
        config: The evaluator's settings.
        timings: Seconds spent per stage and per scanner.
        versions: Package versions.
        prediction_paths: Scanner -> saved predictions (zarr), if kept.
        examples: Worst-pair examples for the report (not serialised).
        typical_examples: Specimens of the worst pair whose score is closest
            to the median, for the report's gallery (not serialised).
        rgb_stats: Scanner -> ``(N, 6)`` mean and std of R, G, B per sample.
        outputs: Scanner -> ``(N, ...)`` per-sample outputs for small outputs
            (classification probabilities, embeddings); ``None`` for
            segmentation (saved as zarr instead).
        out_dir: Where the evaluation wrote its files.
        warnings: Plain sentences on why the numbers may not mean "robust"
            (constant or empty predictions, empty-vs-empty pairs, few
            specimens, resized inputs, no better than trivial); empty when all
            is well (:func:`~tia_scanner_robust.metrics.diagnostics.robustness_warnings`).
        trivial: Where ground truth exists, the trivial predictors' scores
            (all-background / all-foreground Dice, majority-class accuracy).
    """

    task: str
    mode: str
    model: str
    scanners: list[str]
    sample_ids: list[str]
    consistency: dict[str, PairConsistency]
    primary: str
    cov: CoVResult | None = None
    magnification_cov: CoVResult | None = None
    per_scanner: dict[str, dict[str, Any]] = field(default_factory=dict)
    per_sample: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    class_dict: dict[int, str] | None = None
    config: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    prediction_paths: dict[str, str] = field(default_factory=dict)
    examples: list[ExamplePair] = field(default_factory=list, repr=False)
    typical_examples: list[ExamplePair] = field(default_factory=list, repr=False)
    rgb_stats: dict[str, np.ndarray] | None = field(default=None, repr=False)
    outputs: dict[str, np.ndarray] | None = field(default=None, repr=False)
    out_dir: Path | None = None
    warnings: list[str] = field(default_factory=list)
    trivial: dict[str, Any] | None = None

    @property
    def primary_result(self) -> PairConsistency:
        """The :class:`PairConsistency` of the headline score."""
        return self.consistency[self.primary]

    @property
    def average(self) -> float:
        """Average of the headline score over scanner pairs."""
        return self.primary_result.average

    @property
    def minimum(self) -> float:
        """Minimum of the headline score over scanner pairs."""
        return self.primary_result.minimum

    @property
    def min_pair(self) -> tuple[str, str] | None:
        """The scanner pair with the lowest headline score."""
        return self.primary_result.min_pair

    @property
    def worst_pair(self) -> tuple[str, str] | None:
        """The worst pair of the headline score (lowest, or highest for a distance)."""
        return self.primary_result.worst_pair

    def summary(self) -> str:
        """A few human-readable lines: average/minimum score and the worst pair.

        Examples:
            >>> from tia_scanner_robust.metrics.functional import pairwise_consistency
            >>> pc = pairwise_consistency({"A": [0, 1], "B": [0, 0]}, "agreement")
            >>> r = EvaluationResult(
            ...     "classification",
            ...     "patch",
            ...     "m",
            ...     ["A", "B"],
            ...     ["x", "y"],
            ...     {"agreement": pc},
            ...     "agreement",
            ... )
            >>> print(r.summary())
            task classification (patch mode), model m, 2 scanners x 2 specimens
            agreement: average 0.5000, minimum 0.5000, worst pair A vs B

        """
        pc = self.primary_result
        worst = " vs ".join(pc.worst_pair) if pc.worst_pair else "n/a"
        lines = [
            (
                f"task {self.task} ({self.mode} mode), model {self.model}, "
                f"{len(self.scanners)} scanners x {len(self.sample_ids)} specimens"
            ),
            (
                f"{self.primary}: average {pc.average:.4f}, minimum {pc.minimum:.4f}, "
                f"worst pair {worst}"
            ),
        ]
        if self.cov is not None and not math.isnan(self.cov.cov):
            lines.append(
                f"CoV across scanners ({self.config.get('cov_quantity', 'prediction')}): "
                f"{self.cov.cov:.4f} over {self.cov.n_used} specimens"
            )
        lines += [f"WARNING: {line}" for line in self.warnings]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Every number as strict JSON (NaN -> ``None``; pair keys ``"a|b"``)."""
        pc = self.primary_result
        out: dict[str, Any] = {
            "task": self.task,
            "mode": self.mode,
            "model": self.model,
            "scanners": self.scanners,
            "reference_scanner": self.scanners[0],
            "n_specimens": len(self.sample_ids),
            "sample_ids": self.sample_ids,
            "primary_score": self.primary,
            "summary": {
                "average": pc.average,
                "minimum": pc.minimum,
                "min_pair": list(pc.min_pair) if pc.min_pair else None,
                "worst": pc.worst,
                "worst_pair": list(pc.worst_pair) if pc.worst_pair else None,
                "higher_is_better": pc.higher_is_better,
                "cov": None if self.cov is None else self.cov.cov,
                "average_ci95": (pc.ci95 or {}).get("average"),
                "minimum_ci95": (pc.ci95 or {}).get("minimum"),
                "worst_ci95": (pc.ci95 or {}).get("worst"),
                "cov_ci95": None if self.cov is None else self.cov.ci95,
                "empty_pairs": pc.empty_pairs,
                "n_empty_pairs": pc.n_empty_total if pc.empty_pairs is not None else None,
            },
            "warnings": list(self.warnings),
            "trivial": self.trivial,
            "consistency": {name: res.to_dict() for name, res in self.consistency.items()},
            "cov": None if self.cov is None else self.cov.to_dict(),
            "magnification_cov": None
            if self.magnification_cov is None
            else self.magnification_cov.to_dict(),
            "per_scanner": self.per_scanner,
            "per_sample": self.per_sample,
            "class_dict": self.class_dict,
            "rgb_stats": None
            if self.rgb_stats is None
            else {
                "columns": ["mean_R", "mean_G", "mean_B", "std_R", "std_G", "std_B"],
                "values": self.rgb_stats,
            },
            "examples": [
                {
                    "specimen_id": ex.specimen_id,
                    "scanners": list(ex.scanners),
                    "score": ex.score,
                    "score_name": ex.score_name,
                    "captions": list(ex.captions),
                    "kind": ex.kind,
                }
                for ex in [*self.examples, *self.typical_examples]
            ],
            "prediction_paths": self.prediction_paths,
            "config": self.config,
            "timings": self.timings,
            "versions": self.versions,
            "out_dir": self.out_dir,
        }
        return to_jsonable(out)
