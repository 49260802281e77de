"""Comparing trained variants: the side-by-side HTML report, tables and figures.

- :class:`VariantEvaluation`: scanner-paired and task Dice of one trained model.
- :func:`write_comparison_report`: ``report.json``, PNG figures and a
  self-contained ``report.html`` (inline CSS, figures as base64 ``data:``
  URIs) with the variants side by side: scanner-pair Dice heatmaps (drawn
  with :func:`tia_scanner_robust.report.figures.plot_pair_matrix`),
  average / minimum paired Dice and task Dice.
- :func:`aggregate_records`: mean and standard deviation over seeds per variant.
- :func:`records_markdown`: the aggregated table as Markdown.
- :func:`plot_variant_bars`, :func:`plot_lambda_sweep`: the experiment figures.

Examples:
    >>> rows = aggregate_records(
    ...     [
    ...         {"label": "A", "paired_dice_avg": 0.8, "paired_dice_min": 0.6, "task_dice": 0.7},
    ...         {"label": "A", "paired_dice_avg": 0.9, "paired_dice_min": 0.7, "task_dice": 0.8},
    ...     ]
    ... )
    >>> (
    ...     rows[0]["n"],
    ...     round(rows[0]["paired_dice_avg_mean"], 3),
    ...     round(rows[0]["paired_dice_avg_std"], 3),
    ... )
    (2, 0.85, 0.05)
    >>> print(records_markdown(rows).splitlines()[2])
    | A | 2 | 85.00 +- 5.00 | 65.00 +- 5.00 | 75.00 +- 5.00 |

"""

from __future__ import annotations

import datetime as dt
import html
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tia_scanner_robust._io import atomic_write_json, atomic_write_text, to_jsonable
from tia_scanner_robust.metrics.functional import PairConsistencyResult
from tia_scanner_robust.report.figures import plot_pair_matrix, save_figure
from tia_scanner_robust.report.html import PAGE_CSS, embed_png, format_cell, html_table
from tia_scanner_robust.report.tables import (
    BANNER_CSS,
    format_interval,
    settings_table,
    warning_banners,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "COMPARISON_VERSION",
    "DEFAULT_NOTE",
    "METRICS",
    "VariantEvaluation",
    "aggregate_records",
    "plot_lambda_sweep",
    "plot_variant_bars",
    "plot_variant_intervals",
    "records_markdown",
    "write_comparison_report",
]

#: Metric key -> column title of the tables.
METRICS: dict[str, str] = {
    "paired_dice_avg": "paired Dice avg",
    "paired_dice_min": "paired Dice min",
    "task_dice": "task Dice (held-out)",
}
COMPARISON_VERSION = 1


# --------------------------------------------------------------------------- results
@dataclass
class VariantEvaluation:
    """Scanner-paired and task Dice of one trained model (what the comparison report shows).

    :func:`tia_scanner_robust.demo.variants.evaluate_variant` makes one from a
    checkpoint; :func:`write_comparison_report` puts several side by side.

    Attributes:
        name: Report label.
        scanners: Scanner order (reference first).
        matrix: ``(S, S)`` paired Dice (NaN diagonal).
        pairs: ``"a|b"`` -> paired Dice.
        n_samples: ``"a|b"`` -> number of held-out tiles of that pair.
        paired_dice_avg: Average paired Dice over the scanner pairs.
        paired_dice_min: Minimum paired Dice over the pairs (worst case).
        min_pair: The worst pair.
        task_dice: Dice against the labels on the held-out reference scans.
        task_dice_per_scanner: The same against each scanner's scans.
        cov: CoV across scanners of the nuclei pixel fraction.
        checkpoint: The evaluated checkpoint.
        checkpoint_sha256: Its hash (cache key).
        eval_seconds: Wall time of the evaluation.
        report_dir: Folder with the evaluator's own report (linked from the
            comparison page; its worst and typical pairs, truth overlays and
            per-specimen distribution are shown).
        average_ci95: 95% bootstrap interval of ``paired_dice_avg`` (when computed).
        minimum_ci95: 95% bootstrap interval of ``paired_dice_min`` (when computed).
        pair_ci95: ``"a|b"`` -> 95% interval of that pair's Dice (when computed).
        warnings: The evaluator's warnings for this model (empty when all is well).
    """

    name: str
    scanners: list[str]
    matrix: list[list[float | None]]
    pairs: dict[str, float | None]
    n_samples: dict[str, int]
    paired_dice_avg: float
    paired_dice_min: float
    min_pair: list[str] | None
    task_dice: float | None
    task_dice_per_scanner: dict[str, float | None]
    cov: float | None
    checkpoint: str
    checkpoint_sha256: str
    eval_seconds: float
    report_dir: str | None = None
    average_ci95: list[float] | None = None
    minimum_ci95: list[float] | None = None
    pair_ci95: dict[str, list[float] | None] | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN written as ``None``)."""
        return to_jsonable(dict(self.__dict__))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VariantEvaluation:
        """Inverse of :meth:`to_dict`."""
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in names})

    def pair_consistency(self) -> PairConsistencyResult:
        """The paired Dice as a pair-consistency result of :mod:`~tia_scanner_robust.metrics`.

        Returns:
            A :class:`~tia_scanner_robust.metrics.functional.PairConsistencyResult`.

        Examples:
            >>> ev = VariantEvaluation(
            ...     "A",
            ...     ["a", "b"],
            ...     [[None, 0.5], [0.5, None]],
            ...     {"a|b": 0.5},
            ...     {"a|b": 3},
            ...     0.5,
            ...     0.5,
            ...     ["a", "b"],
            ...     0.9,
            ...     {"a": 0.9, "b": 0.8},
            ...     None,
            ...     "best.pt",
            ...     "0",
            ...     1.0,
            ... )
            >>> pc = ev.pair_consistency()
            >>> pc.average, pc.n_samples[("a", "b")]
            (0.5, 3)

        """
        matrix = np.array([[np.nan if v is None else float(v) for v in row] for row in self.matrix])
        pairs = {
            tuple(k.split("|", 1)): (np.nan if v is None else float(v))
            for k, v in self.pairs.items()
        }
        counts = {tuple(k.split("|", 1)): int(v) for k, v in self.n_samples.items()}
        return PairConsistencyResult(
            score="dice",
            scanners=list(self.scanners),
            matrix=matrix,
            pairs=pairs,  # type: ignore[arg-type]
            n_samples=counts,  # type: ignore[arg-type]
            per_sample={},
        )


# --------------------------------------------------------------------------- tables
def _mean_std(values: Sequence[float | None]) -> tuple[float, float, int]:
    arr = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    if not arr.size:
        return float("nan"), float("nan"), 0
    return float(arr.mean()), float(arr.std(ddof=0)), int(arr.size)


def aggregate_records(
    records: Sequence[Mapping[str, Any]], metrics: Sequence[str] = tuple(METRICS)
) -> list[dict[str, Any]]:
    """Mean and population standard deviation of each metric over the seeds of each label.

    Args:
        records: Flat dicts with ``"label"`` and the metric keys (e.g. one
            per (variant, seed)); other keys (``"lam"``, ``"config"``) are
            kept from the first record of each label.
        metrics: Metric keys to aggregate.

    Returns:
        One dict per label (order of first appearance) with ``n`` and
        ``<metric>_mean``/``<metric>_std``.

    """
    by_label: dict[str, list[Mapping[str, Any]]] = {}
    for rec in records:
        by_label.setdefault(str(rec["label"]), []).append(rec)
    rows = []
    for label, recs in by_label.items():
        row: dict[str, Any] = {k: v for k, v in recs[0].items() if k not in metrics}
        row["label"] = label
        row["n"] = len(recs)
        for metric in metrics:
            mean, std, _ = _mean_std([r.get(metric) for r in recs])
            row[f"{metric}_mean"], row[f"{metric}_std"] = mean, std
        rows.append(row)
    return rows


def records_markdown(
    rows: Sequence[Mapping[str, Any]],
    metrics: Mapping[str, str] | None = None,
    *,
    percent: bool = True,
) -> str:
    """Aggregated rows as a Markdown table (``mean +- std``, in percent by default)."""
    metrics = dict(metrics or METRICS)
    scale = 100.0 if percent else 1.0
    digits = 2 if percent else 4
    header = ["variant", "seeds", *metrics.values()]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [str(row["label"]), str(row["n"])]
        for key in metrics:
            mean, std = row.get(f"{key}_mean"), row.get(f"{key}_std")
            if mean is None or not math.isfinite(mean):
                cells.append("n/a")
            else:
                cells.append(f"{mean * scale:.{digits}f} +- {std * scale:.{digits}f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- figures
def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure  # noqa: PLC0415 - plotting only

    return Figure(figsize=(width, height), layout="constrained")


def plot_variant_bars(
    rows: Sequence[Mapping[str, Any]],
    path: str | Path,
    *,
    metrics: Mapping[str, str] | None = None,
    title: str = "Variants",
    dpi: int = 120,
) -> Path:
    """Grouped bar chart of aggregated rows (bars: mean, error bars: std).

    Args:
        rows: Output of :func:`aggregate_records`.
        path: PNG destination.
        metrics: Metric key -> legend label (default :data:`METRICS`).
        title: Figure title.
        dpi: Resolution.

    Returns:
        The path written.

    """
    metrics = dict(metrics or METRICS)
    labels = [str(r["label"]) for r in rows]
    fig = _figure(max(6.0, 0.9 * len(labels) + 3.0), 4.2)
    ax = fig.subplots()
    width = 0.8 / max(1, len(metrics))
    x = np.arange(len(labels))
    for i, (key, name) in enumerate(metrics.items()):
        means = np.array([r.get(f"{key}_mean", np.nan) for r in rows], dtype=float)
        stds = np.array([r.get(f"{key}_std", 0.0) for r in rows], dtype=float)
        ax.bar(
            x + (i - (len(metrics) - 1) / 2) * width, means, width, yerr=stds, capsize=3, label=name
        )
    ax.set_xticks(x, labels, rotation=30, ha="right")
    finite = [r.get(f"{k}_mean") for r in rows for k in metrics if r.get(f"{k}_mean") is not None]
    finite = [v for v in finite if math.isfinite(v)]
    low = max(0.0, min(finite) - 0.1) if finite else 0.0
    ax.set_ylim(low, 1.0)
    ax.set_ylabel("Dice")
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title, fontsize=11)
    fig.legend(loc="outside lower center", ncol=len(metrics), fontsize=8)
    return save_figure(fig, path, dpi=dpi)


def plot_lambda_sweep(
    lams: Sequence[float],
    rows: Sequence[Mapping[str, Any]],
    path: str | Path,
    *,
    metrics: Mapping[str, str] | None = None,
    title: str = "SimCons lambda sweep",
    dpi: int = 120,
) -> Path:
    """Metrics against the SimCons weight lambda (mean with a +-std band).

    Args:
        lams: Lambda of each row.
        rows: Aggregated rows (same order as ``lams``).
        path: PNG destination.
        metrics: Metric key -> legend label (default :data:`METRICS`: paired Dice
            average and minimum, task Dice).
        title: Figure title.
        dpi: Resolution.

    Returns:
        The path written.

    """
    metrics = dict(metrics or METRICS)
    order = np.argsort(np.asarray(lams, dtype=float))
    x = np.asarray(lams, dtype=float)[order]
    fig = _figure(6.0, 4.0)
    ax = fig.subplots()
    for key, name in metrics.items():
        mean = np.array([rows[i].get(f"{key}_mean", np.nan) for i in order], dtype=float)
        std = np.array([rows[i].get(f"{key}_std", 0.0) for i in order], dtype=float)
        ax.plot(x, mean, marker="o", label=name)
        ax.fill_between(x, mean - std, mean + std, alpha=0.2)
    ax.set_xlabel("lambda (weight of the consistency loss)")
    ax.set_ylabel("Dice")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=11)
    return save_figure(fig, path, dpi=dpi)


# --------------------------------------------------------------------------- report
#: The report's default note under the summary table.
DEFAULT_NOTE = (
    "Simulated scanners on one bundled image and a small model trained for a few hundred "
    "CPU steps: a demonstration of the pipeline, not a reproduction of the paper."
)


def write_comparison_report(
    evaluations: Mapping[str, VariantEvaluation],
    out_dir: str | Path,
    *,
    settings: Mapping[str, Any] | None = None,
    training: Mapping[str, Mapping[str, Any]] | None = None,
    title: str = "Scanner consistency: baseline vs SimCons",
    note: str | None = None,
    dpi: int = 110,
) -> dict[str, Path]:
    """Write ``report.json``, the figures and a self-contained ``report.html``.

    Args:
        evaluations: Label -> evaluation
            (:class:`VariantEvaluation`).
        out_dir: Destination folder.
        settings: Run settings recorded in the JSON and shown in the page.
        training: Label -> training summary (steps, seconds, best validation Dice).
        title: Page title.
        note: Text of the highlighted note under the summary (default
            :data:`DEFAULT_NOTE`).
        dpi: Figure resolution.

    Returns:
        Dict with ``"json"``, ``"html"`` and one entry per figure.

    Raises:
        ValueError: If ``evaluations`` is empty.

    """
    if not evaluations:
        msg = "evaluations is empty: nothing to compare."
        raise ValueError(msg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = dict(settings or {})
    training = {k: dict(v) for k, v in (training or {}).items()}
    paths: dict[str, Path] = {}
    for label, ev in evaluations.items():
        slug = "".join(c if c.isalnum() else "_" for c in label)
        paths[f"pair_matrix_{label}"] = plot_pair_matrix(
            ev.pair_consistency(),
            out / f"pair_matrix_{slug}.png",
            title=(
                f"{label}: paired Dice avg {ev.paired_dice_avg:.3f}, min {ev.paired_dice_min:.3f}"
            ),
            dpi=dpi,
        )
    rows = [
        {"label": label, **{k: getattr(ev, k) for k in METRICS}, "n": 1}
        for label, ev in evaluations.items()
    ]
    agg = aggregate_records(rows)
    paths["bars"] = plot_variant_bars(
        agg, out / "variants.png", title="Paired and task Dice", dpi=dpi
    )

    warnings = [f"{label}: {w}" for label, ev in evaluations.items() for w in ev.warnings]
    payload = {
        "version": COMPARISON_VERSION,
        "title": title,
        "warnings": warnings,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "settings": settings,
        "variants": {
            label: {
                **ev.to_dict(),
                "paired_dice": {
                    "average": ev.paired_dice_avg,
                    "minimum": ev.paired_dice_min,
                    "min_pair": ev.min_pair,
                },
                "training": training.get(label),
            }
            for label, ev in evaluations.items()
        },
    }
    paths["json"] = atomic_write_json(out / "report.json", to_jsonable(payload), indent=2)

    if any(ev.average_ci95 or ev.minimum_ci95 for ev in evaluations.values()):
        paths["intervals"] = plot_variant_intervals(evaluations, out / "variant_intervals.png")
    best_avg = max(range(len(rows)), key=lambda i: rows[i]["paired_dice_avg"])
    table_rows = []
    for label, ev in evaluations.items():
        tr = training.get(label, {})
        table_rows.append(
            [
                html.escape(label),
                html.escape(str(tr.get("config", ""))),
                format_cell(ev.paired_dice_avg),
                format_cell(ev.paired_dice_min),
                html.escape(" vs ".join(ev.min_pair or [])),
                format_cell(ev.task_dice),
                format_cell(ev.cov),
                format_cell(tr.get("best_metric")),
                format_cell(tr.get("global_step")),
                format_cell(tr.get("train_seconds"), 1),
                html.escape(str(ev.checkpoint)),
            ]
        )
    summary = html_table(
        [
            "variant",
            "config",
            "paired Dice avg",
            "paired Dice min",
            "worst pair",
            "task Dice (held-out)",
            "CoV across scanners",
            "val Dice (best epoch)",
            "steps",
            "train s",
            "checkpoint",
        ],
        table_rows,
        {best_avg},
        row_class="best",
    )
    scanners = next(iter(evaluations.values())).scanners
    per_scanner = html_table(
        ["variant", *scanners],
        [
            [html.escape(label), *[format_cell(ev.task_dice_per_scanner.get(s)) for s in scanners]]
            for label, ev in evaluations.items()
        ],
    )
    heatmaps = "".join(
        embed_png(
            paths[f"pair_matrix_{label}"],
            f"{label} ({ev.checkpoint}): scanner-pair Dice (red box: worst pair)",
        )
        for label, ev in evaluations.items()
    )
    examples = _gallery_html(evaluations)
    links = "".join(
        f'<li><a href="{html.escape(_relative_link(ev.report_dir, out), quote=True)}">'
        f"{html.escape(label)}</a>: report of <code>{html.escape(str(ev.checkpoint))}</code></li>"
        for label, ev in evaluations.items()
        if ev.report_dir
    )
    intervals = _intervals_html(evaluations, paths.get("intervals"))
    settings_html = settings_table(settings)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><style>{PAGE_CSS}{BANNER_CSS}</style></head>
<body><main>
<h1>{html.escape(title)}</h1>
{warning_banners(warnings)}
<p class="meta">tia_scanner_robust comparison report, {html.escape(payload["created"])}.
Paired Dice: Dice between the label maps predicted on two scanners' scans of the same
held-out tile (foreground classes), averaged over the tiles of each scanner pair; the
average and the minimum over the pairs are reported (SCORPION protocol). Task Dice:
against the labels on the held-out reference scans. Inference runs through TIAToolbox's
<code>SemanticSegmentor.run()</code>.</p>
<h2>Summary</h2>
{summary}
<div class="note">{html.escape(DEFAULT_NOTE if note is None else note)}</div>
<h2>Scanner-pair Dice</h2>
<div class="side">{heatmaps}</div>
{intervals}
{examples}
<h2>Paired and task Dice</h2>
{embed_png(paths["bars"], "Average and minimum paired Dice, task Dice")}
<h2>Task Dice per scanner</h2>
<p class="meta">Dice against the labels on every scanner's scans of the held-out tiles.</p>
{per_scanner}
<h2>Per-model reports</h2>
<ul>{links or "<li>none</li>"}</ul>
<h2>Settings</h2>
{settings_html}
</main></body></html>
"""
    paths["html"] = atomic_write_text(out / "report.html", page)
    return paths


# --------------------------------------------------------------------------- page pieces
def _relative_link(report_dir: str | Path, out: Path) -> str:
    """``report_dir/report.html`` relative to the comparison page (POSIX separators)."""
    target = Path(report_dir).resolve() / "report.html"
    try:
        return Path(os.path.relpath(target, out.resolve())).as_posix()
    except ValueError:  # another drive (Windows)
        return target.as_uri()


def _report_figure(ev: VariantEvaluation, *names: str) -> Path | None:
    """The first of ``names`` present in the variant's own report folder."""
    if not ev.report_dir:
        return None
    for name in names:
        path = Path(ev.report_dir) / name
        if path.is_file():
            return path
    return None


def _gallery_html(evaluations: Mapping[str, VariantEvaluation]) -> str:
    """Per variant: the worst pair beside a typical pair, prediction against truth, distribution."""
    blocks = []
    for label, ev in evaluations.items():
        rows = [
            [
                (
                    _report_figure(ev, "example_worst_pair_0.png"),
                    f"{label}: worst pair, worst tile",
                ),
                (
                    _report_figure(ev, "example_typical_pair_0.png"),
                    f"{label}: worst pair, typical tile",
                ),
            ],
            [
                (
                    _report_figure(ev, "truth_worst_pair_0.png"),
                    f"{label}: worst tile, prediction against the ground truth",
                ),
                (
                    _report_figure(ev, "truth_typical_pair_0.png"),
                    f"{label}: typical tile, prediction against the ground truth",
                ),
            ],
            [
                (
                    _report_figure(ev, "pair_distribution_dice.png"),
                    f"{label}: paired Dice of every tile per scanner pair",
                )
            ],
        ]
        shown = "".join(
            '<div class="side">'
            + "".join(embed_png(path, caption) for path, caption in row if path is not None)
            + "</div>"
            for row in rows
            if any(path is not None for path, _ in row)
        )
        if shown:
            blocks.append(f"<h3>{html.escape(label)}</h3>{shown}")
    if not blocks:
        return ""
    return "<h2>Typical and worst tiles</h2>" + "".join(blocks)


def _intervals_html(evaluations: Mapping[str, VariantEvaluation], figure: Path | None) -> str:
    """Paired Dice with 95% intervals, and whether the variants' intervals overlap."""
    if figure is None:
        return ""
    rows = [
        [
            html.escape(label),
            format_interval(ev.paired_dice_avg, ev.average_ci95),
            format_interval(ev.paired_dice_min, ev.minimum_ci95),
        ]
        for label, ev in evaluations.items()
    ]
    known = [(k, ev.average_ci95) for k, ev in evaluations.items() if ev.average_ci95]
    verdict = ""
    if len(known) >= 2:
        best = max(known, key=lambda kv: evaluations[kv[0]].paired_dice_avg)
        overlapping = [k for k, ci in known if k != best[0] and ci[1] >= best[1][0]]
        verdict = (
            f"The 95% interval of {best[0]}'s average paired Dice overlaps those of "
            f"{', '.join(overlapping)}: that difference is within the uncertainty."
            if overlapping
            else f"{best[0]}'s average paired Dice interval lies above every other variant's."
        )
    note = f'<div class="note">{html.escape(verdict)}</div>' if verdict else ""
    return (
        "<h2>Uncertainty (95% bootstrap over tiles)</h2>"
        + html_table(["variant", "paired Dice avg [95% CI]", "paired Dice min [95% CI]"], rows)
        + note
        + embed_png(figure, "average and minimum paired Dice with their 95% intervals")
    )


def plot_variant_intervals(
    evaluations: Mapping[str, VariantEvaluation], path: str | Path, *, dpi: int = 110
) -> Path:
    """Average and minimum paired Dice per variant with their 95% intervals as error bars.

    Args:
        evaluations: Label -> evaluation (intervals drawn where present).
        path: PNG destination.
        dpi: Resolution.

    Returns:
        The path written.

    """
    labels = list(evaluations)
    fig = _figure(max(5.5, 1.2 * len(labels) + 2.5), 3.8)
    ax = fig.subplots()
    x = np.arange(len(labels))
    for offset, key, ci_key, name in (
        (-0.12, "paired_dice_avg", "average_ci95", "average"),
        (0.12, "paired_dice_min", "minimum_ci95", "minimum"),
    ):
        values = np.array([getattr(evaluations[k], key) for k in labels], dtype=float)
        low, high = [], []
        for k, v in zip(labels, values, strict=True):
            ci = getattr(evaluations[k], ci_key) or [v, v]
            low.append(max(0.0, v - float(ci[0])))
            high.append(max(0.0, float(ci[1]) - v))
        ax.errorbar(x + offset, values, yerr=[low, high], fmt="o", capsize=4, label=name)
    ax.set_xticks(x, labels, rotation=25, ha="right")
    ax.set_ylabel("paired Dice")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Paired Dice with 95% bootstrap intervals", fontsize=10)
    return save_figure(fig, path, dpi=dpi)
