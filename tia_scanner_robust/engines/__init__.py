"""Scanner-consistency evaluation through TIAToolbox's engines.

- :class:`ScannerConsistencyEvaluator`: runs ``SemanticSegmentor``,
  ``PatchPredictor`` or ``DeepFeatureExtractor`` once per scanner (patch or
  WSI mode), aligns outputs by specimen and computes paired Dice / agreement /
  cosine and top-k, CoV and task metrics into an :class:`EvaluationResult`.
- :func:`resolve_model`, :func:`load_checkpoint`, :func:`register_architecture`:
  the accepted model specifications.

Names resolve lazily so that importing this package does not import torch or
TIAToolbox.
"""

from __future__ import annotations

from tia_scanner_robust._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "ScannerConsistencyEvaluator": "consistency",
    "EvaluationResult": "consistency",
    "ExamplePair": "consistency",
    "PRIMARY_SCORE": "consistency",
    "TASKS": "consistency",
    "sample_id": "consistency",
    "resolve_model": "loading",
    "load_checkpoint": "loading",
    "register_architecture": "loading",
    "ARCHITECTURES": "loading",
}

__all__ = [
    "ARCHITECTURES",
    "PRIMARY_SCORE",
    "TASKS",
    "EvaluationResult",
    "ExamplePair",
    "ScannerConsistencyEvaluator",
    "load_checkpoint",
    "register_architecture",
    "resolve_model",
    "sample_id",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
