"""Scanner-consistency report: ``report.json``, PNG figures and a self-contained HTML page.

- :func:`write_report`: writes everything for an
  :class:`~tia_scanner_robust.engines.consistency.EvaluationResult`.
- :mod:`~tia_scanner_robust.report.figures`: the pair-matrix heatmap,
  per-scanner values, worst-pair example overlays.
"""

from __future__ import annotations

from tia_scanner_robust.report.figures import (
    label_overlay,
    plot_example_pair,
    plot_pair_matrix,
    plot_per_scanner,
)
from tia_scanner_robust.report.html import REPORT_VERSION, render_html, write_report

__all__ = [
    "REPORT_VERSION",
    "label_overlay",
    "plot_example_pair",
    "plot_pair_matrix",
    "plot_per_scanner",
    "render_html",
    "write_report",
]
