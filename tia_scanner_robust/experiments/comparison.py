"""Comparing trained variants: the side-by-side HTML report, tables and figures.

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

import base64
import datetime as dt
import html
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tia_scanner_robust._io import atomic_write_json, atomic_write_text

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from tia_scanner_robust.experiments.simcons_demo import VariantEvaluation

__all__ = [
    "METRICS",
    "aggregate_records",
    "plot_lambda_sweep",
    "plot_variant_bars",
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

_CSS = """
body { font-family: -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif;
       color: #1d2330; background: #f4f6f9; margin: 0; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 48px; background: #fff; }
h1 { font-size: 1.6em; margin: 0 0 4px; }
h2 { font-size: 1.25em; margin: 30px 0 10px; padding-bottom: 4px;
     border-bottom: 2px solid #e3e7ee; }
p.meta { color: #5b6475; margin: 0 0 18px; }
table { border-collapse: collapse; width: 100%; margin: 8px 0 14px; font-size: 0.92em; }
th, td { border-bottom: 1px solid #e3e7ee; padding: 6px 8px; text-align: right; }
th { background: #eef1f6; }
th:first-child, td:first-child { text-align: left; }
tr.best td { background: #e8f5e9; font-weight: 600; }
.side { display: flex; flex-wrap: wrap; gap: 14px; }
.side > div { flex: 1 1 360px; text-align: center; }
.side img, .figure img { max-width: 100%; border: 1px solid #e3e7ee; border-radius: 6px; }
.caption { font-size: 0.88em; color: #5b6475; margin-top: 4px; }
.note { font-size: 0.9em; background: #f3f6fb; border-left: 4px solid #7c93c3; padding: 8px 12px; }
pre { background: #f3f5f8; padding: 10px; overflow-x: auto; font-size: 0.82em; }
"""


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
    from tia_scanner_robust.report.figures import save_figure  # noqa: PLC0415

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
    from tia_scanner_robust.report.figures import save_figure  # noqa: PLC0415

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
def _embed(path: Path, caption: str = "") -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    cap = f'<div class="caption">{html.escape(caption)}</div>' if caption else ""
    alt = html.escape(caption or Path(path).stem)
    return f'<div><img alt="{alt}" src="data:image/png;base64,{data}">{cap}</div>'


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _table(
    header: Sequence[str], rows: Sequence[Sequence[str]], best: set[int] | None = None
) -> str:
    best = best or set()
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        ("<tr class='best'>" if i in best else "<tr>")
        + "".join(f"<td>{c}</td>" for c in row)
        + "</tr>"
        for i, row in enumerate(rows)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


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
            (:class:`~tia_scanner_robust.experiments.simcons_demo.VariantEvaluation`).
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
    from tia_scanner_robust.metrics.functional import to_jsonable  # noqa: PLC0415
    from tia_scanner_robust.report.figures import plot_pair_matrix  # noqa: PLC0415

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

    payload = {
        "version": COMPARISON_VERSION,
        "title": title,
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

    best_avg = max(range(len(rows)), key=lambda i: rows[i]["paired_dice_avg"])
    table_rows = []
    for label, ev in evaluations.items():
        tr = training.get(label, {})
        table_rows.append(
            [
                html.escape(label),
                html.escape(str(tr.get("config", ""))),
                _fmt(ev.paired_dice_avg),
                _fmt(ev.paired_dice_min),
                html.escape(" vs ".join(ev.min_pair or [])),
                _fmt(ev.task_dice),
                _fmt(tr.get("best_metric")),
                _fmt(tr.get("global_step")),
                _fmt(tr.get("train_seconds"), 1),
            ]
        )
    summary = _table(
        [
            "variant",
            "config",
            "paired Dice avg",
            "paired Dice min",
            "worst pair",
            "task Dice (held-out)",
            "val Dice (best epoch)",
            "steps",
            "train s",
        ],
        table_rows,
        best={best_avg},
    )
    scanners = next(iter(evaluations.values())).scanners
    per_scanner = _table(
        ["variant", *scanners],
        [
            [html.escape(label), *[_fmt(ev.task_dice_per_scanner.get(s)) for s in scanners]]
            for label, ev in evaluations.items()
        ],
    )
    heatmaps = "".join(
        _embed(paths[f"pair_matrix_{label}"], f"{label}: scanner-pair Dice (red box: worst pair)")
        for label in evaluations
    )
    examples = "".join(
        _embed(Path(ev.report_dir) / "example_worst_pair_0.png", f"{label}: worst pair, worst tile")
        for label, ev in evaluations.items()
        if ev.report_dir and (Path(ev.report_dir) / "example_worst_pair_0.png").is_file()
    )
    links = "".join(
        f"<li>{html.escape(label)}: <code>{html.escape(str(ev.report_dir))}/report.html</code></li>"
        for label, ev in evaluations.items()
        if ev.report_dir
    )
    settings_json = html.escape(json.dumps(to_jsonable(settings), indent=2, sort_keys=True))
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><style>{_CSS}</style></head>
<body><main>
<h1>{html.escape(title)}</h1>
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
{"<h2>Worst scanner pair, worst tile</h2>" if examples else ""}
{f'<div class="side">{examples}</div>' if examples else ""}
<h2>Paired and task Dice</h2>
<div class="figure">{_embed(paths["bars"], "Average and minimum paired Dice, task Dice")}</div>
<h2>Task Dice per scanner</h2>
<p class="meta">Dice against the labels on every scanner's scans of the held-out tiles.</p>
{per_scanner}
<h2>Per-model reports</h2>
<ul>{links or "<li>none</li>"}</ul>
<h2>Settings</h2>
<pre>{settings_json}</pre>
</main></body></html>
"""
    paths["html"] = atomic_write_text(out / "report.html", page)
    return paths
