"""Readable HTML pieces shared by the reports: settings tables, warning banners, intervals.

- :func:`format_cell`, :func:`html_table`, :func:`embed_png`: table cells,
  tables and inline PNG figures (re-exported by :mod:`~tia_scanner_robust.report.html`);
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

import base64
import html
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping, Sequence

__all__ = [
    "BANNER_CSS",
    "embed_png",
    "format_cell",
    "format_interval",
    "html_table",
    "plain_value",
    "settings_table",
    "warning_banners",
]

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


def format_cell(value: Any, digits: int = 4) -> str:
    """One table cell's text: numbers rounded, ``None``/NaN as ``n/a``, the rest HTML-escaped.

    Examples:
        >>> format_cell(0.123456), format_cell(float("nan")), format_cell(3), format_cell("<a>")
        ('0.1235', 'n/a', '3', '&lt;a&gt;')

    """
    if value is None:
        return "n/a"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return "n/a" if not math.isfinite(float(value)) else f"{float(value):.{digits}f}"
    return html.escape(str(value))


def embed_png(path: str | Path, caption: str = "", *, max_width: int | None = None) -> str:
    """A ``<div class="figure">`` with the PNG at ``path`` inline (base64 ``data:`` URI).

    Examples:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "x.png"
        >>> _ = path.write_bytes(b"png")
        >>> embed_png(path, "a <b>")
        '<div class="figure"><img alt="a &lt;b&gt;" src="data:image/png;base64,cG5n"><div class="caption">a &lt;b&gt;</div></div>'

    """  # noqa: E501 - one doctest output line
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    cap = f'<div class="caption">{html.escape(caption)}</div>' if caption else ""
    alt = html.escape(caption or Path(path).stem)
    style = f' style="max-width: {int(max_width)}px"' if max_width else ""
    return (
        f'<div class="figure"><img alt="{alt}"{style} src="data:image/png;base64,{data}">'
        f"{cap}</div>"
    )


def html_table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    highlight: Collection[int] = (),
    *,
    row_class: str = "worst",
) -> str:
    """An HTML table; the rows at the ``highlight`` indices get ``class="<row_class>"``.

    Args:
        header: Column titles (escaped here).
        rows: Cells, already HTML (see :func:`format_cell`).
        highlight: Indices of the highlighted rows.
        row_class: CSS class of those rows (``"worst"``: red, ``"best"``: green).

    Returns:
        The ``<table>`` element.

    Examples:
        >>> html_table(["a", "b"], [["1", "2"]], {0}, row_class="best")
        '<table><thead><tr><th>a</th><th>b</th></tr></thead><tbody><tr class="best"><td>1</td><td>2</td></tr></tbody></table>'

    """  # noqa: E501 - one doctest output line
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{row_class}"' if i in highlight else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
