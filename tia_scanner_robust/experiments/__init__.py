"""Experiments: the offline SimCons demo, shipped configs, comparison reports.

- :mod:`~tia_scanner_robust.experiments.labels`: demo-scale labels derived on
  the reference scan with the classical segmenter.
- :mod:`~tia_scanner_robust.experiments.configs`: the shipped YAML configs
  (baseline, ColorJitter / RandStainNA / FDA alone and with SimCons) and
  overrides.
- :mod:`~tia_scanner_robust.experiments.simcons_demo`: build the demo task,
  train variants, evaluate them through TIAToolbox's ``SemanticSegmentor``,
  run the whole demo (:func:`run_demo`).
- :mod:`~tia_scanner_robust.experiments.comparison`: side-by-side HTML
  report, aggregated tables and figures.

Names resolve lazily so importing this package does not import torch.

Examples:
    >>> from tia_scanner_robust.experiments import list_configs
    >>> "fda_simcons" in list_configs()
    True

"""

from __future__ import annotations

from tia_scanner_robust._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "LABEL_CLASS_DICTS": "labels",
    "LABEL_SCHEMES": "labels",
    "derive_labels": "labels",
    "reference_rendering": "labels",
    "config_path": "configs",
    "list_configs": "configs",
    "load_experiment_config": "configs",
    "merge_overrides": "configs",
    "parse_overrides": "configs",
    "resolve_config": "configs",
    "DEFAULT_STEPS": "simcons_demo",
    "DEMO_MODEL": "simcons_demo",
    "DEMO_VARIANTS": "simcons_demo",
    "QUICK_STEPS": "simcons_demo",
    "DemoResult": "simcons_demo",
    "DemoTask": "simcons_demo",
    "RunRecord": "simcons_demo",
    "TrainedVariant": "simcons_demo",
    "VariantEvaluation": "simcons_demo",
    "VariantSpec": "simcons_demo",
    "build_demo_task": "simcons_demo",
    "demo_config": "simcons_demo",
    "evaluate_variant": "simcons_demo",
    "run_demo": "simcons_demo",
    "run_variant": "simcons_demo",
    "train_variant": "simcons_demo",
    "METRICS": "comparison",
    "aggregate_records": "comparison",
    "plot_lambda_sweep": "comparison",
    "plot_variant_bars": "comparison",
    "records_markdown": "comparison",
    "write_comparison_report": "comparison",
}

__all__ = sorted(_EXPORTS)  # noqa: PLE0605 - a static list built from the lazy map


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
