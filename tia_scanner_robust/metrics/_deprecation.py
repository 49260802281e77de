"""Deprecated names of :mod:`tia_scanner_robust.metrics` kept for old imports.

A module lists ``{old name: object}`` and gets a module-level ``__getattr__``
(PEP 562) that returns the object with a :class:`DeprecationWarning` naming
its current name, so old imports keep working while new code sees one name.

Examples:
    >>> import warnings
    >>> getattr_ = deprecated_aliases("pkg", {"OldName": int})
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     getattr_("OldName") is int
    True
    >>> str(caught[0].message)
    'pkg.OldName is deprecated; use pkg.int instead.'
    >>> getattr_("nope")
    Traceback (most recent call last):
    ...
    AttributeError: module 'pkg' has no attribute 'nope'

"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["deprecated_aliases"]


def deprecated_aliases(module: str, aliases: Mapping[str, Any]) -> Callable[[str], Any]:
    """Module-level ``__getattr__`` that serves deprecated aliases with a warning.

    Args:
        module: The module's ``__name__`` (used in messages).
        aliases: Deprecated name -> the object it now stands for; the warning
            names the object's ``__name__`` as the replacement.

    Returns:
        ``__getattr__`` to assign in the module.

    """
    aliases = dict(aliases)

    def __getattr__(name: str) -> Any:  # noqa: N807 - the PEP 562 hook's name
        if name in aliases:
            target = aliases[name]
            new = getattr(target, "__name__", repr(target))
            warnings.warn(
                f"{module}.{name} is deprecated; use {module}.{new} instead.",
                DeprecationWarning,
                stacklevel=2,
            )
            return target
        msg = f"module {module!r} has no attribute {name!r}"
        raise AttributeError(msg)

    return __getattr__
