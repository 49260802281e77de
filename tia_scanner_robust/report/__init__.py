"""Scanner-consistency report: ``report.json``, PNG figures and a self-contained HTML page.

- :func:`write_report`: writes everything for an
  :class:`~tia_scanner_robust.engines.results.EvaluationResult`.
- :mod:`~tia_scanner_robust.report.figures`: the pair-matrix heatmap,
  per-scanner values, worst-pair example overlays.
- :func:`write_unpaired_report`: the same for the unpaired
  (domain-generalisation) protocol (:mod:`~tia_scanner_robust.report.unpaired`).
- :mod:`~tia_scanner_robust.report.comparison`: trained variants side by side
  (:func:`write_comparison_report`), aggregated over seeds
  (:func:`aggregate_records`, :func:`records_markdown`) and plotted
  (:func:`plot_variant_bars`, :func:`plot_lambda_sweep`).
"""

from __future__ import annotations

from tia_scanner_robust.report.comparison import (
    VariantEvaluation,
    aggregate_records,
    plot_lambda_sweep,
    plot_variant_bars,
    records_markdown,
    write_comparison_report,
)
from tia_scanner_robust.report.figures import (
    label_overlay,
    plot_example_pair,
    plot_pair_matrix,
    plot_per_scanner,
)
from tia_scanner_robust.report.html import REPORT_VERSION, render_html, write_report
from tia_scanner_robust.report.unpaired import write_unpaired_report

__all__ = [
    "REPORT_VERSION",
    "VariantEvaluation",
    "aggregate_records",
    "label_overlay",
    "plot_example_pair",
    "plot_lambda_sweep",
    "plot_pair_matrix",
    "plot_per_scanner",
    "plot_variant_bars",
    "records_markdown",
    "render_html",
    "write_comparison_report",
    "write_report",
    "write_unpaired_report",
]
