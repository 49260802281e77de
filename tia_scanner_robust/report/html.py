"""``report.json`` and a self-contained ``report.html`` from an evaluation.

:func:`write_report` writes, into one folder:

- ``report.json``: every number of the
  :class:`~tia_scanner_robust.engines.results.EvaluationResult`
  (configuration, per pair, per scanner, per sample, average / minimum / worst
  pair, CoV, task metrics, versions, timings) plus the paired-analysis
  summary, as strict JSON (NaN written as ``null``);
- the figures as PNG files (pair-matrix heatmap, per-scanner values,
  worst-pair examples, paired/unpaired RGB and feature analysis);
- ``report.html``: one file with inline CSS and the same PNGs embedded as
  base64 ``data:`` URIs, so it opens anywhere (no network, no side files).

Every file is written atomically.

Examples:
    >>> import tempfile, pathlib
    >>> from tia_scanner_robust.engines.results import EvaluationResult
    >>> from tia_scanner_robust.metrics.functional import pairwise_consistency
    >>> pc = pairwise_consistency({"A": [0, 1, 1], "B": [0, 1, 0], "C": [1, 1, 0]}, "agreement")
    >>> result = EvaluationResult(
    ...     "classification",
    ...     "patch",
    ...     "demo",
    ...     ["A", "B", "C"],
    ...     ["x", "y", "z"],
    ...     {"agreement": pc},
    ...     "agreement",
    ... )
    >>> paths = write_report(result, pathlib.Path(tempfile.mkdtemp()))
    >>> sorted(p.name for p in paths.values())[:3]
    ['pair_distribution_agreement.png', 'pair_matrix_agreement.png', 'report.html']
    >>> "http://" in paths["html"].read_text()
    False

"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tia_scanner_robust._io import atomic_write_text, to_jsonable
from tia_scanner_robust.report import figures
from tia_scanner_robust.report.distributions import plot_pair_distribution, plot_truth_overlays
from tia_scanner_robust.report.tables import (
    BANNER_CSS,
    embed_png,
    format_cell,
    html_table,
    warning_banners,
)
from tia_scanner_robust.report.unpaired_section import unpaired_figures, unpaired_section

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tia_scanner_robust.engines.results import EvaluationResult
    from tia_scanner_robust.engines.unpaired_results import UnpairedResult

__all__ = [
    "PAGE_CSS",
    "REPORT_VERSION",
    "embed_png",
    "format_cell",
    "html_page",
    "html_table",
    "render_html",
    "report_folder",
    "write_report",
    "write_report_json",
]

#: Version of the report.json layout.
REPORT_VERSION = 1

#: The stylesheet of every HTML page of the package (evaluation and comparison reports).
PAGE_CSS = """
body { font-family: -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif;
       color: #1d2330; background: #f4f6f9; margin: 0; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 48px; background: #fff; }
h1 { font-size: 1.6em; margin: 0 0 4px; }
h2 { font-size: 1.25em; margin: 34px 0 10px; padding-bottom: 4px;
     border-bottom: 2px solid #e3e7ee; }
h3 { font-size: 1.05em; margin: 18px 0 8px; }
p.meta { color: #5b6475; margin: 0 0 18px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 14px 0; }
.card { flex: 1 1 180px; border: 1px solid #e3e7ee; border-radius: 8px; padding: 12px 14px;
        background: #fafbfd; }
.card .label { font-size: 0.8em; color: #5b6475; text-transform: uppercase; letter-spacing: .04em; }
.card .value { font-size: 1.6em; font-weight: 600; margin-top: 4px; }
.card .sub { font-size: 0.85em; color: #5b6475; }
.card.bad { border-color: #e8a0a0; background: #fff4f4; }
table { border-collapse: collapse; width: 100%; margin: 8px 0 14px; font-size: 0.92em; }
th, td { border-bottom: 1px solid #e3e7ee; padding: 6px 8px; text-align: right; }
th { background: #eef1f6; font-weight: 600; }
th:first-child, td:first-child { text-align: left; }
tr:nth-child(even) td { background: #fafbfd; }
tr.worst td { background: #ffe3e3; font-weight: 600; }
tr.best td { background: #e8f5e9; font-weight: 600; }
.figure { margin: 10px 0 18px; text-align: center; }
.figure img { max-width: 100%; border: 1px solid #e3e7ee; border-radius: 6px; }
.figure .caption { font-size: 0.88em; color: #5b6475; margin-top: 4px; }
.side { display: flex; flex-wrap: wrap; gap: 14px; }
.side > div { flex: 1 1 360px; }
.note { font-size: 0.9em; color: #414a5c; background: #f3f6fb; border-left: 4px solid #7c93c3;
        padding: 8px 12px; margin: 10px 0; }
details { margin: 8px 0; }
summary { cursor: pointer; font-weight: 600; }
pre { background: #f3f5f8; padding: 10px; overflow-x: auto; font-size: 0.82em; }
"""

_SCORE_TEXT = {
    "dice": "paired Dice between the two scanners' predicted label maps (per class, "
    "averaged over the classes present in either map)",
    "agreement": "fraction of specimens whose predicted class is the same on both scanners",
    "abs_prob": "mean absolute difference of the predicted class probabilities "
    "(total variation; lower is better)",
    "cosine": "cosine similarity of the two scanners' embeddings of the same specimen",
}


def _card(label: str, value: str, sub: str = "", *, bad: bool = False) -> str:
    cls = "card bad" if bad else "card"
    sub_html = f'<div class="sub">{sub}</div>' if sub else ""
    return (
        f'<div class="{cls}"><div class="label">{html.escape(label)}</div>'
        f'<div class="value">{value}</div>{sub_html}</div>'
    )


def _pairs_table(result: EvaluationResult) -> str:
    primary = result.primary_result
    others = [n for n in result.consistency if n != result.primary]
    pairs = list(primary.pairs)
    sign = 1.0 if primary.higher_is_better else -1.0
    pairs.sort(key=lambda p: sign * (primary.pairs[p] if math.isfinite(primary.pairs[p]) else 1e9))
    worst = primary.worst_pair
    header = ["scanner pair", result.primary, "samples", *others]
    rows, highlight = [], set()
    for i, pair in enumerate(pairs):
        if pair == worst:
            highlight.add(i)
        rows.append(
            [
                html.escape(f"{pair[0]} vs {pair[1]}"),
                format_cell(primary.pairs[pair]),
                format_cell(primary.n_samples.get(pair)),
                *[format_cell(result.consistency[n].pairs.get(pair)) for n in others],
            ]
        )
    return html_table(header, rows, highlight)


def _pretty(result: EvaluationResult, key: str) -> str:
    """Readable column names: ``mean_fraction_2`` -> ``nuclei fraction`` etc."""
    names = result.class_dict or {}
    if key.startswith("mean_fraction_"):
        index = int(key.rsplit("_", 1)[1])
        return f"{names.get(index, f'class {index}')} fraction"
    labels = {
        "mean_cov_fraction": "CoV quantity (mean)",
        "mean_positive_probability": "positive-class probability (mean)",
        "mean_gt_dice": "Dice vs ground truth",
        "inference_seconds": "inference (s)",
        "accuracy": "accuracy vs labels",
        "auc": "AUC vs labels",
        "mean_feature_norm": "feature norm (mean)",
        "feature_dim": "feature dim",
    }
    return labels.get(key, key.replace("_", " "))


def _model_has_class(result: EvaluationResult, key: str) -> bool:
    """``mean_fraction_<k>`` columns only for the model's named classes and predicted ones.

    A WSI evaluation of a model without a class dictionary counts up to 256
    label values; the table keeps the classes the model names and those it
    predicted somewhere.
    """
    if not key.startswith("mean_fraction_"):
        return True
    index = int(key.rsplit("_", 1)[1])
    if index in {int(k) for k in result.class_dict or {}}:
        return True
    values = [row.get(key) for row in result.per_scanner.values()]
    return any(v is not None and math.isfinite(v) and v > 0 for v in values)


def _scanner_table(result: EvaluationResult) -> str:
    primary = result.primary_result
    matrix = np.asarray(primary.matrix, dtype=np.float64)
    worst = set(primary.worst_pair or ())
    keys: list[str] = []
    for row in result.per_scanner.values():
        for key in row:
            if (
                key not in keys
                and not key.startswith("n_")
                and not isinstance(row[key], (list, dict))
            ):
                keys.append(key)
    keys = [
        k
        for k in keys
        if not isinstance(next(iter(result.per_scanner.values())).get(k), np.ndarray)
        and _model_has_class(result, k)
    ]
    header = ["scanner", f"mean {result.primary} vs others", *[_pretty(result, k) for k in keys]]
    rows, highlight = [], set()
    for i, scanner in enumerate(result.scanners):
        row = result.per_scanner.get(scanner, {})
        others = np.delete(matrix[i], i) if matrix.shape[0] > 1 else np.array([])
        mean_vs = float(np.nanmean(others)) if np.isfinite(others).any() else float("nan")
        if scanner in worst:
            highlight.add(i)
        label = html.escape(scanner) + (" (reference)" if i == 0 else "")
        rows.append([label, format_cell(mean_vs), *[format_cell(row.get(k)) for k in keys]])
    return html_table(header, rows, highlight)


def _cov_html(result: EvaluationResult) -> str:
    parts = []
    quantity = result.config.get("cov_quantity") or "prediction"
    for name, cov in (("scanners", result.cov), ("magnifications", result.magnification_cov)):
        if cov is None:
            continue
        excluded = ", ".join(
            f"{html.escape(str(e['specimen_id']))} ({html.escape(str(e['reason']))})"
            for e in cov.excluded[:10]
        )
        more = f" and {len(cov.excluded) - 10} more" if len(cov.excluded) > 10 else ""
        parts.append(
            html_table(
                ["CoV across", "CoV", "mean sigma", "specimens used", "excluded"],
                [
                    [
                        html.escape(name),
                        format_cell(cov.cov),
                        format_cell(cov.mean_sigma),
                        format_cell(cov.n_used),
                        (excluded + more) or "none",
                    ]
                ],
            )
        )
    if not parts:
        return ""
    return (
        '<div class="note">CoV = (1/N) &sum;<sub>n</sub> &sigma;<sub>n</sub> / |&mu;<sub>n</sub>| '
        "over specimens n, with &mu;<sub>n</sub> and &sigma;<sub>n</sub> the mean and population "
        f"standard deviation of the specimen's {html.escape(quantity)} across scanners "
        "(ScanGen Eq. 1). Lower is better; specimens with |&mu;| below eps are excluded.</div>"
        + "".join(parts)
    )


def render_html(
    result: EvaluationResult,
    figure_paths: dict[str, Path],
    *,
    title: str | None = None,
    analysis: dict[str, Any] | None = None,
    unpaired: UnpairedResult | None = None,
) -> str:
    """Build the self-contained HTML page (figures embedded as data URIs).

    Args:
        result: The evaluation result.
        figure_paths: Figure key -> PNG path (see :func:`write_report`).
        title: Page title.
        analysis: The paired-analysis summary (from
            :func:`~tia_scanner_robust.metrics.analysis.deviation_summary`).
        unpaired: The unpaired protocol's result on the same data (a section
            of its own: per-scanner performance against ground truth).

    Returns:
        The HTML text.

    """
    primary = result.primary_result
    title = title or f"Scanner consistency report: {_model_label(result)}"
    worst = primary.worst_pair
    worst_text = html.escape(" vs ".join(worst)) if worst else "n/a"
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    cards = [
        _card(f"average {result.primary}", format_cell(primary.average, 3), "over scanner pairs"),
        _card(
            f"worst-pair {result.primary}",
            format_cell(primary.worst, 3),
            f"pair: {worst_text}",
            bad=True,
        ),
    ]
    if result.cov is not None:
        cards.append(
            _card(
                "CoV across scanners",
                format_cell(result.cov.cov, 3),
                f"{result.cov.n_used} specimens",
            )
        )
    cards.append(
        _card("data", f"{len(result.scanners)} x {len(result.sample_ids)}", "scanners x specimens")
    )
    sections = [
        f"<h1>{html.escape(title)}</h1>",
        (
            f'<p class="meta">task <b>{html.escape(result.task)}</b> '
            f"({html.escape(result.mode)} mode, "
            f"engine {html.escape(str(result.config.get('engine', '')))}) &middot; model "
            f"<b>{html.escape(_model_label(result))}</b> &middot; reference scanner "
            f"<b>{html.escape(result.scanners[0])}</b> &middot; {when}</p>"
        ),
        warning_banners(getattr(result, "warnings", None) or []),
        f'<div class="cards">{"".join(cards)}</div>',
        '<div class="note">'
        + html.escape(
            f"{result.primary}: {_SCORE_TEXT.get(result.primary, result.primary)}. "
            "Every unordered scanner pair is scored per specimen and averaged over specimens; "
            "the report gives the average and the worst pair (the case a patient could meet)."
        )
        + "</div>",
        "<h2>Scanner-pair matrix</h2>",
    ]
    if "pair_matrix" in figure_paths:
        sections.append(
            embed_png(
                figure_paths["pair_matrix"],
                f"{result.primary} per scanner pair; worst pair outlined in red",
                max_width=720,
            )
        )
    for name in result.consistency:
        key = f"pair_matrix_{name}"
        if name != result.primary and key in figure_paths:
            sections.append(f"<h3>{html.escape(name)}</h3>")
            sections.append(embed_png(figure_paths[key], f"{name} per scanner pair", max_width=720))
    sections += ["<h2>Scanner pairs (worst first)</h2>", _pairs_table(result)]
    sections += _extra_figures(result, figure_paths)
    sections += ["<h2>Per scanner</h2>", _scanner_table(result)]
    cov_html = _cov_html(result)
    if cov_html or "per_scanner" in figure_paths:
        sections.append("<h2>Prediction variability across scanners (CoV)</h2>")
        sections.append(cov_html)
        if "per_scanner" in figure_paths:
            sections.append(
                embed_png(
                    figure_paths["per_scanner"],
                    "one line per specimen: flat lines mean a scanner-robust model",
                )
            )
    sections += _example_sections(result, figure_paths)
    analysis_keys = [k for k in ("rgb_analysis", "feature_analysis") if k in figure_paths]
    if analysis_keys:
        sections.append("<h2>Paired versus unpaired analysis</h2>")
        sections.append(
            '<div class="note">Unpaired: every specimen of every scanner as it is. Paired: the '
            "reference scanner's value for the same specimen is subtracted, so the reference "
            "sits at (0, 0) and what remains is the shift each scanner causes "
            "(SCORPION, section 2.2).</div>"
        )
        for key in analysis_keys:
            sections.append(embed_png(figure_paths[key], key.replace("_", " ")))
        if analysis and analysis.get("rgb"):
            rows = [
                [
                    html.escape(s),
                    format_cell(v.get("centroid_shift"), 2),
                    format_cell(v.get("paired_mean_norm"), 2),
                ]
                for s, v in analysis["rgb"]["scanners"].items()
            ]
            sections.append(
                html_table(
                    ["scanner", "unpaired centroid shift (RGB stats)", "mean paired deviation"],
                    rows,
                )
            )
    sections += _unpaired_sections(unpaired, figure_paths)
    details = {
        "Configuration": result.config,
        "Timings (seconds)": result.timings,
        "Versions": result.versions,
    }
    sections.append("<h2>Run details</h2>")
    for label, payload in details.items():
        text = json.dumps(to_jsonable(payload), indent=2, allow_nan=False)
        sections.append(
            f"<details><summary>{html.escape(label)}</summary><pre>{html.escape(text)}</pre></details>"
        )
    sections.append(
        '<p class="meta">Every number is in report.json next to this file; '
        "figures are embedded in this page and also saved as PNG files.</p>"
    )
    return html_page(title, sections)


def html_page(title: str, sections: Sequence[str]) -> str:
    """A self-contained HTML page: ``title``, the package stylesheet and ``sections``.

    Args:
        title: Page title (escaped).
        sections: HTML fragments, joined by newlines inside ``<main>``.

    Returns:
        The page text.

    Examples:
        >>> page = html_page("A & B", ["<h1>Hi</h1>"])
        >>> "<title>A &amp; B</title>" in page, page.rstrip().endswith("</html>")
        (True, True)

    """
    body = "\n".join(sections)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{PAGE_CSS}{BANNER_CSS}</style>\n</head>\n"
        f"<body><main>\n{body}\n</main></body>\n</html>\n"
    )


def report_folder(out_dir: str | Path | None, recorded: str | Path | None) -> Path:
    """The report's folder (``out_dir``, else the one the result records), created.

    Args:
        out_dir: The folder asked for, or ``None``.
        recorded: The result's own ``out_dir``.

    Returns:
        The folder.

    Raises:
        ValueError: If both are ``None``.

    Examples:
        >>> report_folder(None, None)
        Traceback (most recent call last):
        ...
        ValueError: out_dir is required: the result does not record an output folder.

    """
    if out_dir is None:
        if recorded is None:
            msg = "out_dir is required: the result does not record an output folder."
            raise ValueError(msg)
        out_dir = recorded
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_report_json(out_dir: Path, report: dict[str, Any]) -> Path:
    """Write ``report`` as strict JSON (no NaN) to ``out_dir / "report.json"``, atomically.

    Args:
        out_dir: The report's folder.
        report: The report (converted with :func:`~tia_scanner_robust._io.to_jsonable`).

    Returns:
        The file written.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     print(write_report_json(Path(tmp), {"a": (1, 2)}).read_text().split())
        ['{', '"a":', '[', '1,', '2', ']', '}']

    """
    text = json.dumps(to_jsonable(report), indent=2, allow_nan=False) + "\n"
    return atomic_write_text(out_dir / "report.json", text)


def _example_figures(
    result: EvaluationResult, out_dir: Path, figure_paths: dict[str, Path]
) -> None:
    """Worst and typical pairs (``example_<kind>_pair_<k>.png``), with truth overlays.

    Figure keys: ``example_<k>`` / ``truth_<k>`` for the worst pairs,
    ``typical_<k>`` / ``typical_truth_<k>`` for the typical ones.
    """
    for kind, prefix, examples in (
        ("worst", "", result.examples),
        ("typical", "typical_", getattr(result, "typical_examples", [])),
    ):
        for k, example in enumerate(examples):
            key = f"{prefix}{k}" if prefix else f"example_{k}"
            figure_paths[key] = figures.plot_example_pair(
                example, out_dir / f"example_{kind}_pair_{k}.png", class_dict=result.class_dict
            )
            truths = getattr(example, "truths", None)
            mapped = getattr(example, "truth_predictions", None)
            if truths is None or mapped is None:
                continue
            rows = [
                {
                    "image": image,
                    "truth": truth,
                    "prediction": pred,
                    "title": f"{scanner} ({kind})\n{example.specimen_id}",
                }
                for scanner, image, truth, pred in zip(
                    example.scanners, example.images, truths, mapped, strict=True
                )
            ]
            figure_paths[f"{prefix}truth_{k}"] = plot_truth_overlays(
                rows,
                out_dir / f"truth_{kind}_pair_{k}.png",
                class_names=_mask_names(result, truths),
            )


def _mask_names(result: EvaluationResult, truths: Sequence[np.ndarray]) -> dict[int, str]:
    """Legend names of mask values: the model's class names mapped through ``target_map``."""
    from tia_scanner_robust.engines.unpaired_results import target_names  # noqa: PLC0415

    top = max(int(np.max(t, initial=0)) for t in truths)
    names = result.class_dict or {}
    mapping = result.config.get("target_map")
    if mapping is None and result.model == "builtin" and top <= 1:
        mapping = {0: 0, 1: 0, 2: 1}  # the evaluator's default for the builtin model
    if mapping:
        mapped = target_names(names, {int(k): int(v) for k, v in mapping.items()}) or {}
        return {k: f"mask {k} / predicted {v}" for k, v in mapped.items()}
    return {k: names.get(k, f"mask value {k}") for k in range(top + 1)}


def _example_sections(result: EvaluationResult, figure_paths: dict[str, Path]) -> list[str]:
    """The worst pair's examples and the typical ones, each beside its truth overlay."""
    out: list[str] = []
    for prefix, heading, caption, examples in (
        (
            "",
            "Worst pair: example predictions",
            "the same specimen scanned by the two scanners of the worst pair (lowest score)",
            result.examples,
        ),
        (
            "typical_",
            "Typical specimen on the worst pair",
            "a specimen whose score on the worst pair is closest to the median",
            getattr(result, "typical_examples", []),
        ),
    ):
        keys = [
            k
            for k in range(len(examples))
            if (f"{prefix}{k}" if prefix else f"example_{k}") in figure_paths
        ]
        if not keys:
            continue
        out.append(f"<h2>{html.escape(heading)}</h2>")
        for k in keys:
            out.append(
                embed_png(figure_paths[f"{prefix}{k}" if prefix else f"example_{k}"], caption)
            )
            if f"{prefix}truth_{k}" in figure_paths:
                out.append(
                    embed_png(
                        figure_paths[f"{prefix}truth_{k}"], "prediction against the ground truth"
                    )
                )
    return out


def _extra_figures(result: EvaluationResult, figure_paths: dict[str, Path]) -> list[str]:
    """The per-specimen distribution of the pair scores, with their intervals."""
    if "pair_distribution" not in figure_paths:
        return []
    caption = (
        f"{result.primary} of every specimen per scanner pair, worst pair first; red: the pair "
        "score and its 95% bootstrap interval (when computed)"
    )
    return [embed_png(figure_paths["pair_distribution"], caption, max_width=1000)]


def _unpaired_sections(unpaired: UnpairedResult | None, figure_paths: dict[str, Path]) -> list[str]:
    """The unpaired protocol's section of a paired report (both protocols in one report)."""
    if unpaired is None:
        return []
    return [
        "<h2>Per-scanner performance against ground truth (unpaired protocol)</h2>",
        unpaired_section(unpaired, figure_paths, heading="h3"),
    ]


def _model_label(result: EvaluationResult) -> str:
    """The model as the user named it: a checkpoint's path, not only ``checkpoint:best.pt``.

    Examples:
        >>> from types import SimpleNamespace
        >>> _model_label(
        ...     SimpleNamespace(model="checkpoint:best.pt", config={"model": "runs/a/best.pt"})
        ... )
        'runs/a/best.pt'

    """
    spec = str(result.config.get("model") or "")
    if spec and spec != result.model and str(result.model).startswith("checkpoint:"):
        return spec
    return str(result.model)


def _primary_scalar_values(result: EvaluationResult) -> tuple[str, dict[str, list[float]]] | None:
    for key, label in (
        ("cov_fraction", result.config.get("cov_quantity") or "fraction"),
        ("positive_probability", result.config.get("cov_quantity") or "probability"),
    ):
        values = result.per_sample.get(key)
        if values and all(len(values.get(s, [])) for s in result.scanners):
            return str(label), {s: values[s] for s in result.scanners}
    return None


def write_report(
    result: EvaluationResult,
    out_dir: str | Path | None = None,
    *,
    title: str | None = None,
    analysis: bool = True,
    projection: str = "umap",
    dpi: int = 120,
    unpaired: UnpairedResult | None = None,
) -> dict[str, Path]:
    """Write ``report.json``, the PNG figures and ``report.html`` into ``out_dir``.

    Args:
        result: What :meth:`ScannerConsistencyEvaluator.evaluate` returned.
        out_dir: Destination folder (default: ``result.out_dir``).
        title: Report title.
        analysis: Also draw the paired/unpaired analysis (RGB statistics, and
            features for embedding tasks) with
            :func:`~tia_scanner_robust.metrics.analysis.plot_paired_unpaired`.
        projection: Feature projection of that analysis (``"umap"`` or ``"pca"``).
        dpi: Figure resolution.
        unpaired: The unpaired protocol's result on the same data (from
            :func:`~tia_scanner_robust.engines.unpaired.unpaired_from_paired`):
            both protocols in one report (``report.json`` key
            ``"domain_generalisation"``).

    Returns:
        Dict with ``"json"``, ``"html"`` and one entry per figure.

    Raises:
        ValueError: If no folder is given and the result has none.

    """
    out_dir = report_folder(out_dir, result.out_dir)
    figure_paths: dict[str, Path] = {}

    primary = result.primary_result
    figure_paths["pair_matrix"] = figures.plot_pair_matrix(
        primary, out_dir / f"pair_matrix_{result.primary}.png", dpi=dpi
    )
    for name, pc in result.consistency.items():
        # one heatmap per score; of the top-k family only top-1 (the rest is in the table)
        if name != result.primary and not (name.startswith("top") and name != "top1"):
            figure_paths[f"pair_matrix_{name}"] = figures.plot_pair_matrix(
                pc, out_dir / f"pair_matrix_{name}.png", dpi=dpi
            )
    figure_paths["pair_distribution"] = plot_pair_distribution(
        primary, out_dir / f"pair_distribution_{result.primary}.png", dpi=dpi
    )
    scalar = _primary_scalar_values(result)
    if scalar is not None:
        label, values = scalar
        figure_paths["per_scanner"] = figures.plot_per_scanner(
            values, out_dir / "per_scanner.png", ylabel=label, sample_ids=result.sample_ids, dpi=dpi
        )
    _example_figures(result, out_dir, figure_paths)
    analysis_summary: dict[str, Any] = {}
    if analysis:
        analysis_summary = _analysis(result, out_dir, figure_paths, projection=projection)

    report = result.to_dict()
    report["report_version"] = REPORT_VERSION
    report["analysis"] = analysis_summary or None
    if unpaired is not None:
        figure_paths.update(unpaired_figures(unpaired, out_dir, dpi=dpi))
        report["domain_generalisation"] = unpaired.to_dict()
    report["figures"] = {k: p.name for k, p in figure_paths.items()}
    json_path = write_report_json(out_dir, report)
    html_text = render_html(
        result, figure_paths, title=title, analysis=analysis_summary, unpaired=unpaired
    )
    html_path = atomic_write_text(out_dir / "report.html", html_text)
    return {"json": json_path, "html": html_path, **figure_paths}


def _analysis(
    result: EvaluationResult,
    out_dir: Path,
    figure_paths: dict[str, Path],
    *,
    projection: str,
) -> dict[str, Any]:
    """Paired/unpaired figures and their numbers (skipped when there is too little data)."""
    from tia_scanner_robust.metrics.analysis import (  # noqa: PLC0415
        deviation_summary,
        plot_paired_unpaired,
    )

    summary: dict[str, Any] = {}
    stats = result.rgb_stats
    if stats and len(stats) == len(result.scanners):
        stats = {s: stats[s] for s in result.scanners}
        summary["rgb"] = deviation_summary(stats)
        (path,) = plot_paired_unpaired(out_dir, stats_by_scanner=stats)
        figure_paths["rgb_analysis"] = path
    if result.task == "embedding" and result.outputs:
        feats = {s: result.outputs[s] for s in result.scanners}
        if all(np.isfinite(v).all() for v in feats.values()) and len(result.sample_ids) >= 3:
            full = deviation_summary(feats)
            summary["features"] = {
                "reference": full["reference"],
                "scanners": {
                    scanner: {k: v[k] for k in ("centroid_shift", "paired_mean_norm")}
                    for scanner, v in full["scanners"].items()
                },
            }
            (path,) = plot_paired_unpaired(
                out_dir,
                features_by_scanner=feats,
                projection=projection,
                seed=result.config.get("seed", 0),
            )
            figure_paths["feature_analysis"] = path
    return summary
