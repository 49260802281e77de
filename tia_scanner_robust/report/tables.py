"""Readable HTML pieces shared by the reports: settings tables, warning banners, intervals.

- :func:`settings_table`: a nested settings mapping as a two-column table
  (dotted keys, lists joined, no Python ``repr``);
- :func:`warning_banners`: one banner per warning sentence;
- :func:`format_interval`: ``"0.812 [0.774, 0.846]"``;
- :func:`plain_value`: one value as readable text.

Examples:
    >>> format_interval(0.8123, [0.774, 0.8461], digits=3)
    '0.812 [0.774, 0.846]'
    >>> plain_value({"units": "mpp", "resolution": 0.5})
    'units: mpp, resolution: 0.5'

"""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["BANNER_CSS", "format_interval", "plain_value", "settings_table", "warning_banners"]

#: CSS of the warning banners (added to a page's stylesheet).
BANNER_CSS = """
.banner { background: #fff4e5; border: 1px solid #f0b35b; border-left: 6px solid #e67e22;
          border-radius: 6px; padding: 8px 12px; margin: 8px 0; color: #5c3b0a; }
.banner b { color: #8a4b00; }
a { color: #2c5fa8; }
table.settings td { text-align: left; }
"""


def _number(value: float, digits: int) -> str:
    if not math.isfinite(value):
        return "n/a"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return (
        f"{value:.{digits}g}" if abs(value) < 1e-3 or abs(value) >= 1e6 else f"{value:.{digits}f}"
    )


def plain_value(value: Any, digits: int = 4) -> str:  # noqa: PLR0911 - one return per kind
    """One setting as readable text (numbers rounded, lists and small dicts inline).

    Examples:
        >>> plain_value([1, 2.5, "a"]), plain_value(None), plain_value(True)
        ('1, 2.5000, a', 'none', 'yes')

    """
    if value is None:
        return "none"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return _number(float(value), digits)
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return ", ".join(plain_value(v, digits) for v in value) or "none"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {plain_value(v, digits)}" for k, v in value.items()) or "none"
    return str(value)


def _flatten(settings: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in settings.items():
        name = f"{prefix}{key}"
        nested = isinstance(value, dict) and any(
            isinstance(v, (dict, list)) for v in value.values()
        )
        if isinstance(value, dict) and (nested or len(value) > 4):
            rows += _flatten(value, f"{name}.")
        else:
            rows.append((name, value))
    return rows


def settings_table(
    settings: Mapping[str, Any], *, header: Sequence[str] = ("setting", "value")
) -> str:
    """A settings mapping as a two-column HTML table (nested keys dotted, values readable).

    Examples:
        >>> print(settings_table({"steps": 7, "model": {"arch": "unet", "size": [64, 64]}}))
        <table class="settings"><thead><tr><th>setting</th><th>value</th></tr></thead><tbody><tr><td>steps</td><td>7</td></tr><tr><td>model.arch</td><td>unet</td></tr><tr><td>model.size</td><td>64, 64</td></tr></tbody></table>

    """  # noqa: E501 - one doctest output line
    body = "".join(
        f"<tr><td>{html.escape(key)}</td><td>{html.escape(plain_value(value))}</td></tr>"
        for key, value in _flatten(settings)
    )
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    return f'<table class="settings"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def warning_banners(warnings: Sequence[str]) -> str:
    """One ``<div class="banner">`` per warning (empty string when there is none).

    Examples:
        >>> warning_banners(["Constant predictions on scanner <A>."])
        '<div class="banner"><b>Warning:</b> Constant predictions on scanner &lt;A&gt;.</div>'
        >>> warning_banners([])
        ''

    """
    return "".join(
        f'<div class="banner"><b>Warning:</b> {html.escape(str(w))}</div>' for w in warnings
    )


def format_interval(value: float | None, ci95: Sequence[float] | None, *, digits: int = 3) -> str:
    """``value [low, high]`` (just the value when there is no interval; ``n/a`` when missing).

    Examples:
        >>> format_interval(0.5, None), format_interval(None, [0.1, 0.2])
        ('0.500', 'n/a')

    """
    if value is None or not math.isfinite(float(value)):
        return "n/a"
    text = f"{float(value):.{digits}f}"
    if ci95 is not None and len(ci95) == 2 and all(v is not None for v in ci95):
        text += f" [{float(ci95[0]):.{digits}f}, {float(ci95[1]):.{digits}f}]"
    return text
