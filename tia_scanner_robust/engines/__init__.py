"""Scanner-consistency evaluation and slide prediction through TIAToolbox's engines.

- :class:`ScannerConsistencyEvaluator`: runs ``SemanticSegmentor``,
  ``PatchPredictor`` or ``DeepFeatureExtractor`` once per scanner (patch or
  WSI mode), aligns outputs by specimen and computes paired Dice / agreement /
  cosine and top-k, CoV and task metrics into an :class:`EvaluationResult`.
  Its pieces: :mod:`~tia_scanner_robust.engines.results` (result types),
  :mod:`~tia_scanner_robust.engines.tasks` (one :class:`TaskSpec` per task),
  :mod:`~tia_scanner_robust.engines.patch` and
  :mod:`~tia_scanner_robust.engines.wsi` (the two modes),
  :mod:`~tia_scanner_robust.engines.writer` (the zarr prediction store).
- :class:`UnpairedEvaluator`: the domain-generalisation protocol on unpaired,
  labelled multi-scanner data (per-scanner Dice / accuracy against ground
  truth, mean, minimum and worst scanner, with bootstrap intervals) into an
  :class:`UnpairedResult` (:mod:`~tia_scanner_robust.engines.unpaired`).
- :class:`MILSlidePredictor`: slide-level prediction with a MIL model, from a
  feature store or from WSIs through ``DeepFeatureExtractor``.
- :func:`resolve_model`, :func:`load_model_checkpoint`,
  :func:`register_architecture`: the accepted model specifications.

Names resolve lazily so that importing this package does not import torch or
TIAToolbox.

Examples:
    >>> from tia_scanner_robust import engines
    >>> engines.TASK_ENGINES["embedding"]
    'DeepFeatureExtractor'

"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from tia_scanner_robust._lazy import lazy_exports

# --- static imports for type checkers (generated from _EXPORTS) ---
if TYPE_CHECKING:
    from .consistency import (
        ScannerConsistencyEvaluator,
    )
    from .loading import (
        ARCHITECTURES,
        load_checkpoint,
        load_model_checkpoint,
        register_architecture,
        resolve_model,
    )
    from .mil import (
        MILSlidePredictor,
    )
    from .results import (
        EvaluationResult,
        ExamplePair,
        sample_id,
    )
    from .tasks import (
        PRIMARY_SCORE,
        TASK_ENGINES,
        TASK_SPECS,
        TaskSpec,
    )
    from .unpaired import (
        UnpairedEvaluator,
    )
    from .unpaired_results import (
        UnpairedResult,
    )
# --- end of static imports ---

_EXPORTS: dict[str, str] = {
    "ScannerConsistencyEvaluator": "consistency",
    "EvaluationResult": "results",
    "ExamplePair": "results",
    "sample_id": "results",
    "PRIMARY_SCORE": "tasks",
    "TASK_ENGINES": "tasks",
    "TASK_SPECS": "tasks",
    "TaskSpec": "tasks",
    "MILSlidePredictor": "mil",
    "resolve_model": "loading",
    "load_model_checkpoint": "loading",
    "load_checkpoint": "loading",
    "register_architecture": "loading",
    "ARCHITECTURES": "loading",
    "UnpairedEvaluator": "unpaired",
    "UnpairedResult": "unpaired_results",
}

__all__ = [
    "ARCHITECTURES",
    "PRIMARY_SCORE",
    "TASK_ENGINES",
    "TASK_SPECS",
    "EvaluationResult",
    "ExamplePair",
    "MILSlidePredictor",
    "ScannerConsistencyEvaluator",
    "TaskSpec",
    "UnpairedEvaluator",
    "UnpairedResult",
    "load_checkpoint",
    "load_model_checkpoint",
    "register_architecture",
    "resolve_model",
    "sample_id",
]

_getattr, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)


def __getattr__(name: str) -> Any:
    """Lazy exports; ``TASKS`` is the deprecated name of :data:`TASK_ENGINES`."""
    if name == "TASKS":
        warnings.warn(
            "tia_scanner_robust.engines.TASKS is deprecated; use TASK_ENGINES "
            "(task -> engine name) or TASK_SPECS.",
            DeprecationWarning,
            stacklevel=2,
        )
        return _getattr("TASK_ENGINES")
    return _getattr(name)
