"""Deprecated module path of the MIL slide predictor (now :mod:`tia_scanner_robust.engines.mil`).

:class:`~tia_scanner_robust.engines.mil.MILSlidePredictor` runs TIAToolbox's
engines, so it lives in ``engines/``; ``models/`` sits below ``engines/`` and
must not import it, so the moved names resolve by module name (importlib) on
first access. ``load_mil_checkpoint`` lives in :mod:`tia_scanner_robust.models.mil`.

Examples:
    >>> from tia_scanner_robust.models import mil_predictor
    >>> mil_predictor.MILSlidePredictor.__module__
    'tia_scanner_robust.engines.mil'

"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from tia_scanner_robust.models.mil import load_mil_checkpoint

# The moved names are defined by the module-level __getattr__ below.
__all__ = ["MILSlidePredictor", "default_ioconfig", "load_mil_checkpoint"]  # noqa: F822

#: Moved name -> the module that defines it now.
_MOVED = {
    "MILSlidePredictor": "tia_scanner_robust.engines.mil",
    "default_ioconfig": "tia_scanner_robust.engines.mil",
}


def __getattr__(name: str) -> Any:
    """Resolve a moved name from its new module."""
    if name in _MOVED:
        return getattr(importlib.import_module(_MOVED[name]), name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__() -> list[str]:
    """The module's names, moved ones included."""
    return sorted(set(vars(sys.modules[__name__])) | set(_MOVED))
