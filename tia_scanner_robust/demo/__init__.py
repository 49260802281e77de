"""The offline SimCons demo behind ``tia-scanner-robust demo``: data, training, evaluation, report.

The pipeline behind ``tia-scanner-robust demo`` and
``examples/02_simcons_experiments.py``, on TIAToolbox's bundled H&E image
(offline):

- :mod:`~tia_scanner_robust.demo.labels`: demo-scale labels derived on the
  reference scan with the classical segmenter.
- :mod:`~tia_scanner_robust.demo.task`: the scanner-paired demo task on disk
  (:func:`build_demo_task`).
- :mod:`~tia_scanner_robust.demo.variants`: the light demo config
  (:func:`demo_config`), training (:func:`train_variant`), evaluation through
  TIAToolbox's ``SemanticSegmentor`` (:func:`evaluate_variant`) and both for
  one seed (:func:`run_variant`).
- :mod:`~tia_scanner_robust.demo.run`: all of it for a baseline and a SimCons
  model, with the comparison report (:func:`run_demo`).

The comparison report itself lives in :mod:`tia_scanner_robust.report.comparison`
and the shipped configs in :mod:`tia_scanner_robust.training.configs`.
Names resolve lazily so importing this package does not import torch.

Examples:
    >>> from tia_scanner_robust.demo import DEMO_VARIANTS, LABEL_SCHEMES
    >>> DEMO_VARIANTS["simcons"], LABEL_SCHEMES
    ('fda_simcons', ('nuclei', 'tissue'))

"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tia_scanner_robust._lazy import lazy_exports

# --- static imports for type checkers (generated from _EXPORTS) ---
if TYPE_CHECKING:
    from .labels import (
        LABEL_CLASS_DICTS,
        LABEL_SCHEMES,
        derive_labels,
        reference_rendering,
    )
    from .run import (
        DEMO_VARIANTS,
        QUICK_STEPS,
        DemoResult,
        run_demo,
    )
    from .task import (
        DemoTask,
        build_demo_task,
    )
    from .variants import (
        DEFAULT_STEPS,
        DEMO_MODEL,
        RunRecord,
        TrainedVariant,
        VariantEvaluation,
        VariantSpec,
        demo_config,
        evaluate_variant,
        run_variant,
        train_variant,
    )
# --- end of static imports ---

_EXPORTS: dict[str, str] = {
    "LABEL_CLASS_DICTS": "labels",
    "LABEL_SCHEMES": "labels",
    "derive_labels": "labels",
    "reference_rendering": "labels",
    "DemoTask": "task",
    "build_demo_task": "task",
    "DEFAULT_STEPS": "variants",
    "DEMO_MODEL": "variants",
    "RunRecord": "variants",
    "TrainedVariant": "variants",
    "VariantEvaluation": "variants",
    "VariantSpec": "variants",
    "demo_config": "variants",
    "evaluate_variant": "variants",
    "run_variant": "variants",
    "train_variant": "variants",
    "DEMO_VARIANTS": "run",
    "QUICK_STEPS": "run",
    "DemoResult": "run",
    "run_demo": "run",
}

__all__ = [
    "DEFAULT_STEPS",
    "DEMO_MODEL",
    "DEMO_VARIANTS",
    "LABEL_CLASS_DICTS",
    "LABEL_SCHEMES",
    "QUICK_STEPS",
    "DemoResult",
    "DemoTask",
    "RunRecord",
    "TrainedVariant",
    "VariantEvaluation",
    "VariantSpec",
    "build_demo_task",
    "demo_config",
    "derive_labels",
    "evaluate_variant",
    "reference_rendering",
    "run_demo",
    "run_variant",
    "train_variant",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
