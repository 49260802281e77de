"""The unpaired protocol's figures and HTML section (shared by its own and the paired report).

- :func:`unpaired_figures`: the per-scanner score distribution (points, box,
  mean with its 95% interval, trivial predictor) and the typical and worst
  sample per scanner (prediction against truth, or a captioned gallery);
- :func:`unpaired_section`: cards, the per-scanner table (worst scanner
  highlighted, class names from the model) and those figures.

:func:`~tia_scanner_robust.report.unpaired.write_unpaired_report` makes a
page of them; :func:`~tia_scanner_robust.report.html.write_report` adds them
to a paired report when the data had ground truth.

Examples:
    >>> from tia_scanner_robust.engines.unpaired_results import UnpairedResult
    >>> result = UnpairedResult(
    ...     "segmentation",
    ...     "dice",
    ...     "m",
    ...     ["A"],
    ...     {"A": {"n_samples": 1, "mean": 0.5}},
    ...     {"A": {"sample_ids": ["a"], "dice": [0.5]}},
    ...     0.5,
    ...     0.5,
    ...     "A",
    ... )
    >>> "Per scanner" in unpaired_section(result, {})
    True

"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tia_scanner_robust.report.distributions import (
    plot_gallery,
    plot_scanner_scores,
    plot_truth_overlays,
)
from tia_scanner_robust.report.tables import embed_png, format_interval, html_table

if TYPE_CHECKING:
    from collections.abc import Mapping

    from tia_scanner_robust.engines.unpaired_results import UnpairedResult

__all__ = ["unpaired_figures", "unpaired_section"]

_METRIC_NAMES = {"dice": "Dice", "accuracy": "accuracy"}


def _metric_name(result: UnpairedResult) -> str:
    return _METRIC_NAMES.get(result.metric, result.metric)


def unpaired_figures(
    result: UnpairedResult, out_dir: str | Path, *, dpi: int = 110
) -> dict[str, Path]:
    """Write the unpaired protocol's figures into ``out_dir``.

    Returns:
        ``{"unpaired_scores": ..., "unpaired_examples": ...}`` (the second
        only when the result kept examples).

    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "unpaired_scores": plot_scanner_scores(
            {s: result.per_sample[s][result.metric] for s in result.scanners},
            out / "unpaired_scores.png",
            metric=_metric_name(result),
            ci95={s: result.per_scanner.get(s, {}).get("ci95") for s in result.scanners},
            trivial={
                s: (result.per_scanner.get(s, {}).get("trivial") or {}).get("best_score")
                for s in result.scanners
            },
            dpi=dpi,
        )
    }
    examples = result.examples
    if examples and all(e.prediction is not None and e.truth is not None for e in examples):
        rows = [
            {
                "image": e.image,
                "prediction": e.prediction,
                "truth": e.truth,
                "title": f"{e.scanner} ({e.kind})\n{e.sample_id}, Dice {e.score:.3f}",
            }
            for e in examples
        ]
        paths["unpaired_examples"] = plot_truth_overlays(
            rows,
            out / "unpaired_examples.png",
            class_names=_legend_names(result),
        )
    elif examples:
        paths["unpaired_examples"] = plot_gallery(
            [e.image for e in examples],
            [e.caption or f"{e.scanner} {e.kind}" for e in examples],
            out / "unpaired_examples.png",
        )
    return paths


def _legend_names(result: UnpairedResult) -> dict[int, str] | None:
    """Overlay legend: the mask value and the model's classes predicted as it."""
    names = result.target_names
    if not names:
        return result.class_dict
    return {int(k): f"mask {k} / predicted {v}" for k, v in names.items()}


def _fractions_text(row: Mapping[str, Any], names: Mapping[int, str] | None) -> str:
    predictions = row.get("predictions") or {}
    fractions = predictions.get("class_pixel_fractions") or predictions.get("class_histogram")
    if not fractions:
        return "n/a"
    total = sum(float(v) for v in fractions.values()) or 1.0
    parts = []
    for key, value in fractions.items():
        if not float(value):
            continue
        name = (names or {}).get(int(key), f"class {key}")
        share = float(value) / total
        parts.append(f"{name} {share:.0%}" if share >= 0.01 else f"{name} <1%")
    return ", ".join(parts) or "n/a"


def _scanner_rows(result: UnpairedResult) -> tuple[list[str], list[list[str]], set[int]]:
    name = _metric_name(result)
    header = ["scanner", "samples", f"{name} (mean [95% CI])", "trivial predictor"]
    classification = result.task == "classification"
    if classification:
        header.insert(3, "AUC")
    header.append("what the model predicted")
    has_trivial = any((r.get("trivial") or {}).get("best") for r in result.per_scanner.values())
    if not has_trivial:
        header.remove("trivial predictor")
    rows, worst = [], set()
    for i, scanner in enumerate(result.scanners):
        row = result.per_scanner.get(scanner, {})
        trivial = row.get("trivial") or {}
        best = trivial.get("best")
        score = trivial.get("best_score")
        trivial_text = (
            f"{best} {score:.3f}" if best and score is not None and math.isfinite(score) else "n/a"
        )
        cells = [
            html.escape(scanner),
            str(
                row.get("n_samples", len(result.per_sample.get(scanner, {}).get("sample_ids", [])))
            ),
            format_interval(row.get("mean"), row.get("ci95")),
            html.escape(trivial_text.replace("_", " ")),
        ]
        if classification:
            auc = row.get("auc")
            cells.insert(3, "n/a" if auc is None else f"{auc:.3f}")
        cells.append(html.escape(_fractions_text(row, result.class_dict)))
        if not has_trivial:  # e.g. from a paired run: only the pooled trivial score (a card)
            del cells[-2]
        rows.append(cells)
        if scanner == result.worst_scanner:
            worst.add(i)
    return header, rows, worst


def _cards(result: UnpairedResult) -> str:
    name = _metric_name(result)
    trivial = result.trivial or {}
    cards = [
        (
            f"mean {name} over scanners",
            format_interval(result.mean, result.ci95.get("mean")),
            "95% bootstrap interval",
            False,
        ),
        (
            f"worst scanner {name}",
            format_interval(result.minimum, result.ci95.get("minimum")),
            f"worst scanner: {html.escape(str(result.worst_scanner))}",
            True,
        ),
    ]
    if trivial.get("best"):
        cards.append(
            (
                "trivial predictor",
                format_interval(trivial.get("best_score"), None),
                html.escape(str(trivial["best"]).replace("_", " ")),
                False,
            )
        )
    cards.append(("data", f"{len(result.scanners)} scanners", f"{result.n_samples} samples", False))
    return "".join(
        f'<div class="card{" bad" if bad else ""}"><div class="label">{html.escape(label)}</div>'
        f'<div class="value" style="font-size:1.25em">{value}</div>'
        f'<div class="sub">{sub}</div></div>'
        for label, value, sub, bad in cards
    )


def unpaired_section(
    result: UnpairedResult, figure_paths: Mapping[str, Path], *, heading: str = "h2"
) -> str:
    """The HTML of the unpaired protocol (cards, per-scanner table, figures).

    Args:
        result: The unpaired result.
        figure_paths: From :func:`unpaired_figures`.
        heading: Tag of the section's headings (``"h2"`` alone, ``"h3"`` inside another report).

    Returns:
        The HTML fragment.

    """
    name = _metric_name(result)
    header, rows, worst = _scanner_rows(result)
    parts = [
        f'<div class="cards">{_cards(result)}</div>',
        '<div class="note">'
        + html.escape(
            f"Domain-generalisation protocol: the {name} of each scanner's own samples against "
            "their ground truth, averaged per scanner; the mean and the minimum (worst scanner) "
            "over scanners. Intervals: 95% bootstrap over the samples within each scanner "
            f"({result.ci95.get('n_resamples', 'n/a')} resamples). A model is only useful on a "
            "scanner where it beats the trivial predictor."
        )
        + "</div>",
        f"<{heading}>Per scanner (worst highlighted)</{heading}>",
        html_table(header, rows, worst),
    ]
    if "unpaired_scores" in figure_paths:
        parts.append(
            embed_png(
                figure_paths["unpaired_scores"],
                f"{name} of every sample per scanner; red: mean and 95% interval",
                max_width=820,
            )
        )
    if "unpaired_examples" in figure_paths:
        parts.append(f"<{heading}>Typical and worst sample per scanner</{heading}>")
        parts.append(
            embed_png(
                figure_paths["unpaired_examples"],
                "typical: score closest to the scanner's median; worst: lowest score",
            )
        )
    return "\n".join(parts)
