"""The unpaired (domain-generalisation) protocol in ``report.json`` and ``report.html``.

- :func:`write_unpaired_report`: the report of an unpaired evaluation alone
  (``report.json``, PNG figures, a self-contained ``report.html`` in the
  style of the paired report: warning banners above the headline, cards with
  95% intervals, a table per scanner, the per-sample distribution, typical and
  worst samples with prediction against truth);
- :func:`unpaired_figures` and :func:`unpaired_section`: the same figures and
  HTML section, which :func:`~tia_scanner_robust.report.html.write_report`
  adds to a paired report when paired data has ground truth (both protocols
  in one report).

Examples:
    >>> import tempfile, pathlib
    >>> from tia_scanner_robust.engines.unpaired_results import UnpairedResult
    >>> result = UnpairedResult(
    ...     "segmentation",
    ...     "dice",
    ...     "m",
    ...     ["A", "B"],
    ...     {"A": {"n_samples": 2, "mean": 0.85}, "B": {"n_samples": 2, "mean": 0.45}},
    ...     {
    ...         "A": {"sample_ids": ["a", "b"], "dice": [0.8, 0.9]},
    ...         "B": {"sample_ids": ["c", "d"], "dice": [0.4, 0.5]},
    ...     },
    ...     0.65,
    ...     0.45,
    ...     "B",
    ...     warnings=["Scanner B has only 2 scored sample(s)."],
    ... )
    >>> paths = write_unpaired_report(result, pathlib.Path(tempfile.mkdtemp()))
    >>> page = paths["html"].read_text()
    >>> "Scanner B has only 2" in page and "worst scanner" in page
    True

"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tia_scanner_robust._io import atomic_write_text, to_jsonable
from tia_scanner_robust.report.distributions import (
    plot_gallery,
    plot_scanner_scores,
    plot_truth_overlays,
)
from tia_scanner_robust.report.html import PAGE_CSS, REPORT_VERSION, embed_png, html_table
from tia_scanner_robust.report.tables import (
    BANNER_CSS,
    format_interval,
    settings_table,
    warning_banners,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from tia_scanner_robust.engines.unpaired_results import UnpairedResult

__all__ = ["unpaired_figures", "unpaired_section", "write_unpaired_report"]

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


def write_unpaired_report(
    result: UnpairedResult,
    out_dir: str | Path | None = None,
    *,
    title: str | None = None,
    dpi: int = 110,
) -> dict[str, Path]:
    """Write ``report.json``, the figures and ``report.html`` of an unpaired evaluation.

    Args:
        result: What
            :meth:`~tia_scanner_robust.engines.unpaired.UnpairedEvaluator.evaluate` returned.
        out_dir: Destination folder (default: ``result.out_dir``).
        title: Page title.
        dpi: Figure resolution.

    Returns:
        ``{"json", "html", <figure keys>}``.

    Raises:
        ValueError: If no folder is given and the result has none.

    """
    if out_dir is None:
        if result.out_dir is None:
            msg = "out_dir is required: the result does not record an output folder."
            raise ValueError(msg)
        out_dir = result.out_dir
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = unpaired_figures(result, out, dpi=dpi)
    report = result.to_dict() | {
        "report_version": REPORT_VERSION,
        "figures": {k: p.name for k, p in figures.items()},
    }
    json_path = atomic_write_text(
        out / "report.json", json.dumps(to_jsonable(report), indent=2, allow_nan=False) + "\n"
    )
    title = title or f"Per-scanner performance (unpaired protocol): {result.model}"
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = [
        f"<h1>{html.escape(title)}</h1>",
        (
            f'<p class="meta">task <b>{html.escape(result.task)}</b> &middot; protocol '
            f"<b>unpaired</b> (different tissue per scanner) &middot; model "
            f"<b>{html.escape(str(result.config.get('model', result.model)))}</b> &middot; "
            f"{when}</p>"
        ),
        warning_banners(result.warnings),
        unpaired_section(result, figures),
        "<h2>Run details</h2>",
        "<details><summary>Settings</summary>"
        + settings_table({k: v for k, v in result.config.items() if k != "model_config"})
        + "</details>",
        "<details><summary>Timings (seconds)</summary>"
        + settings_table(result.timings)
        + "</details>",
        "<details><summary>Versions</summary>" + settings_table(result.versions) + "</details>",
        '<p class="meta">Every number is in report.json next to this file.</p>',
    ]
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{PAGE_CSS}{BANNER_CSS}</style>\n</head>\n"
        "<body><main>\n" + "\n".join(body) + "\n</main></body>\n</html>\n"
    )
    html_path = atomic_write_text(out / "report.html", page)
    return {"json": json_path, "html": html_path, **figures}
