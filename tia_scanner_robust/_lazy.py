"""Lazy package exports (PEP 562), shared by the subpackages' ``__init__``.

A subpackage lists ``{public name: submodule}`` and gets a module-level
``__getattr__`` that imports the submodule on first access, so that
``import tia_scanner_robust.<subpackage>`` stays cheap (no torch, no
TIAToolbox) until a name that needs them is used.

Examples:
    >>> getattr_, dir_ = lazy_exports("os", {"join": "path"})
    >>> getattr_("join") is __import__("os").path.join
    True
    >>> getattr_("nope")
    Traceback (most recent call last):
    ...
    AttributeError: module 'os' has no attribute 'nope'

"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str], public: Iterable[str] | None = None
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module-level ``__getattr__`` and ``__dir__`` for lazily exported names.

    Args:
        package: The package's ``__name__``.
        exports: Public name -> submodule (relative to ``package``) defining it.
        public: Names listed by ``dir()`` besides the module's globals
            (default: the keys of ``exports``).

    Returns:
        ``(__getattr__, __dir__)`` to assign in the package's ``__init__``.

    """
    listed = sorted(set(exports if public is None else public))

    def __getattr__(name: str) -> Any:  # noqa: N807 - the PEP 562 hook's name
        if name in exports:
            module = importlib.import_module(f"{package}.{exports[name]}")
            return getattr(module, name)
        msg = f"module {package!r} has no attribute {name!r}"
        raise AttributeError(msg)

    def __dir__() -> list[str]:  # noqa: N807 - the PEP 562 hook's name
        return sorted(set(vars(sys.modules[package])) | set(listed))

    return __getattr__, __dir__
