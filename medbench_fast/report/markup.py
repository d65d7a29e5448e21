"""HTML building blocks of the leaderboard: escaping, number formats, sortable tables.

Every function escapes the data it is given; ``extra`` arguments take trusted markup only.
"""

from __future__ import annotations

import math
from html import escape


def h(value) -> str:
    """HTML-escaped text of any value (None becomes an empty string)."""
    return "" if value is None else escape(str(value), quote=True)


def fmt(value, digits: int = 3) -> str:
    """A number with ``digits`` decimals; a dash for missing or non-finite values."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "\u2013"
    if isinstance(value, str):
        return h(value)
    return f"{value:.{digits}f}"


def fmt_p(p) -> str:
    """``p = 0.012`` or ``p < 0.001``."""
    if p is None:
        return "p = n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def num_cell(value, digits: int, extra: str = "") -> str:
    """A right-aligned number cell; ``data-v`` holds the exact value for sorting (empty when missing).
    ``extra`` is trusted markup appended after the number."""
    v = "" if value is None or (isinstance(value, float) and not math.isfinite(value)) else repr(float(value))
    return f'<td class="num" data-v="{v}">{fmt(value, digits)}{extra}</td>'


def text_cell(text, cls: str = "") -> str:
    """An escaped text cell, sortable by its text."""
    klass = f' class="{cls}"' if cls else ""
    return f'<td{klass} data-v="{h(text)}">{h(text)}</td>'


def header_row(columns: list[tuple[str, str, str | None]]) -> str:
    """``(title, type num|text, better asc|desc|None)`` -> a sortable header row."""
    cells = []
    for title, kind, better in columns:
        attrs = f' data-type="{kind}"' + (f' data-better="{better}"' if better else "")
        cells.append(f'<th scope="col"{attrs}><button type="button">{h(title)}</button></th>')
    return "<thead><tr>" + "".join(cells) + "</tr></thead>"


def table(header: list[tuple[str, str, str | None]], rows: list[str], *, table_id: str = "") -> str:
    """A sortable table in a horizontally scrolling wrapper; ``rows`` are ``<tr>`` strings."""
    ident = f' id="{table_id}"' if table_id else ""
    return (f'<div class="table-wrap"><table class="sortable"{ident}>{header_row(header)}'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def ci_text(stats: dict | None) -> str:
    ci = (stats or {}).get("ci95")
    return f'<span class="ci">[{ci[0]:.3f}, {ci[1]:.3f}]</span>' if ci else ""


def inf_text(stats: dict | None) -> str:
    n = (stats or {}).get("inf_labels")
    return f'<span class="ci">{n} inf left out</span>' if n else ""
