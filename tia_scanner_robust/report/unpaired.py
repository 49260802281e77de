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
from typing import TYPE_CHECKING

from tia_scanner_robust._io import atomic_write_text
from tia_scanner_robust.report.html import (
    REPORT_VERSION,
    html_page,
    report_folder,
    write_report_json,
)
from tia_scanner_robust.report.tables import settings_table, warning_banners
from tia_scanner_robust.report.unpaired_section import unpaired_figures, unpaired_section

if TYPE_CHECKING:
    from pathlib import Path

    from tia_scanner_robust.engines.unpaired_results import UnpairedResult

__all__ = ["unpaired_figures", "unpaired_section", "write_unpaired_report"]  # two re-exported


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
    out = report_folder(out_dir, result.out_dir)
    figures = unpaired_figures(result, out, dpi=dpi)
    report = result.to_dict() | {
        "report_version": REPORT_VERSION,
        "figures": {k: p.name for k, p in figures.items()},
    }
    json_path = write_report_json(out, report)
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
    html_path = atomic_write_text(out / "report.html", html_page(title, body))
    return {"json": json_path, "html": html_path, **figures}
