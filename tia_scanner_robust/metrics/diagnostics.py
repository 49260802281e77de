"""Warnings that keep a scanner-consistency report from claiming a false "robust".

:func:`robustness_warnings` looks at what an evaluation measured and returns
plain sentences (an empty list when all is well) for every situation in which
a high consistency or a low CoV does not mean what it seems:

- constant predictions on a scanner (one class everywhere, identical
  embeddings), or mostly empty label maps (no foreground);
- most scanner-pair comparisons empty-vs-empty (Dice of two empty maps says
  nothing);
- consistency measured on fewer than ``min_specimens`` specimens;
- a CoV over fewer than ``min_specimens`` specimens, or with specimens
  excluded by its zero-mean guard;
- inputs resized before inference (the model saw another resolution);
- task performance against ground truth no better than a trivial predictor
  ("consistent but no better than trivial").

The evaluator stores the list as ``report.json``'s top-level ``warnings`` and
the HTML report shows each one as a banner above the headline.

Examples:
    >>> summary = {"A": {"n_samples": 12, "constant": True, "classes_predicted": [0]}}
    >>> for line in robustness_warnings(predictions=summary, n_specimens=12):
    ...     print(line)
    Constant predictions on scanner A: every output is class 0 on all 12 samples; ...

"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Mapping

    from tia_scanner_robust.metrics.functional.cov import CoVResult
    from tia_scanner_robust.metrics.functional.pairwise import PairConsistencyResult

__all__ = ["MIN_SPECIMENS", "robustness_warnings"]

#: Fewer specimens than this make consistency and CoV estimates unstable.
MIN_SPECIMENS = 10


def _class_label(value: Any, class_names: Mapping[int, str] | None) -> str:
    name = (class_names or {}).get(int(value)) if str(value).lstrip("-").isdigit() else None
    return f"class {value} ({name})" if name else f"class {value}"


def _prediction_warnings(
    predictions: Mapping[str, Mapping[str, Any]],
    class_names: Mapping[int, str] | None,
    empty_majority: float,
) -> list[str]:
    out = []
    constant: dict[tuple[str, int], list[str]] = {}
    for scanner, row in predictions.items():
        n = int(row.get("n_samples", 0) or 0)
        if n == 0:
            continue
        if row.get("constant"):
            classes = row.get("classes_predicted")
            if classes:
                what = f"every output is {_class_label(classes[0], class_names)}"
            else:
                what = "every embedding is the same vector"
            constant.setdefault((what, n), []).append(str(scanner))
            continue
        n_empty = int(row.get("n_empty", 0) or 0)
        if n_empty and n_empty / n > empty_majority:
            out.append(
                f"Mostly empty predictions on scanner {scanner}: {n_empty} of {n} label maps "
                f"({n_empty / n:.0%}) hold no foreground (background only)."
            )
    for (what, n), scanners in constant.items():
        where = (
            f"scanner {scanners[0]}" if len(scanners) == 1 else f"scanners {', '.join(scanners)}"
        )
        out.insert(
            0,
            f"Constant predictions on {where}: {what} on all {n} samples; "
            "agreement between constant outputs says nothing about robustness.",
        )
    return out


def _consistency_warnings(
    consistency: PairConsistencyResult, n_specimens: int | None, min_specimens: int
) -> list[str]:
    out = []
    fraction = consistency.empty_fraction if consistency.empty_pairs is not None else 0.0
    if consistency.empty_pairs is not None and fraction > 0.5:
        total = sum(len(v) for v in consistency.per_sample.values())
        policy = consistency.empty_pairs
        effect = {
            "exclude": "they are left out of the pair scores",
            "nan": "the pair scores that contain them are NaN",
            "one": "they count as Dice 1 (empty_pairs='one'), inflating the scores",
        }[policy]
        out.append(
            f"Most scanner-pair comparisons are empty-vs-empty: {consistency.n_empty_total} of "
            f"{total} ({fraction:.0%}) have no foreground in either map; {effect}."
        )
    if consistency.pairs and all(np.isnan(v) for v in consistency.pairs.values()):
        out.append(
            f"Paired {consistency.score} is undefined (NaN) for every scanner pair: no sample "
            "left to compare."
        )
    if n_specimens is not None and n_specimens < min_specimens:
        out.append(
            f"Consistency is measured on only {n_specimens} specimen(s) (fewer than "
            f"{min_specimens}): treat the pair scores as anecdotal and read their intervals."
        )
    return out


def _cov_warnings(cov: CoVResult, min_specimens: int) -> list[str]:
    out = []
    if cov.n_used < min_specimens:
        out.append(
            f"CoV is computed over only {cov.n_used} specimen(s) of {cov.n_total} (fewer than "
            f"{min_specimens}): it is not a stable estimate."
        )
    n_eps = cov.n_eps_excluded
    if n_eps:
        out.append(
            f"CoV excludes {n_eps} specimen(s) by its zero-mean guard (|mean| < {cov.eps:g}): "
            "the model predicts (almost) none of the CoV quantity on them."
        )
    return out


def _resize_warnings(resized: Mapping[str, Mapping[str, Any]]) -> list[str]:
    out = []
    for scanner, row in resized.items():
        n = int(row.get("n_resized", 0) or 0)
        if not n:
            continue
        sizes = row.get("from") or []
        target = row.get("to")
        detail = ""
        if sizes and target:
            shown = ", ".join("x".join(map(str, s)) for s in list(sizes)[:3])
            detail = f" from {shown} to {'x'.join(map(str, target))} px"
        of = f" of {row['n_images']}" if row.get("n_images") else ""
        out.append(
            f"Inputs resized on scanner {scanner}: {n}{of} image(s){detail} before inference; "
            "the model saw another resolution than the scan's (see input_resolution)."
        )
    return out


def _trivial_warnings(
    consistency: PairConsistencyResult | None,
    task_scores: Mapping[str, float],
    task_metric: str,
    trivial: Mapping[str, Any],
) -> list[str]:
    best = trivial.get("best")
    best_score = trivial.get("best_score")
    if best is None or best_score is None or np.isnan(best_score):
        return []
    worse = {s: v for s, v in task_scores.items() if v is not None and not np.isnan(v)}
    worse = {s: v for s, v in worse.items() if v <= best_score}
    if not worse:
        return []
    listed = ", ".join(f"{s} {v:.3f}" for s, v in worse.items())
    head = "No better than trivial"
    if consistency is not None and consistency.higher_is_better:
        average = consistency.average
        if not np.isnan(average) and average >= 0.8:  # "consistent" threshold
            head = (
                f"Consistent but no better than trivial: paired {consistency.score} average "
                f"{average:.3f}, but"
            )
        else:
            head += ":"
    else:
        head += ":"
    line = (
        f"{head} {task_metric} against ground truth ({listed}) is no better than "
        f"the trivial predictor {best} ({best_score:.3f})."
    )
    return [line]


def robustness_warnings(
    *,
    consistency: PairConsistencyResult | None = None,
    cov: CoVResult | None = None,
    predictions: Mapping[str, Mapping[str, Any]] | None = None,
    n_specimens: int | None = None,
    resized: Mapping[str, Mapping[str, Any]] | None = None,
    task_scores: Mapping[str, float] | None = None,
    task_metric: str = "Dice",
    trivial: Mapping[str, Any] | None = None,
    class_names: Mapping[int, str] | None = None,
    min_specimens: int = MIN_SPECIMENS,
    empty_majority: float = 0.5,
) -> list[str]:
    """Plain-sentence warnings about a consistency measurement (empty: all is well).

    Args:
        consistency: The headline pair-consistency result.
        cov: The CoV across scanners, if computed.
        predictions: Scanner -> summary from
            :meth:`~tia_scanner_robust.metrics.summaries.PredictionSummary.compute`.
        n_specimens: Number of specimens compared.
        resized: Scanner -> ``{"n_resized", "n_images", "from": [shapes], "to": shape}``.
        task_scores: Scanner -> task performance against ground truth.
        task_metric: Name of that performance (``"Dice"``, ``"accuracy"``).
        trivial: Trivial predictors' scores with ``"best"`` and ``"best_score"``
            (e.g. :func:`~tia_scanner_robust.metrics.functional.trivial_segmentation_scores`).
        class_names: Class index -> name, for the messages.
        min_specimens: Below this many specimens, consistency and CoV warn.
        empty_majority: A scanner with more than this fraction of empty maps warns.

    Returns:
        A list of strings.

    Examples:
        >>> import numpy as np
        >>> from tia_scanner_robust.metrics.functional import pairwise_consistency
        >>> maps = np.ones((12, 4, 4), int)
        >>> res = pairwise_consistency({"A": maps, "B": maps})
        >>> robustness_warnings(consistency=res, n_specimens=12)
        []
        >>> robustness_warnings(
        ...     consistency=res,
        ...     task_scores={"A": 0.40, "B": 0.41},
        ...     trivial={"best": "all_background", "best_score": 0.45},
        ... )  # doctest: +ELLIPSIS
        ['Consistent but no better than trivial: paired dice average 1.000, but Dice ...']

    """
    out: list[str] = []
    if predictions:
        out += _prediction_warnings(predictions, class_names, empty_majority)
    if consistency is not None:
        out += _consistency_warnings(consistency, n_specimens, min_specimens)
    elif n_specimens is not None and n_specimens < min_specimens:
        out.append(f"Consistency is measured on only {n_specimens} specimen(s).")
    if cov is not None:
        out += _cov_warnings(cov, min_specimens)
    if resized:
        out += _resize_warnings(resized)
    if task_scores and trivial:
        out += _trivial_warnings(consistency, task_scores, task_metric, trivial)
    return out
